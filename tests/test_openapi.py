"""OpenAPI documents as tools: the published Petstore examples read into tool schemas and
called against a Petstore on loopback, and a FastAPI service on loopback called through the
tools its own `/openapi.json` describes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from inline_snapshot import snapshot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentkit import Agent, ScriptedRuntime
from agentkit.errors import ToolRetry, UserError
from agentkit.openapi import OpenAPIAuth, OpenAPIError, OpenAPITools

from support.loopback import LoopbackServer
from support.openapi_service import API_KEY, BIG, TOKEN

SPECS = Path(__file__).parent / "support" / "openapi"


@pytest.fixture
async def inventory(openapi_service: LoopbackServer) -> AsyncIterator[OpenAPITools]:
    """The service's tools, from its own `/openapi.json`, with both credentials."""
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json",
        allow_private=True,
        auth=OpenAPIAuth(bearer_token=TOKEN, api_key=API_KEY),
    )
    async with source:
        yield source


def schemas(source: OpenAPITools) -> dict[str, Any]:
    return {name: tool.parameters_schema() for name, tool in source.tools.items()}


# -- published documents ----------------------------------------------------------------------


def test_the_petstore_example_becomes_one_tool_per_operation() -> None:
    petstore = OpenAPITools.from_file(SPECS / "petstore.yaml")
    assert petstore.problems == []
    assert {n: t.description for n, t in petstore.tools.items()} == snapshot(
        {
            "listPets": "List all pets",
            "createPets": "Create a pet",
            "showPetById": "Info for a specific pet",
        }
    )
    assert schemas(petstore) == snapshot(
        {
            "listPets": {
                "type": "object",
                "properties": {
                    "limit": {
                        "type": "integer",
                        "format": "int32",
                        "description": "How many items to return at one time (max 100)",
                    }
                },
            },
            "createPets": {"type": "object", "properties": {}},
            "showPetById": {
                "type": "object",
                "properties": {
                    "petId": {"type": "string", "description": "The id of the pet to retrieve"}
                },
                "required": ["petId"],
            },
        }
    )
    assert petstore.base_url is None  # the first server is used once the source starts


async def test_the_petstore_tools_call_a_service_that_implements_it() -> None:
    # The published document, pointed at a Petstore on loopback instead of its own server.
    pets = [{"id": 1, "name": "Rex", "tag": "dog"}, {"id": 2, "name": "Tom"}]
    seen: list[str] = []

    async def list_pets(request: Request) -> JSONResponse:
        seen.append(f"GET {request.url.path}?{request.url.query}")
        return JSONResponse(pets[: int(request.query_params.get("limit", 100))])

    async def create_pets(request: Request) -> Response:
        seen.append(f"POST {request.url.path}")
        return Response(status_code=201)

    async def show_pet(request: Request) -> JSONResponse:
        seen.append(f"GET {request.url.path}")
        found = [pet for pet in pets if str(pet["id"]) == request.path_params["pet_id"]]
        if not found:
            return JSONResponse({"code": 404, "message": "no such pet"}, status_code=404)
        return JSONResponse(found[0])

    app = Starlette(
        routes=[
            Route("/v1/pets", list_pets, methods=["GET"]),
            Route("/v1/pets", create_pets, methods=["POST"]),
            Route("/v1/pets/{pet_id}", show_pet, methods=["GET"]),
        ]
    )
    with LoopbackServer(app=app) as petstore:
        source = OpenAPITools.from_file(
            SPECS / "petstore.yaml", base_url=f"{petstore.url}/v1", allow_private=True
        )
        async with source:
            tools = source.tools
            assert json.loads(await tools["listPets"](limit=1)) == [pets[0]]
            assert json.loads(await tools["showPetById"](petId="2")) == pets[1]
            with pytest.raises(ToolRetry, match=r"404.*no such pet"):
                await tools["showPetById"](petId="9")
            await tools["createPets"]()
    assert seen == ["GET /v1/pets?limit=1", "GET /v1/pets/2", "GET /v1/pets/9", "POST /v1/pets"]


def test_the_expanded_petstore_resolves_references_and_sanitizes_names() -> None:
    petstore = OpenAPITools.from_file(SPECS / "petstore-expanded.yaml")
    # Its operationId "find pet by id" is no valid function name.
    assert list(petstore.tools) == ["findPets", "addPet", "find_pet_by_id", "deletePet"]
    assert petstore.operations["find_pet_by_id"].operation_id == "find pet by id"
    # The body's `$ref` to NewPet is inlined and its properties are the tool's.
    assert schemas(petstore)["addPet"] == snapshot(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "tag": {"type": "string"}},
            "required": ["name"],
        }
    )
    # A description past 1024 characters is cut.
    assert len(petstore.tools["findPets"].description) == 1024
    assert petstore.tools["findPets"].description.endswith("…")


def test_operations_are_chosen_by_id_tag_method_or_predicate() -> None:
    path = SPECS / "petstore-expanded.yaml"
    assert list(OpenAPITools.from_file(path, operations=["addPet", "find pet by id"]).tools) == [
        "addPet",
        "find_pet_by_id",
    ]
    assert list(OpenAPITools.from_file(path, methods=["DELETE"]).tools) == ["deletePet"]
    assert list(OpenAPITools.from_file(SPECS / "petstore.yaml", tags=["pets"]).tools) == [
        "listPets",
        "createPets",
        "showPetById",
    ]
    assert list(OpenAPITools.from_file(SPECS / "petstore.yaml", tags=["cats"]).tools) == []
    chosen = OpenAPITools.from_file(path, operations=lambda op: op.path == "/pets/{id}")
    assert list(chosen.tools) == ["find_pet_by_id", "deletePet"]
    with pytest.raises(OpenAPIError, match=r"operations: \['addpet'\] name no operation of it"):
        OpenAPITools.from_file(path, operations=["addpet"])
    with pytest.raises(UserError, match=r"methods: \['fetch'\] are not HTTP methods"):
        OpenAPITools.from_file(path, methods=["fetch"])


def test_a_document_that_is_not_openapi_3_is_refused_by_name(tmp_path: Path) -> None:
    swagger = tmp_path / "swagger.json"
    swagger.write_text(json.dumps({"swagger": "2.0", "paths": {}}))
    with pytest.raises(OpenAPIError, match=r"Swagger 2\.0 is not supported; convert it"):
        OpenAPITools.from_file(swagger)
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.0.0\npaths: [\n")
    with pytest.raises(OpenAPIError, match=r"broken.yaml: neither JSON nor YAML at line 3"):
        OpenAPITools.from_file(broken)
    with pytest.raises(OpenAPIError, match=r"missing.yaml: cannot read it: No such file"):
        OpenAPITools.from_file(tmp_path / "missing.yaml")


# -- schemas: merging, clashes, references, 3.0 and 3.1 ---------------------------------------


def document(paths: dict[str, Any], version: str = "3.0.3", **rest: Any) -> dict[str, Any]:
    return {"openapi": version, "info": {"title": "t", "version": "1"}, "paths": paths, **rest}


def test_clashing_names_are_renamed_after_where_they_go() -> None:
    operation = {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "user", "in": "query", "schema": {"type": "string"}},
            {"name": "user", "in": "header", "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "note": {"type": "string"}},
                        "required": ["id"],
                    }
                }
            },
        },
    }
    source = OpenAPITools(document({"/things/{id}": {"put": operation}}), base_url="http://x.io")
    (tool,) = source.tools.values()
    assert tool.name == "put_things_id"  # no operationId: method and path
    assert tool.parameters_schema() == snapshot(
        {
            "type": "object",
            "properties": {
                "path_id": {"type": "integer", "description": "(path parameter 'id')"},
                "query_user": {"type": "string", "description": "(query parameter 'user')"},
                "header_user": {"type": "string", "description": "(header parameter 'user')"},
                "body_id": {"type": "string", "description": "(body property 'id')"},
                "note": {"type": "string"},
            },
            "required": ["path_id", "body_id"],
        }
    )


def test_references_recursion_and_openapi_30_keywords() -> None:
    components = {
        "schemas": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "nullable": True},
                    "id": {"type": "integer", "readOnly": True},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                    "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                },
                "required": ["id", "label"],
                "discriminator": {"propertyName": "label"},
                "x-internal": True,
            }
        },
        "parameters": {"Depth": {"name": "depth", "in": "query", "schema": {"type": "integer"}}},
    }
    operation = {
        "operationId": "plant",
        "parameters": [{"$ref": "#/components/parameters/Depth"}],
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}
        },
    }
    source = OpenAPITools(
        document({"/tree": {"post": operation}}, components=components), base_url="http://x.io"
    )
    assert source.tools["plant"].parameters_schema() == snapshot(
        {
            "type": "object",
            "properties": {
                "depth": {"type": "integer"},
                "label": {"type": ["string", "null"]},
                "children": {
                    "type": "array",
                    "items": {"type": "object", "description": "a Node (the same shape as above)"},
                },
                "weight": {"type": "number", "exclusiveMinimum": 0},
            },
        }
    )


def test_an_openapi_31_document_keeps_its_json_schema() -> None:
    operation = {
        "operationId": "search",
        "parameters": [
            {
                "name": "q",
                "in": "query",
                "required": True,
                "schema": {"type": ["string", "null"], "examples": ["lamp"]},
            }
        ],
    }
    source = OpenAPITools(document({"/s": {"get": operation}}, "3.1.0"), base_url="http://x.io")
    assert source.tools["search"].parameters_schema() == snapshot(
        {
            "type": "object",
            "properties": {"q": {"type": ["string", "null"], "examples": ["lamp"]}},
            "required": ["q"],
        }
    )


def test_operations_that_cannot_be_tools_are_left_out_with_why() -> None:
    paths = {
        "/upload": {
            "post": {
                "operationId": "upload",
                "requestBody": {"required": True, "content": {"multipart/form-data": {}}},
            }
        },
        "/far": {
            "get": {
                "operationId": "far",
                "parameters": [{"$ref": "common.yaml#/components/parameters/Q"}],
            }
        },
        "/ok": {"get": {"operationId": "ok"}},
    }
    source = OpenAPITools(document(paths), base_url="http://x.io")
    assert list(source.tools) == ["ok"]
    assert source.problems == snapshot(
        [
            "POST /upload: request bodies of type multipart/form-data are not supported",
            "GET /far: $ref 'common.yaml#/components/parameters/Q' is not in this document "
            "(only local '#/...' references are followed)",
        ]
    )


async def test_a_relative_server_needs_a_base_url() -> None:
    source = OpenAPITools(document({"/ok": {"get": {"operationId": "ok"}}}))
    with pytest.raises(OpenAPIError, match=r"server '/' is not an absolute URL: give base_url="):
        await source.start()


# -- calls against the FastAPI service --------------------------------------------------------


async def test_the_tools_of_a_fastapi_service_call_it(inventory: OpenAPITools) -> None:
    assert inventory.name == "Inventory"
    tools = inventory.tools
    # Path, query and header parameters.
    answer = await tools["get_item"](item_id=1, detail=True, **{"x-trace": "t-1"})
    assert json.loads(answer) == {
        "id": 1,
        "name": "lamp",
        "price": 12.5,
        "tags": ["home"],
        "detail": "full",
        "trace": "t-1",
    }
    # A JSON body.
    made = json.loads(await tools["create_item"](name="desk", price=80, tags=["office"]))
    assert made == {"id": 2, "name": "desk", "price": 80.0, "tags": ["office"]}
    assert json.loads(await tools["get_item"](item_id=2))["name"] == "desk"
    # The routes behind a bearer token and an API key.
    assert json.loads(await tools["whoami"]()) == {"user": "ada"}
    assert json.loads(await tools["stock"]()) == {"lamps": 4}
    # A recursive body.
    tree = {"label": "a", "children": [{"label": "b"}, {"label": "c", "children": []}]}
    assert json.loads(await tools["plant"](**tree)) == {"nodes": 3}
    # A redirect within the service is followed.
    assert json.loads(await tools["moved"]())["name"] == "lamp"


async def test_query_arrays_cookies_and_forms(inventory: OpenAPITools) -> None:
    assert inventory.tools["search"].parameters_schema()["required"] == ["tag"]
    found = json.loads(await inventory.tools["search"](tag=["home", "red"], basket="b-17"))
    assert found == {"tags": ["home", "red"], "basket": "b-17"}
    added = json.loads(await inventory.tools["add_note"](note="buy milk", count=2))
    assert added == {
        "type": "application/x-www-form-urlencoded",
        "fields": {"note": ["buy milk"], "count": ["2"]},
    }


def test_references_that_multiply_are_refused_past_a_budget() -> None:
    # Each level names the next twice: inlined, 2**20 copies of the last one.
    schemas: dict[str, Any] = {"L20": {"type": "string"}}
    for n in range(20):
        ref = {"$ref": f"#/components/schemas/L{n + 1}"}
        schemas[f"L{n}"] = {"type": "object", "properties": {"a": ref, "b": ref}}
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L0"}}}}
    paths = {"/bomb": {"post": {"operationId": "bomb", "requestBody": body}}}
    source = OpenAPITools(document(paths, components={"schemas": schemas}), base_url="http://x.io")
    assert source.tools == {}
    assert source.problems == ["POST /bomb: its schemas expand to more than 20000 parts"]


async def test_a_404_is_told_to_the_model_not_raised_at_the_agent(
    openapi_service: LoopbackServer,
) -> None:
    # Not started here: the agent starts it, and stops it after the run.
    source = OpenAPITools.from_url(f"{openapi_service.url}/openapi.json", allow_private=True)
    runtime = ScriptedRuntime([ScriptedRuntime.call("get_item", item_id=99), "No such item."])
    result = await Agent(runtime, tools=[source]).run("Get item 99")
    (call,) = result.tool_calls
    assert call.output is None
    assert call.error == (
        f'GET {openapi_service.url}/items/99 failed: HTTP 404 Not Found: {{"detail":"no item 99"}}'
    )
    assert result.output == "No such item."


async def test_path_values_are_encoded_and_cannot_climb(inventory: OpenAPITools) -> None:
    answer = json.loads(await inventory.tools["read_file"](name="a b?c#d"))
    assert answer == {"name": "a b?c#d", "raw_path": "/files/a%20b%3Fc%23d"}
    # The slashes stay in the one path segment: `/secure/whoami` is not reached.
    with pytest.raises(ToolRetry, match=r"/files/..%2Fsecure%2Fwhoami failed: HTTP 404"):
        await inventory.tools["read_file"](name="../secure/whoami")
    # `..` is sent as `%2E%2E`, which no client or proxy on the way takes for a step up.
    answer = json.loads(await inventory.tools["read_file"](name=".."))
    assert answer == {"name": "..", "raw_path": "/files/%2E%2E"}


async def test_a_large_answer_is_cut_with_a_marker(openapi_service: LoopbackServer) -> None:
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json", allow_private=True, max_response_bytes=1000
    )
    async with source:
        answer = await source.tools["big"]()
    assert answer.startswith("x" * 1000 + "\n[truncated: the answer is longer than 1000 bytes")
    assert len(answer) < BIG // 100


async def test_a_service_that_does_not_answer_in_time_is_a_tool_failure(
    openapi_service: LoopbackServer,
) -> None:
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json", allow_private=True, timeout=0.2
    )
    async with source:
        with pytest.raises(ToolRetry) as caught:
            await source.tools["slow"]()
    assert str(caught.value) == f"GET {openapi_service.url}/slow: no answer within 0.2 s"


async def test_a_header_value_cannot_smuggle_another_header(inventory: OpenAPITools) -> None:
    with pytest.raises(ToolRetry) as caught:
        await inventory.tools["get_item"](item_id=1, **{"x-trace": "t\r\nX-Admin: yes"})
    assert str(caught.value) == (
        "get_item: x-trace: a header value must be printable ASCII (got 't\\r\\nX-Admin: yes')"
    )


async def test_a_service_that_cannot_be_reached_is_a_tool_failure() -> None:
    # Nothing listens there: a refused connection, told to the model.
    source = OpenAPITools(
        document({"/ok": {"get": {"operationId": "ok"}}}),
        base_url="http://127.0.0.1:9",
        allow_private=True,
        timeout=5,
    )
    async with source:
        with pytest.raises(ToolRetry, match=r"GET http://127.0.0.1:9/ok: the service cannot be"):
            await source.tools["ok"]()
