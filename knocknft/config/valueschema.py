"""JSON Schema fragments for the config's kinds of value, one function per kind, built from the
model's limits. knocknft reads every scalar as text (YAML's `7` and `"7"` are the same to it), so a
number is accepted as a JSON number and as its digits in a string; an editor that reads `yes` as a
string (YAML 1.2) and one that reads it as true (YAML 1.1) both pass a bool. Pure: data only.

A schema checks a value's shape; what only the parser can tell (a door's sequence that is a prefix
of another's, an interface the host lacks) stays with `knocknft check`.
"""

from __future__ import annotations

from typing import Any

from knocknft.config.model import (
    DOOR_NAME_RE,
    IFNAME_RE,
    MAX_PORT,
    MAX_RATE,
    TABLE_NAME_RE,
    TCP_FLAG_BITS,
)
from knocknft.config.scalars import _FALSE, _RATE_UNITS, _TRUE

Schema = dict[str, Any]


def _nocase(word: str) -> str:
    """`word` matched in any case: ECMA-262 regexes (what editors run) have no inline (?i)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_DURATION = r"^\s*[0-9]+\s*[smhd]?\s*$"
_PORT_TEXT = rf"^\s*[0-9]+\s*(?:[/:]\s*(?:{_nocase('tcp')}|{_nocase('udp')})\s*)?$"
_FLAG = "!?\\s*(?:" + "|".join(map(_nocase, TCP_FLAG_BITS)) + ")"
_TCPFLAGS = rf"^\s*{_FLAG}\s*(?:,\s*{_FLAG}\s*)*$"
_RATE = r"^\s*[0-9]+\s*/\s*(?:" + "|".join(map(_nocase, _RATE_UNITS)) + r")\s*$"
_LISTEN = r"^\s*(?:\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]+\s*$"
# The parser's own word lists, so that the schema takes exactly what `check` takes.
_BOOL_WORDS = sorted(_TRUE | _FALSE)


def integer(low: int, high: int) -> Schema:
    """A whole number low..high (the range the parser checks), or its digits as text."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "pattern": r"^\s*[0-9]+\s*$"},
        ]
    }


def duration(maximum: int) -> Schema:
    """Seconds, or a number with a unit s, m, h, d; 1s .. maximum."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": maximum},
            {"type": "string", "pattern": _DURATION},
        ]
    }


def boolean() -> Schema:
    return {
        "anyOf": [
            {"type": "boolean"},
            {"type": "integer", "enum": [0, 1]},
            {
                "type": "string",
                "pattern": "^\\s*(?:" + "|".join(map(_nocase, _BOOL_WORDS)) + ")\\s*$",
            },
        ]
    }


def text(pattern: str = r"\S") -> Schema:
    """A string; by default one with something in it (a command, a name)."""
    return {"type": "string", "pattern": pattern}


def enum(*words: str) -> Schema:
    return {"type": "string", "enum": list(words)}


def abs_path() -> Schema:
    return {"type": "string", "pattern": r"^\s*/"}


def port() -> Schema:
    """PORT, PORT/tcp, PORT/udp (or knockd's PORT:udp)."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_PORT},
            {"type": "string", "pattern": _PORT_TEXT},
        ]
    }


def one_or_list(item: Schema, *, min_items: int = 0, max_items: int | None = None) -> Schema:
    """A list of items; a lone scalar counts as a list of one, as the parser takes it."""
    items: Schema = {"type": "array", "items": item, "minItems": min_items}
    if max_items is not None:
        items["maxItems"] = max_items
    return {"anyOf": [items, item]}


def tcpflags() -> Schema:
    return {"type": "string", "pattern": _TCPFLAGS}


def rate() -> Schema:
    return {"type": "string", "pattern": _RATE}


def listen_address() -> Schema:
    return {"type": "string", "pattern": _LISTEN}


def address() -> Schema:
    """An IPv4 or IPv6 address (checked by the parser; a format is a hint to editors)."""
    return {"type": "string", "pattern": r"^\s*[0-9A-Fa-f:.]+\s*$"}


def network_or_name() -> Schema:
    """An address, a network in CIDR notation, or a host name."""
    return {"type": "string", "pattern": r"^\s*[0-9A-Za-z:.\-/]+\s*$"}


def interface_name() -> Schema:
    return {"type": "string", "pattern": IFNAME_RE.pattern}


def table_name() -> Schema:
    return {"type": "string", "pattern": TABLE_NAME_RE.pattern}


def door_name_pattern() -> str:
    return DOOR_NAME_RE.pattern


def mark_bit() -> Schema:
    """One bit of the 32-bit packet mark, as a number or as hex text (0x1000)."""
    return {
        "anyOf": [
            {"type": "integer", "enum": [1 << bit for bit in range(32)]},
            {"type": "string", "pattern": r"^\s*(?:0[xX][0-9A-Fa-f]{1,8}|[0-9]+)\s*$"},
        ]
    }


def rate_count() -> Schema:
    return integer(1, MAX_RATE)


def nocase_words(*words: str) -> str:
    """A pattern taking one of `words`, in any case."""
    return r"^\s*(?:" + "|".join(map(_nocase, words)) + r")\s*$"


def date() -> Schema:
    """A day, YYYY-MM-DD (an editor's YAML 1.2 reads it as text)."""
    return {"type": "string", "pattern": r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*$"}
