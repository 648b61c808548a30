"""What several test modules share: the `add` tool, and a client whose HTTP goes to a function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudflare
import httpx
import openai

from agentkit import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


ACCOUNT = "acc"
"""The account id in the SDKs' URLs (our server takes any)."""


def cloudflare_sdk(url: str, token: str) -> cloudflare.Cloudflare:
    """The official `cloudflare` SDK, pointed at a server on loopback, no retries."""
    return cloudflare.Cloudflare(api_token=token, base_url=url + "/client/v4", max_retries=0)


def openai_sdk(url: str, token: str) -> openai.OpenAI:
    """The official `openai` SDK, pointed at a server's OpenAI-compatible routes, no retries."""
    return openai.OpenAI(
        api_key=token, base_url=f"{url}/client/v4/accounts/{ACCOUNT}/ai/v1", max_retries=0
    )


def mocked_client(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """An `httpx.AsyncClient` whose requests go to `answer`; the requests it sent are collected."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), sent


def answers(body: Any) -> Callable[[httpx.Request], httpx.Response]:
    """An answer function that always replies 200 with `body` as JSON."""
    return lambda request: httpx.Response(200, json=body)
