"""The partial-JSON parser behind `PartialOutput` events: any prefix of an object reads as the
value so far, the whole text as the value, in time linear in the text."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit._partial_json import PartialJSON

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=5)


def parsed(*pieces: str) -> Any:
    parser = PartialJSON()
    for piece in pieces:
        parser.feed(piece)
    return parser.value()


def contained(partial: Any, whole: Any) -> bool:
    """Whether `partial` could grow into `whole`: same containers, strings cut short, numbers
    maybe missing digits."""
    if isinstance(whole, dict):
        return isinstance(partial, dict) and all(
            k in whole and contained(v, whole[k]) for k, v in partial.items()
        )
    if isinstance(whole, list):
        return (
            isinstance(partial, list)
            and len(partial) <= len(whole)
            and all(contained(p, w) for p, w in zip(partial, whole, strict=False))
        )
    if isinstance(whole, str):
        return isinstance(partial, str) and whole.startswith(partial)
    if isinstance(whole, (int, float)) and not isinstance(whole, bool):
        return isinstance(partial, (int, float))
    return bool(partial == whole)


@settings(max_examples=100, deadline=None)
@given(objects, st.booleans())
def test_every_prefix_reads_as_part_of_the_value_and_the_whole_as_the_value(
    value: dict[str, Any], ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    parser = PartialJSON()
    for i, ch in enumerate(text):
        parser.feed(ch)
        if i % 3 == 0:
            assert contained(parser.value(), value), text[: i + 1]
    assert parser.value() == value
    assert parsed(text) == value


def test_values_so_far_close_what_is_open_and_cut_strings() -> None:
    assert parsed('{"name": "Ada Lo') == {"name": "Ada Lo"}
    assert parsed('{"name": "Ada", "tags": ["x", "y') == {"name": "Ada", "tags": ["x", "y"]}
    assert parsed('{"a": {"b": [1, {"c": tr') == {"a": {"b": [1, {}]}}
    assert parsed('{"a": 12') == {}  # 12 may be the start of 1217: numbers show once whole
    assert parsed('{"a": 12,') == {"a": 12}
    assert parsed('{"a": 1, "b') == {"a": 1}  # a key without its value is left out
    assert parsed('{"a": 1, "b": ') == {"a": 1}
    assert parsed("") is None


def test_escapes_split_across_pieces() -> None:
    assert parsed('{"s": "a\\', "nb \\u00", "e9 \\", '"q\\"', '"}') == {"s": 'a\nb é "q"'}


def test_text_around_the_object_is_ignored() -> None:
    assert parsed('Here it is:\n```json\n{"ok": true}\n```\nDone {"x": 1}') == {"ok": True}


def test_text_that_is_not_json_ends_the_parse_keeping_what_was_read() -> None:
    assert parsed('{"a": 1, "b": nope, "c": 2}') == {"a": 1}


def test_the_parse_is_linear_in_the_text() -> None:
    def seconds(n: int) -> float:
        text = json.dumps({"items": [{"name": "x" * 20, "n": i} for i in range(n)]})
        best = float("inf")
        for _ in range(3):
            parser = PartialJSON()
            # CPU time: waiting for a core that other processes hold is no part of the parse.
            started = time.process_time()
            for start in range(0, len(text), 7):
                parser.feed(text[start : start + 7])
            best = min(best, time.process_time() - started)
        return best

    small, large = seconds(500), seconds(4000)
    # 8x the text: about 8x the time (a quadratic parse would take 64x).
    assert large / small < 20, (small, large)
