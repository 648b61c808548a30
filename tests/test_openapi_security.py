"""The OpenAPI tools cannot be turned against the machine (SSRF), and never show credentials.

Nothing here leaves the machine: names are resolved by an injected resolver, refused requests
are refused before any connection, and allowed ones go to the FastAPI service on loopback.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from agentkit import Agent, ScriptedRuntime
from agentkit.errors import ToolRetry, UserError
from agentkit.openapi import OpenAPIAuth, OpenAPITools, RequestRefused
from agentkit.server.background import BackgroundServer

from support.loopback import LoopbackServer
from support.openapi_service import API_KEY, TOKEN, create_service


class Resolver:
    """Answers from a table, and remembers what it was asked; no DNS query is ever made."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


def one_operation(server: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": server}],
        "paths": {"/items/{item_id}": {"get": {"operationId": "get_item", "parameters": [
            {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}
        ]}}},
    }  # fmt: skip


# -- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ("http://127.0.0.1:8080/api", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.5", "10.0.0.5 is a private address"),
        ("http://[::1]:9000", "::1 is a loopback address"),
        ("http://[::ffff:192.168.1.1]", "::ffff:192.168.1.1 is a private address"),
        ("http://0.0.0.0", "0.0.0.0 is the unspecified address"),
    ],
)
async def test_a_server_at_a_private_address_is_refused(server: str, says: str) -> None:
    resolver = Resolver({})
    source = OpenAPITools(one_operation(server), resolver=resolver)
    with pytest.raises(RequestRefused) as caught:
        await source.start()
    assert says in str(caught.value)
    assert "private addresses are refused unless allowed (allow_private=True" in str(caught.value)
    assert resolver.asked == []  # a literal address is judged as it is


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (["169.254.169.254"], "resolves to 169.254.169.254, which is a link-local address"),
        (["10.1.2.3"], "resolves to 10.1.2.3, which is a private address"),
        # Every address is checked, not only the first.
        (["93.184.215.14", "127.0.0.1"], "resolves to 127.0.0.1, which is a loopback address"),
    ],
)
async def test_a_name_that_resolves_to_a_private_address_is_refused(
    answer: list[str], says: str
) -> None:
    resolver = Resolver({"api.example.test": answer})
    source = OpenAPITools(one_operation("http://api.example.test/v1"), resolver=resolver)
    with pytest.raises(RequestRefused) as caught:
        await source.start()
    assert str(caught.value).startswith("refused to call http://api.example.test/v1: ")
    assert f"'api.example.test' {says}" in str(caught.value)


async def test_each_call_checks_the_address_again(openapi_service: LoopbackServer) -> None:
    # The name looked public when the source started, then resolves to loopback (rebinding).
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    source = OpenAPITools(one_operation("http://shop.test"), resolver=rebinding)
    async with source:
        with pytest.raises(ToolRetry, match=r"'shop.test' resolves to 127.0.0.1, which is a loop"):
            await source.tools["get_item"](item_id=1)
    assert asked == ["shop.test", "shop.test"]


async def test_the_checked_address_is_the_one_connected_to(openapi_service: LoopbackServer) -> None:
    # `.test` names resolve nowhere: only a connection to the resolver's answer can succeed.
    resolver = Resolver({"inventory.test": ["127.0.0.1"]})
    source = OpenAPITools.from_url(
        f"http://inventory.test:{openapi_service.port}/openapi.json",
        resolver=resolver,
        allow_private=True,
    )
    async with source:
        assert json.loads(await source.tools["get_item"](item_id=1))["name"] == "lamp"
    assert set(resolver.asked) == {"inventory.test"}


async def test_a_document_is_fetched_under_the_same_rules(server: LoopbackServer) -> None:
    source = OpenAPITools.from_url(f"{server.url}/openapi.json")
    with pytest.raises(RequestRefused, match=r"127.0.0.1 is a loopback address"):
        await source.start()
    assert server.requests == []  # refused before it was sent
    resolver = Resolver({"docs.test": ["192.168.7.7"]})
    named = OpenAPITools.from_url("https://docs.test/openapi.yaml", resolver=resolver)
    with pytest.raises(RequestRefused, match=r"'docs.test' resolves to 192.168.7.7, which is a"):
        await named.start()


# -- redirects --------------------------------------------------------------------------------


async def test_a_redirect_to_another_host_is_refused(openapi_service: LoopbackServer) -> None:
    resolver = Resolver({"other.test": ["127.0.0.1"]})
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json", allow_private=True, resolver=resolver
    )
    async with source:
        away = source.tools["away"]
        with pytest.raises(ToolRetry) as caught:
            await away(to="http://169.254.169.254/latest/meta-data/")
        assert str(caught.value) == (
            "refused to call http://169.254.169.254/latest/meta-data/: a redirect from "
            f"{openapi_service.url}/away: http://169.254.169.254:80 is not one of the allowed "
            f"servers ({openapi_service.url})"
        )
        # Another name, even on an allowed address, is another origin.
        with pytest.raises(ToolRetry, match=r"http://other.test:\d+ is not one of the allowed"):
            await away(to=f"http://other.test:{openapi_service.port}/items/1")
    assert resolver.asked == []


async def test_a_redirect_to_an_allowed_base_url_is_followed(
    openapi_service: LoopbackServer,
) -> None:
    resolver = Resolver({"other.test": ["127.0.0.1"]})
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json",
        allow_private=True,
        resolver=resolver,
        allowed_base_urls=[f"http://other.test:{openapi_service.port}"],
    )
    async with source:
        answer = await source.tools["away"](to=f"http://other.test:{openapi_service.port}/items/1")
    assert json.loads(answer)["name"] == "lamp"
    assert resolver.asked == ["other.test"]


# -- credentials ------------------------------------------------------------------------------

REJECTED = "rejected-bearer-5d1e8a2b7c94"
QUERY_KEY = "query-key-0c6f2e9a4b1d"


def shows_no_secret(text: str) -> bool:
    return not any(s in text for s in (TOKEN, API_KEY, REJECTED, QUERY_KEY))


async def test_credentials_never_reach_the_model(openapi_service: LoopbackServer) -> None:
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json",
        allow_private=True,
        auth=OpenAPIAuth(bearer_token=TOKEN, api_key=API_KEY),
    )
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("whoami", {}), ("stock", {}), ("crash", {})),
            "done",
        ]
    )
    async with Agent(runtime, tools=[source]) as agent:
        definitions = json.dumps([t.to_function() for t in agent.toolset])
        result = await agent.run("Who am I, and what is in stock?")
    assert shows_no_secret(definitions)
    whoami, stock, crash = result.tool_calls
    assert (whoami.output, stock.output) == ('{"user":"ada"}', '{"lamps":4}')
    # The 500 echoed the Authorization header it was sent.
    assert crash.error is not None
    assert crash.error.startswith(f"GET {openapi_service.url}/secure/crash failed: HTTP 500")
    assert "internal error while serving Bearer [redacted]" in crash.error
    # Nothing the model was sent or answered holds a credential.
    assert shows_no_secret(result.model_dump_json())
    assert shows_no_secret(json.dumps([r.model_dump() for r in runtime.requests], default=str))
    assert shows_no_secret(repr(source)) and shows_no_secret(repr(source.auth))


async def test_a_rejected_token_echoed_in_a_401_is_redacted(
    openapi_service: LoopbackServer,
) -> None:
    source = OpenAPITools.from_url(
        f"{openapi_service.url}/openapi.json",
        allow_private=True,
        auth=OpenAPIAuth(bearer_token=REJECTED),
    )
    async with source:
        with pytest.raises(ToolRetry) as caught:
            await source.tools["whoami"]()
    assert str(caught.value) == (
        f"GET {openapi_service.url}/secure/whoami failed: HTTP 401 Unauthorized: "
        '{"detail":"token [redacted] is not valid"}'
    )


async def test_an_api_key_in_the_query_is_kept_out_of_errors(
    openapi_service: LoopbackServer,
) -> None:
    document = create_service().openapi()
    document["components"]["securitySchemes"] = {
        "key": {"type": "apiKey", "in": "query", "name": "api_key"}
    }
    document["paths"]["/secure/crash"]["get"]["security"] = [{"key": []}]
    document["paths"]["/away"]["get"]["security"] = [{"key": []}]
    source = OpenAPITools(
        document,
        base_url=openapi_service.url,
        allow_private=True,
        auth=OpenAPIAuth(api_key=QUERY_KEY),
    )
    async with source:
        with pytest.raises(ToolRetry) as crashed:
            await source.tools["crash"]()  # its 500 echoes the URL, key and all
        with pytest.raises(ToolRetry) as refused:
            await source.tools["away"](to="http://10.0.0.1/")
    assert "/secure/crash?api_key=[redacted]" in str(crashed.value)
    assert shows_no_secret(str(crashed.value))
    assert str(refused.value).startswith(
        f"refused to call http://10.0.0.1/: a redirect from {openapi_service.url}/away: "
    )
    assert shows_no_secret(str(refused.value))


def test_credentials_are_in_no_repr_and_come_from_the_environment() -> None:
    auth = OpenAPIAuth.from_env(
        {"AGENTKIT_OPENAPI_TOKEN": TOKEN, "AGENTKIT_OPENAPI_USERNAME": "ada",
         "AGENTKIT_OPENAPI_PASSWORD": "pass-word-123456"}
    )  # fmt: skip
    assert (auth.bearer_token, auth.username) == (TOKEN, "ada")
    assert repr(auth) == "OpenAPIAuth(bearer_token='[redacted]', username='[redacted]')"
    assert "pass-word-123456" not in repr(auth) and TOKEN not in str(auth)
    with pytest.raises(UserError, match="username and password go together") as caught:
        OpenAPIAuth(username="ada")
    assert "ada" not in str(caught.value)
    # Any agentkit error built with a credential in it shows it redacted.
    assert TOKEN not in str(UserError(f"bad token {TOKEN}"))
    with pytest.raises(UserError, match="must hold no credentials") as bad_url:
        OpenAPITools(one_operation("http://x.test"), base_url="https://ada:pw@x.test/")
    assert "pw" not in str(bad_url.value)


# -- HTTPS: the socket goes to the checked address, the certificate is checked for the name --


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    """The service over HTTPS on loopback, with a certificate for `shop.test` from a test CA."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("shop.test")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    app = create_service()
    with BackgroundServer(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as running:
        yield ca, running.port


async def test_https_checks_the_certificate_against_the_name(
    tls_service: tuple[Any, int],
) -> None:
    ca, port = tls_service
    context = ssl.create_default_context()
    ca.configure_trust(context)
    resolver = Resolver({"shop.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})

    def at(name: str) -> OpenAPITools:
        return OpenAPITools(
            create_service().openapi(),
            base_url=f"https://{name}:{port}",
            resolver=resolver,
            allow_private=True,
            verify=context,
        )

    async with at("shop.test") as shop:
        assert json.loads(await shop.tools["get_item"](item_id=1))["name"] == "lamp"
    # The same address under a name the certificate does not hold is refused by TLS.
    async with at("other.test") as other:
        with pytest.raises(ToolRetry, match=r"cannot be reached: ConnectError: .*certificate"):
            await other.tools["get_item"](item_id=1)
