"""What the A2A tests share: an agents file with a tool that needs approval, `agentkit serve
--a2a` as a real process, and the official SDK's client pointed at a server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from a2a.client import Client, ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest

from support.temporal_server import free_port, wait_listening

BANK = '''
import anyio

from agentkit import Agent, FunctionRuntime, ScriptedRuntime, tool


@tool(requires_approval=True)
def transfer(to: str, amount: int) -> str:
    """Send money.

    Args:
        to: Who gets it.
        amount: How much, in euros.
    """
    return f"sent {amount} EUR to {to}"


@tool
def balance() -> int:
    """The account's balance, in euros."""
    return 900


@tool
async def audit(days: int) -> str:
    """Audit the account's history; takes a while.

    Args:
        days: How many days back.
    """
    await anyio.sleep(60)
    return "clean"


def model(request):
    last = request.messages[-1]
    if last.role == "tool":
        return f"Done: {last.content}."
    if "pay" in last.content:
        return ScriptedRuntime.call("transfer", to="bob", amount=250)
    if "balance" in last.content:
        return ScriptedRuntime.call("balance")
    if "audit" in last.content:
        return ScriptedRuntime.call("audit", days=30)
    return f"You said: {last.content}"


agent = Agent(
    FunctionRuntime(model),
    tools=[balance, transfer, audit],
    name="bank",
    instructions="Moves money between accounts.\\nAsk before paying.",
)
'''
"""An agent that echoes, reads the balance, pays through `transfer` (which needs approval)
or audits for a minute, decided by the words of the request; a function decides, so it
survives restarts."""


def user_message(*parts: Part, task_id: str = "", context_id: str = "") -> SendMessageRequest:
    """A request sending a user message of `parts` (to `task_id`, when continuing one)."""
    message = Message(
        role=Role.ROLE_USER,
        message_id=uuid.uuid4().hex,
        parts=list(parts),
        task_id=task_id,
        context_id=context_id,
    )
    return SendMessageRequest(message=message)


async def sdk_client(url: str, *, streaming: bool, token: str | None = None) -> Client:
    """The official SDK's client for the agent at `url`, from its card."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.AsyncClient(timeout=30, headers=headers)
    return await create_client(url, ClientConfig(streaming=streaming, httpx_client=http))


class ServeProcess:
    """`agentkit serve --a2a` in a process of its own on a free loopback port.

    `with ServeProcess(agents, store).running() as server:` ... `server.url`; `stop()` ends
    the process (SIGTERM), `kill()` as a crash would, `start()` starts another on the same
    port and store.
    """

    def __init__(self, agents: Path, store: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "agentkit.cli",
            "serve",
            "--agents",
            str(agents),
            "--a2a",
            "--a2a-store",
            str(store),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *extra,
        ]
        self.log = store.with_suffix(".log")
        """What the server wrote, from every start."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Its output goes to a file: a pipe nobody reads would stall a server that logs much.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_listening(self.process, self.port, "agentkit serve", self.log.read_text)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=30)
        self.process = None

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.communicate(timeout=30)
        self.process = None

    @contextmanager
    def running(self) -> Iterator[ServeProcess]:
        """Started for the `with` block, stopped after it."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


@contextmanager
def serving_bank(folder: Path) -> Iterator[ServeProcess]:
    """`agentkit serve --a2a` of the bank agent (`BANK`), its files in `folder`."""
    (folder / "bank.py").write_text(BANK)
    with ServeProcess(folder / "bank.py", folder / "tasks.db").running() as server:
        yield server
