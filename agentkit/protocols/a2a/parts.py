"""A2A message parts to and from what agentkit works with: text for the model, JSON data."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from a2a.types import Part
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value
from pydantic_core import to_jsonable_python

__all__ = ["data_part", "part_data", "parts_text"]


def data_part(value: Any) -> Part:
    """A data part holding `value` (any JSON data, or what pydantic can make JSON of)."""
    return Part(data=ParseDict(to_jsonable_python(value), Value()))


def part_data(part: Part) -> Any:
    """The JSON value of a data part."""
    return MessageToDict(part.data)


def parts_text(parts: Iterable[Part], separator: str = "\n") -> str:
    """The text parts make: text parts as they are, data parts as JSON, links by their URL
    (raw bytes are left out), joined by `separator`."""
    pieces = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            pieces.append(part.text)
        elif kind == "data":
            pieces.append(json.dumps(part_data(part), ensure_ascii=False))
        elif kind == "url":
            pieces.append(part.url)
    return separator.join(pieces)
