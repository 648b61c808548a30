"""Chat formats for local models: render messages and tools to a prompt, parse calls back.

```
get_format("chatml").render(messages, tools)   -> prompt text, ending with the assistant header
fmt.call_grammar(tools)                        -> GBNF holding a call to the tools' schemas
fmt.parse(text)                                -> (answer text, tool calls)
check_tool_schemas(tools)                      -> raises if a call grammar cannot hold one
```

`format_for_metadata` picks the format from a GGUF file's metadata; `get_format` by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentkit.chat_formats.base import MAX_PARALLEL_CALLS, ChatFormat
from agentkit.chat_formats.chatml import DEFAULT_SYSTEM_PROMPT, ChatMLFormat
from agentkit.chat_formats.grammar import SchemaGrammarError, schema_to_gbnf
from agentkit.chat_formats.llama3 import Llama3Format
from agentkit.chat_formats.parsing import parse_tool_calls
from agentkit.errors import ConfigurationError
from agentkit.model_api import FunctionDefinition

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "FORMATS",
    "MAX_PARALLEL_CALLS",
    "ChatFormat",
    "ChatMLFormat",
    "Llama3Format",
    "SchemaGrammarError",
    "check_tool_schemas",
    "format_for_metadata",
    "get_format",
    "parse_tool_calls",
    "schema_to_gbnf",
]

FORMATS: dict[str, ChatFormat] = {f.name: f for f in (Llama3Format(), ChatMLFormat())}
"""Every known format, by name."""
_SMOLLM = ChatMLFormat(system_prompt=DEFAULT_SYSTEM_PROMPT)


def get_format(name: str) -> ChatFormat:
    """The format called `name` (`llama3`, `chatml`).

    Raises:
        ConfigurationError: no format has that name; the message lists the known ones.
    """
    found = FORMATS.get(name.strip().lower())
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise ConfigurationError(f"chat format: unknown format {name!r} (known: {known})")
    return found


def format_for_metadata(metadata: Mapping[str, str]) -> ChatFormat:
    """The format a GGUF model speaks, from its metadata (`llama_cpp.Llama(...).metadata`).

    The chat template decides (`<|start_header_id|>`: llama3, `<|im_start|>`: chatml); without
    one, the architecture and model name; chatml when nothing tells. SmolLM models (by name or
    template) get ChatML with SmolLM's own default system prompt; other ChatML models none.
    """
    template = metadata.get("tokenizer.chat_template") or ""
    name = (metadata.get("general.name") or "").lower().replace(" ", "-").replace("_", "-")
    if "<|start_header_id|>" in template:
        return FORMATS["llama3"]
    architecture = (metadata.get("general.architecture") or "").lower()
    llama3 = any(t in name for t in ("llama-3", "llama3", "meta-llama"))
    if "<|im_start|>" not in template and architecture == "llama" and llama3:
        return FORMATS["llama3"]
    basename = (metadata.get("general.basename") or "").lower()
    if "smollm" in name or "smollm" in basename or "SmolLM" in template:
        return _SMOLLM
    return FORMATS["chatml"]


def check_tool_schemas(tools: Sequence[FunctionDefinition]) -> None:
    """Fail now if a call grammar cannot hold one of the tools' parameters.

    Formats differ in how a call is wrapped, not in what a schema allows, so one check serves
    every format; an Agent on a runtime that holds calls to a grammar runs it when it is built.

    Raises:
        SchemaGrammarError: naming the tool and the path in its parameters.
    """
    FORMATS["chatml"].check_tools(tools)
