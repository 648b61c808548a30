"""Credentials for OpenAPI services, put where the document's `securitySchemes` say.

The model never sees them: they are in no tool's schema or description, and they are added to
the request after the model's arguments are validated. A service that echoes one back has it
replaced by `[redacted]` in what the model is told, and every agentkit error scrubs it too.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import REDACTED, UserError, register_secret

__all__ = ["ENV_VARIABLES", "OpenAPIAuth", "Placement"]

ENV_VARIABLES = {
    "bearer_token": "AGENTKIT_OPENAPI_TOKEN",
    "api_key": "AGENTKIT_OPENAPI_API_KEY",
    "username": "AGENTKIT_OPENAPI_USERNAME",
    "password": "AGENTKIT_OPENAPI_PASSWORD",
}
"""The environment variables `OpenAPIAuth.from_env()` reads, by field."""


@dataclass(frozen=True)
class Placement:
    """Where one credential goes in a request."""

    location: str
    """`header`, `query` or `cookie`."""
    name: str
    value: str = field(repr=False)


@dataclass(frozen=True, repr=False)
class OpenAPIAuth:
    """Credentials for a service. Each goes where the operation's security scheme says:

    - `bearer_token`: `http` scheme `bearer`, and `oauth2` / `openIdConnect` schemes (as an
      access token obtained beforehand: no OAuth flow is run);
    - `api_key`: `apiKey` schemes, in the header, query parameter or cookie they name;
    - `username` and `password`: `http` scheme `basic`.

    A document that declares no security scheme gets the bearer token as
    `Authorization: Bearer ...` on every call (an API key needs a scheme to say where it goes).
    """

    bearer_token: str | None = None
    api_key: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise UserError("OpenAPIAuth: username and password go together (one is missing)")
        for value in self.secrets():
            register_secret(value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OpenAPIAuth:
        """The credentials in the environment (`ENV_VARIABLES`; empty ones are unset)."""
        env = os.environ if environ is None else environ
        values = {key: env.get(name) or None for key, name in ENV_VARIABLES.items()}
        return cls(**values)

    def secrets(self) -> list[str]:
        """Every value set, for scrubbing."""
        return [v for v in (self.bearer_token, self.api_key, self.password) if v]

    def __repr__(self) -> str:
        given = [k for k in ("bearer_token", "api_key", "username") if getattr(self, k)]
        return f"OpenAPIAuth({', '.join(f'{k}={REDACTED!r}' for k in given)})"

    def scrub(self, text: str) -> str:
        """`text` with every credential (and the basic-auth header made of them) replaced."""
        for secret in self._forms():
            if len(secret) >= 4:  # a shorter one would mangle ordinary words, and be no secret
                text = text.replace(secret, REDACTED)
        return text

    def _forms(self) -> list[str]:
        forms = self.secrets()
        if self.username is not None and self.password is not None:
            forms.append(self._basic())
        return sorted(forms, key=len, reverse=True)

    def _basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return base64.b64encode(pair).decode("ascii")

    def placements(
        self,
        requirements: Sequence[Mapping[str, Any]] | None,
        schemes: Mapping[str, Any],
    ) -> list[Placement]:
        """Where the credentials go for an operation with these `security` requirements:
        the first alternative whose schemes all have a credential. With none that can be met,
        nothing is added, and the service says what it thinks of that (a 401, usually).
        """
        if requirements is None:
            # The document says nothing of security: a bearer token is still sent when no
            # scheme is declared at all (the document just does not tell).
            if not schemes and self.bearer_token:
                return [Placement("header", "Authorization", f"Bearer {self.bearer_token}")]
            return []
        for requirement in requirements:
            if not requirement:
                continue  # `{}`: may go without, if nothing better can be met
            placed = [self._place(schemes.get(name)) for name in requirement]
            if all(p is not None for p in placed):
                return [p for p in placed if p is not None]
        return []

    def _place(self, scheme: Any) -> Placement | None:
        if not isinstance(scheme, Mapping):
            return None
        kind = scheme.get("type")
        if kind == "apiKey" and self.api_key:
            where = scheme.get("in")
            if where in ("header", "query", "cookie") and isinstance(scheme.get("name"), str):
                return Placement(where, scheme["name"], self.api_key)
            return None
        if kind == "http":
            how = str(scheme.get("scheme", "")).lower()
            if how == "bearer" and self.bearer_token:
                return Placement("header", "Authorization", f"Bearer {self.bearer_token}")
            if how == "basic" and self.username is not None:
                return Placement("header", "Authorization", f"Basic {self._basic()}")
            return None
        if kind in ("oauth2", "openIdConnect") and self.bearer_token:
            return Placement("header", "Authorization", f"Bearer {self.bearer_token}")
        return None
