"""Small GBNF writers: literals, character-class escapes, integer ranges."""

from __future__ import annotations

__all__ = ["class_char", "gbnf_literal", "int_range"]


def gbnf_literal(text: str) -> str:
    """`text` as a quoted GBNF literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def class_char(ch: str) -> str:
    """`ch` as it can stand inside a GBNF character class."""
    if ch.isalnum() and ch.isascii():
        return ch
    return f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else f"\\u{ord(ch):04X}"


def int_range(low: int, high: int) -> str:
    """GBNF for the integers in [low, high], as JSON writes them (empty text: there are none)."""
    if low > high:
        return ""
    alts: list[str] = []
    if low < 0:
        alts += [f'"-" {a}' for a in _nonneg(max(-high, 1), -low)]
    if high >= 0:
        alts += _nonneg(max(low, 0), high)
    return " | ".join(f"( {a} )" if " " in a and len(alts) > 1 else a for a in alts)


def _nonneg(low: int, high: int) -> list[str]:
    out: list[str] = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        out += _same_length(str(low), str(top))
        low = top + 1
    return out


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives matching the digit strings from `low` to `high` (same length)."""
    if low == high:
        return [f'"{low}"']
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    rest = len(low) - 1
    if low[0] == high[0]:
        return [f'"{low[0]}" {a}' for a in _same_length(low[1:], high[1:])]
    alts: list[str] = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        alts += [f'"{low[0]}" {a}' for a in _same_length(low[1:], "9" * rest)]
        first += 1
    tail_alts = []
    if high[1:] != "9" * rest:
        tail_alts = [f'"{high[0]}" {a}' for a in _same_length("0" * rest, high[1:])]
        last -= 1
    if first <= last:
        digit = f'"{first}"' if first == last else f"[{first}-{last}]"
        alts.append(f"{digit} [0-9]{{{rest}}}")
    return alts + tail_alts
