"""Trusted sources: `always_allow`'s entries (an address, a network or a host name) and the
`always_allow_file` that lists them one a line, as the university's knockd.trusted does. Pure:
the file's text comes in through the caller's reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from knocknft.config.model import IPNetwork
from knocknft.config.scalars import Invalid, parse_network
from knocknft.errors import Problem

# RFC 1123 labels: letters, digits and inner hyphens, 1 to 63 each, 253 in all. The last label
# holds a letter, so a mistyped address (198.51.100.300) is never taken for a name.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)*(?=[a-z0-9-]*[a-z])(?:{_LABEL})$")

HINT = "write an address, a CIDR network or a host name, e.g. 198.51.100.0/24 or ssh.example.org"


def parse_host_name(text: str) -> str:
    """A host name as the resolver is asked for it: lower case, without a root's final dot."""
    name = text.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    if not _HOSTNAME_RE.match(name):
        raise Invalid(f"{text.strip()[:80]!r} is not an address, network or host name", HINT)
    return name


def parse_trusted(text: str) -> IPNetwork | str:
    """One always_allow entry: a network (an address is a /32 or /128), else a host name."""
    try:
        return parse_network(text)
    except Invalid:
        if "%" in text:
            raise  # an address with a scope id: that is what is wrong, not the name
        return parse_host_name(text)


def trusted_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, entry) of each line of a trusted-list file that holds one: what follows a
    `#` is a comment, blank lines are skipped."""
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if entry:
            yield number, entry


def parse_trusted_file(
    text: str, path: Path, key: str
) -> tuple[list[IPNetwork | str], list[Problem]]:
    """The entries of an always_allow_file, and a Problem at the file's own line for each one
    that is not an address, network or host name (or that is more than one)."""
    entries: list[IPNetwork | str] = []
    problems: list[Problem] = []
    for number, entry in trusted_lines(text):
        words = entry.split()
        try:
            if len(words) > 1:
                raise Invalid(
                    f"{entry[:80]!r} is more than one entry", "one entry per line; " + HINT
                )
            entries.append(parse_trusted(entry))
        except Invalid as exc:
            problems.append(Problem(str(path), number, key, exc.message, exc.hint))
    return entries, problems


def split_trusted(
    entries: Iterable[IPNetwork | str],
) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    """(networks, host names), each in order and once."""
    networks: dict[IPNetwork, None] = {}
    names: dict[str, None] = {}
    for entry in entries:
        if isinstance(entry, str):
            names[entry] = None
        else:
            networks[entry] = None
    return tuple(networks), tuple(names)
