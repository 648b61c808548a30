"""`response_format` on the server's routes: checked before the model is asked.

Both routes take agentkit's canonical shape after decoding (`/ai/run` sends it as Workers AI
does; `/v1/chat/completions` sends OpenAI's `{name, schema, strict}`, which the OpenAI codec
reads into it). A malformed format, or a schema the runtime cannot hold, is a 400 naming the
field or the schema keyword and its path, before any token (and before a stream starts).

The answer comes back as JSON text in `response` (`/ai/run`) or `message.content` (chat
completions), streamed as it grows. `/ai/run` keeps `response` a string even in JSON mode
(Workers AI sometimes sends an object there): the `cloudflare` SDK types it as a string, and
a stream can only carry text.
"""

from __future__ import annotations

import anyio

from agentkit.model_api import ModelRequest
from agentkit.server.core import ServerState

__all__ = ["check_answer_format"]


async def check_answer_format(state: ServerState, request: ModelRequest) -> None:
    """Refuse, before generating, an answer format (or tools) the served runtime cannot honour.

    The local runtime holds the answer to a grammar; a keyword no grammar can hold (`pattern`,
    `multipleOf`, ...) would be left to a validator, and a server's client runs none of ours:
    so here such a keyword is refused, by name and path, rather than silently not enforced.
    The tools' schemas are compiled too. Compiling takes a worker thread, so other requests
    are answered meanwhile; a schema too large for the grammar's budget is refused.

    Raises:
        RequestValidationError: `response_format` is neither `json_object` nor `json_schema`.
        SchemaGrammarError: (local runtime) a keyword the grammar cannot hold.
    """
    if request.tools or request.response_format is not None:
        await anyio.to_thread.run_sync(_check, state, request)


def _check(state: ServerState, request: ModelRequest) -> None:
    if request.tools:
        state.runtime.check_tools(request.tools)
    if request.response_format is not None:
        with_calls = bool(request.tools) and request.tool_choice == "auto"
        state.runtime.check_response_format(
            request.response_format, validated=False, with_calls=with_calls
        )
