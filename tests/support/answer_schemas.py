"""Answer schemas of the kinds real structured outputs use, each with a prompt that asks for it.

Shared by the local runtime's structured-output tests, the server's, the Agent's and the
benchmarks: `ANSWER_SCHEMAS` maps an id to `(prompt, schema)`.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_PERSON: Schema = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

_TREE: Schema = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "maxLength": 20},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["label"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

ANSWER_SCHEMAS: dict[str, tuple[str, Schema]] = {
    "flat-object": ("Alice is 31 years old. Give her name and age.", _PERSON),
    "nested-object": (
        "Bob lives at 12 Oak Street in Leeds. Give his name and address.",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string", "maxLength": 60},
                        "city": {"type": "string", "maxLength": 40},
                    },
                    "required": ["street", "city"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "address"],
            "additionalProperties": False,
        },
    ),
    "array-bounds": (
        "List three fruits.",
        {
            "type": "object",
            "properties": {
                "fruits": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 20},
                    "minItems": 2,
                    "maxItems": 4,
                }
            },
            "required": ["fruits"],
        },
    ),
    "enum": (
        "The movie was wonderful. What is the sentiment?",
        {
            "type": "object",
            "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]}},
            "required": ["sentiment"],
        },
    ),
    "const": (
        "Report the status of the job: it finished.",
        {
            "type": "object",
            "properties": {
                "kind": {"const": "job-report"},
                "done": {"type": "boolean"},
            },
            "required": ["kind", "done"],
            "additionalProperties": False,
        },
    ),
    "any-of": (
        "Give the temperature of Paris, as a number or as text.",
        {
            "type": "object",
            "properties": {
                "temperature": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 20}]}
            },
            "required": ["temperature"],
        },
    ),
    "one-of-shapes": (
        "Describe a circle of radius 2.",
        {
            "type": "object",
            "properties": {
                "shape": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "circle"},
                                "radius": {"type": "number", "minimum": 0},
                            },
                            "required": ["kind", "radius"],
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "square"},
                                "side": {"type": "number", "minimum": 0},
                            },
                            "required": ["kind", "side"],
                            "additionalProperties": False,
                        },
                    ]
                }
            },
            "required": ["shape"],
        },
    ),
    "optional-fields": (
        "Carol is an engineer. Give her name, and her email if known.",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "email": {"type": "string", "maxLength": 60},
                "job": {"type": "string", "maxLength": 40},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
    ),
    "nullable-type-list": (
        "Dan has no phone. Give his name and phone number.",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "phone": {"type": ["string", "null"], "maxLength": 20},
            },
            "required": ["name", "phone"],
            "additionalProperties": False,
        },
    ),
    "nullable-any-of": (
        "Eve is 40. Give her name and age (null if unknown).",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
            },
            "required": ["name", "age"],
        },
    ),
    "ref-defs": (
        "Two people: Ann, 20, and Ben, 22.",
        {
            "$defs": {"person": _PERSON},
            "type": "object",
            "properties": {
                "people": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/person"},
                    "minItems": 1,
                    "maxItems": 3,
                }
            },
            "required": ["people"],
        },
    ),
    "recursive-ref": ("Write a small tree of animals: mammals with cats and dogs.", _TREE),
    "recursive-root-ref": (
        "A linked list of 1, 2, 3.",
        {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
            },
            "required": ["value", "next"],
            "additionalProperties": False,
        },
    ),
    "integer-bounds": (
        "Rate this pizza from 1 to 5.",
        {
            "type": "object",
            "properties": {"stars": {"type": "integer", "minimum": 1, "maximum": 5}},
            "required": ["stars"],
        },
    ),
    "number-bounds": (
        "What fraction of the glass is full? It is half full.",
        {
            "type": "object",
            "properties": {
                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "percent": {"type": "number", "exclusiveMinimum": -1, "exclusiveMaximum": 101},
            },
            "required": ["fraction", "percent"],
        },
    ),
    "string-bounds": (
        "Give a short title for a story about a dragon.",
        {
            "type": "object",
            "properties": {"title": {"type": "string", "minLength": 3, "maxLength": 30}},
            "required": ["title"],
        },
    ),
    "date": (
        "The meeting is on 3 March 2025. When is it?",
        {
            "type": "object",
            "properties": {"date": {"type": "string", "format": "date"}},
            "required": ["date"],
        },
    ),
    "date-time": (
        "The flight leaves on 2025-06-01 at 14:30 UTC. When does it leave?",
        {
            "type": "object",
            "properties": {
                "departure": {"type": "string", "format": "date-time"},
                "flight": {"type": "string", "maxLength": 10},
            },
            "required": ["departure"],
        },
    ),
    "dictionary": (
        "Count the letters a and b in 'abba'.",
        {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "minProperties": 1,
            "maxProperties": 4,
        },
    ),
    "tuple-prefix-items": (
        "Give the point (3, 4) with a label.",
        {
            "type": "object",
            "properties": {
                "point": {
                    "type": "array",
                    "prefixItems": [
                        {"type": "number"},
                        {"type": "number"},
                        {"type": "string", "maxLength": 20},
                    ],
                    "items": False,
                }
            },
            "required": ["point"],
        },
    ),
    "all-of": (
        "An order: id 7, for 2 lamps.",
        {
            "type": "object",
            "allOf": [
                {"properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]},
                {"properties": {"count": {"type": "integer", "minimum": 0, "maximum": 99}}},
            ],
        },
    ),
    "pydantic-invoice": (
        "Invoice 42 from ACME, dated 2024-12-01: 3 bolts at 2 each, 1 hammer at 15.",
        {
            "$defs": {
                "Line": {
                    "properties": {
                        "item": {"title": "Item", "type": "string", "maxLength": 30},
                        "quantity": {"title": "Quantity", "type": "integer", "minimum": 1},
                        "price": {"title": "Price", "type": "number", "minimum": 0},
                    },
                    "required": ["item", "quantity", "price"],
                    "title": "Line",
                    "type": "object",
                },
                "Currency": {"enum": ["EUR", "USD", "GBP"], "title": "Currency", "type": "string"},
            },
            "properties": {
                "number": {"title": "Number", "type": "integer"},
                "vendor": {"title": "Vendor", "type": "string", "maxLength": 30},
                "date": {"format": "date", "title": "Date", "type": "string"},
                "currency": {"$ref": "#/$defs/Currency", "default": "EUR"},
                "lines": {
                    "items": {"$ref": "#/$defs/Line"},
                    "title": "Lines",
                    "type": "array",
                    "maxItems": 3,
                },
                "note": {
                    "anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}],
                    "default": None,
                    "title": "Note",
                },
            },
            "required": ["number", "vendor", "date", "lines"],
            "title": "Invoice",
            "type": "object",
        },
    ),
    "uuid-and-time": (
        "Log an event at 09:15:00Z.",
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": "string", "format": "time"},
            },
            "required": ["id", "at"],
        },
    ),
}
"""id -> (prompt, schema); every schema is an object answer, as `response_format` asks."""

JSON_OBJECT_PROMPT = "Give the capital of France as JSON."
