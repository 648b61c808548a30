"""A FastAPI service for the OpenAPI tools' tests: its own `/openapi.json` describes it.

Routes: items (path, query and header parameters, a JSON body), a bearer-protected route and an
API-key-protected one, failures that echo the credentials they were sent (so the tests can see
that the model is never shown them), redirects (to the same origin and elsewhere), a large
answer, and a recursive body schema.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

TOKEN = "bearer-Tk-7f3a9c1e5b2d4068"
API_KEY = "apikey-Qz-91b7e2c4d6f80a35"
BIG = 300_000
"""Bytes of the `/big` answer."""


class Item(BaseModel):
    name: str = Field(description="What the item is called.")
    price: float = Field(description="Its price in euros.")
    tags: list[str] = Field(default_factory=list)


class Node(BaseModel):
    label: str
    children: list[Node] = Field(default_factory=list)


bearer = HTTPBearer(auto_error=False)
api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


def create_service() -> FastAPI:
    app = FastAPI(title="Inventory", version="1.0.0")
    items: dict[int, dict[str, Any]] = {1: {"name": "lamp", "price": 12.5, "tags": ["home"]}}

    @app.get("/items/{item_id}", operation_id="get_item", summary="Get one item", tags=["items"])
    def get_item(
        item_id: int,
        detail: bool = False,
        x_trace: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if item_id not in items:
            raise HTTPException(404, f"no item {item_id}")
        found: dict[str, Any] = {"id": item_id, **items[item_id]}
        if detail:
            found["detail"] = "full"
        if x_trace:
            found["trace"] = x_trace
        return found

    @app.post("/items", operation_id="create_item", summary="Create an item", tags=["items"])
    def create_item(item: Item) -> dict[str, Any]:
        new = max(items) + 1
        items[new] = item.model_dump()
        return {"id": new, **items[new]}

    @app.get("/search", operation_id="search", summary="Items with all these tags")
    def search(
        tag: Annotated[list[str], Query()],
        basket: Annotated[str | None, Cookie()] = None,
    ) -> dict[str, Any]:
        return {"tags": tag, "basket": basket}

    form = {"application/x-www-form-urlencoded": {"schema": {
        "type": "object",
        "properties": {"note": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["note"],
    }}}  # fmt: skip

    @app.post(
        "/notes",
        operation_id="add_note",
        summary="Add a note (a form)",
        openapi_extra={"requestBody": {"required": True, "content": form}},
    )
    async def add_note(request: Request) -> dict[str, Any]:
        fields = parse_qs((await request.body()).decode())
        return {"type": request.headers["content-type"], "fields": fields}

    @app.get("/files/{name}", operation_id="read_file", summary="Echo a file name")
    def read_file(name: str, request: Request) -> dict[str, str]:
        return {"name": name, "raw_path": request.scope["raw_path"].decode()}

    @app.get("/secure/whoami", operation_id="whoami", summary="Who the caller is")
    def whoami(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, str]:
        if credentials is None or credentials.credentials != TOKEN:
            shown = credentials.credentials if credentials else "nothing"
            raise HTTPException(401, f"token {shown} is not valid")
        return {"user": "ada"}

    @app.get("/secure/crash", operation_id="crash", summary="Fail, echoing the credentials")
    def crash(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        request: Request,
    ) -> PlainTextResponse:
        echoed = f"{request.headers.get('authorization')} {request.url}"
        return PlainTextResponse(f"internal error while serving {echoed}", status_code=500)

    @app.get("/keyed/stock", operation_id="stock", summary="Stock level (API key)")
    def stock(key: Annotated[str | None, Depends(api_key)]) -> dict[str, int]:
        if key != API_KEY:
            raise HTTPException(403, "bad key")
        return {"lamps": 4}

    @app.get("/moved", operation_id="moved", summary="Moved to item 1")
    def moved() -> RedirectResponse:
        return RedirectResponse("/items/1", status_code=307)

    @app.get("/away", operation_id="away", summary="Moved to another host")
    def away(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=302)

    @app.get("/big", operation_id="big", summary="A large answer")
    def big() -> PlainTextResponse:
        return PlainTextResponse("x" * BIG)

    @app.get("/slow", operation_id="slow", summary="Answer after two seconds")
    async def slow() -> dict[str, str]:
        await anyio.sleep(2)
        return {"finally": "here"}

    @app.post("/tree", operation_id="plant", summary="Count the nodes of a tree")
    def plant(tree: Node) -> dict[str, int]:
        def count(node: Node) -> int:
            return 1 + sum(count(child) for child in node.children)

        return {"nodes": count(tree)}

    return app
