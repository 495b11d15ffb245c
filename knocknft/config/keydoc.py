"""The shape of the config reference: a Key (default, meaning, the JSON Schema of its value) and a
Section (the keys of one mapping, held to the parser's own key list). Pure: data only.
"""

from __future__ import annotations

from dataclasses import dataclass

from knocknft.config.valueschema import Schema


@dataclass(frozen=True)
class Key:
    """One key: `default` as the docs show it, `meaning` in plain sentences, `value` its schema."""

    name: str
    default: str
    meaning: str
    value: Schema


@dataclass(frozen=True)
class Section:
    """The keys of one mapping of the config: `path` as errors name it (`doors.NAME`), `parsed`
    the parser's own key list, which `keys` must cover exactly."""

    path: str
    title: str
    intro: str
    keys: tuple[Key, ...]
    parsed: tuple[str, ...]

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)
