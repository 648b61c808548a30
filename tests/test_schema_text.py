"""What the prompt shows of an answer's schema: the schema where it fits, a shorter account of
it where it does not, so that no schema is refused for the length of its text."""

from __future__ import annotations

import json
from pathlib import Path

from agentkit.chat_formats.answer import instructions
from agentkit.runtimes.llama_cpp import LlamaCpp

from support.environment import JSONSCHEMABENCH, require_jsonschemabench

INVOICE = {
    "type": "object",
    "title": "Invoice",
    "description": "An invoice as the accounting system files it. " * 20,
    "properties": {
        "number": {"type": "integer", "description": "The invoice's number."},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "customer": {"$ref": "#/$defs/customer"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
        "note": {"type": ["string", "null"]},
        "due": {"type": "string", "format": "date"},
    },
    "required": ["number", "currency", "lines"],
    "$defs": {
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
            "required": ["name"],
        },
        "line": {
            "type": "object",
            "properties": {"item": {"type": "string"}, "price": {"type": "number"}},
            "required": ["item", "price"],
        },
    },
}


def response_format(schema: object) -> dict[str, object]:
    return {"type": "json_schema", "json_schema": schema}


def test_a_schema_that_fits_is_shown_whole() -> None:
    text = instructions(response_format(INVOICE))
    assert text.endswith(json.dumps(INVOICE, separators=(",", ":")))


def test_where_room_is_short_annotations_go_then_the_schema_becomes_an_outline() -> None:
    whole = len(json.dumps(INVOICE, separators=(",", ":")))
    stripped = instructions(response_format(INVOICE), lambda text: len(text) < whole)
    assert "accounting system" not in stripped and "The invoice's number" not in stripped
    # A property named `description` is a property, not an annotation: it stays.
    assert '"description":{"type":"string"}' in stripped
    outline = instructions(response_format(INVOICE), lambda text: len(text) < 400)
    assert outline.endswith(
        '{"number": integer, "currency": "EUR" | "USD" | "GBP", "customer"?: {"name": string, '
        '"description"?: string}, "lines": [{"item": string, "price": number}], "note"?: string '
        '| null, "due"?: string (date)}'
    )
    keys = instructions(response_format(INVOICE), lambda text: len(text) < 140)
    assert keys == (
        'Your final answer to the user is a JSON object with the keys "number", "currency", '
        '"customer", "lines", "note", "due".'
    )


def test_the_largest_real_world_schemas_fit_half_the_context(model_path: Path) -> None:
    """JSONSchemaBench's five longest schemas (13,000 to 60,000 characters: past the embedded
    model's whole context of 4,096 tokens) are shown in what fits half of it."""
    require_jsonschemabench()
    schemas = [json.loads(p.read_text())["schema"] for p in JSONSCHEMABENCH.glob("*.json")]
    longest = sorted(schemas, key=lambda s: len(json.dumps(s)))[-5:]
    runtime = LlamaCpp(model_path)
    for schema in longest:
        assert len(json.dumps(schema)) > 13_000
        text = instructions(response_format(schema), runtime._fits_context)
        assert runtime._fits_context(text)
        assert len(text) < 12_000
