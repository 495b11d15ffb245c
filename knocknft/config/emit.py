"""YAML text for the configs knocknft writes (`knocknft import`): commented lines, and scalars
that read back as exactly what was written. Pure: strings in, strings out."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import yaml

# Where the comments of a written config wrap.
COMMENT_WIDTH = 96


@dataclass
class CommentedYaml:
    """A YAML document built line by line, with wrapped comments between the keys."""

    lines: list[str] = field(default_factory=list)

    def comment(self, text: str, indent: int = 0) -> None:
        pad = " " * indent
        for paragraph in text.split("\n"):
            # An indented paragraph is a list item: its continuation lines hang under it.
            lead = len(paragraph) - len(paragraph.lstrip())
            hang = " " * (lead + 2) if lead else ""
            wrapped = textwrap.wrap(
                paragraph, COMMENT_WIDTH - indent, subsequent_indent=hang, break_on_hyphens=False
            ) or [""]
            self.lines += [f"{pad}# {w}".rstrip() for w in wrapped]

    def key(self, name: str, value: str, indent: int) -> None:
        self.lines.append(f"{' ' * indent}{name}: {value}")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def scalar(text: str) -> str:
    """`text` as a YAML scalar that reads back as exactly this string: plain when safe."""
    for candidate in (text, "'" + text.replace("'", "''") + "'"):
        try:
            if yaml.safe_load(f"k: {candidate}") == {"k": text}:
                return candidate
        except yaml.YAMLError:
            continue
    return quoted(text)


def quoted(text: str) -> str:
    """`text` as a double-quoted YAML scalar, escaped where YAML needs it: for secrets, which
    are always quoted, whatever characters they hold."""
    dumped = yaml.safe_dump(text, default_style='"', width=float("inf"), allow_unicode=True)
    return dumped.removesuffix("\n...\n").rstrip("\n")


def write_interface(
    out: CommentedYaml, interface: str | None, where: str, before: str, heard: str
) -> None:
    """options.interfaces: the one interface the old daemon listened on (`where` it was set), or
    a comment saying what it did (`before`) and why no interface is written; `heard` is what
    arrives there (knocks, SPA packets)."""
    if interface is not None:
        out.comment(f"{where}.", 2)
        out.key("interfaces", f"[{scalar(interface)}]", 2)
        return
    out.comment(
        f"{before} Without `interfaces` knocknft takes {heard} on, and guards the services on, "
        "every interface; add `interfaces: [eth0]` to keep to one.",
        2,
    )
