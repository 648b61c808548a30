"""MCP tool results as the text a model reads."""

from __future__ import annotations

import json

import mcp_types as types

__all__ = ["result_text"]


def result_text(result: types.CallToolResult) -> str:
    """A tool result as the text a model reads: text blocks as they are, the structured
    content as JSON when no text says it, and a description of what text cannot carry."""
    parts = [_block_text(block) for block in result.content]
    has_text = any(isinstance(block, types.TextContent) for block in result.content)
    if result.structured_content is not None and not has_text:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(part for part in parts if part)


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, (types.ImageContent, types.AudioContent)):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        size = _decoded_size(block.data)
        return f"[{kind} ({block.mime_type}, {size} bytes) not shown: this model reads text only]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.uri} ({block.name})]"
    resource = block.resource
    if isinstance(resource, types.TextResourceContents):
        return resource.text
    mime = resource.mime_type or "binary data"
    size = _decoded_size(resource.blob)
    return f"[resource {resource.uri} ({mime}, {size} bytes) not shown: this model reads text only]"


def _decoded_size(data: str) -> int:
    """The size in bytes of base64 data, without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=")
