"""Serve an app with uvicorn on a loopback port, in a background thread: for tests, notebooks
and scripts that need a real HTTP server for a while.

```python
with BackgroundServer(create_app(runtime)) as server:
    httpx.post(server.url + "/client/v4/accounts/a/ai/run/@agentkit/local", json={...})
```
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TypeVar

import uvicorn
from starlette.types import ASGIApp

from agentkit.server.deadlines import DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE, uvicorn_config

__all__ = ["BackgroundServer"]

_Server = TypeVar("_Server", bound="BackgroundServer")


class BackgroundServer:
    """uvicorn serving `app` on `host` (an ephemeral port unless `port` is given).

    Args:
        app: the ASGI application.
        host: the address to bind; loopback by default.
        port: the port; 0 picks a free one (read it back from `url`).
        log_level: uvicorn's log level.
        header_timeout: seconds a connection may take to send a request's headers.
        keep_alive: seconds an idle keep-alive connection stays open.
        lifespan: uvicorn's lifespan setting (`"on"` for apps that start things, like `/mcp`).
        ssl_certfile: serve HTTPS with this certificate (PEM; the chain, leaf first).
        ssl_keyfile: the certificate's private key (PEM).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        keep_alive: int = DEFAULT_KEEP_ALIVE,
        lifespan: str = "off",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.host = host
        self.scheme = "https" if ssl_certfile else "http"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every small response waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn_config(
            app,
            header_timeout=header_timeout,
            keep_alive=keep_alive,
            log_level=log_level,
            lifespan=lifespan,
            timeout_graceful_shutdown=3,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        """`http://host:port` (`https://` with a certificate), no trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections.

        Raises:
            RuntimeError: the server did not start within `timeout` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (open streams get a few seconds to end) and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
