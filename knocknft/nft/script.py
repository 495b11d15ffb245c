"""nft text back into transactions: how the boot guard proves last-good.nft is ours (every line
reads back into typed, checked objects of our table), and what `FakeNft` needs to load a saved
script or listing.

The inverse of `Transaction.render` for the commands knocknft writes, and a reader of the
listing `nft list table` prints (terse: without elements), for the declarations knocknft's
tables hold. Anything else is a ValueError: this is not a general nft parser.
"""

from __future__ import annotations

import ipaddress
import re
from typing import cast

from knocknft.config import PortSpec, Protocol
from knocknft.core.transaction import (
    Chain,
    Element,
    Family,
    Object,
    Rule,
    SavedTable,
    Set,
    Table,
    Transaction,
    Verb,
)

_COMMAND = re.compile(
    r"^(add|create|delete|flush) (table|chain|set|rule|element) (inet|ip|ip6) (\S+)(?: (.*))?$"
)
_BASE = re.compile(r"^type (\S+) hook (\S+) priority (.+?); policy (\S+);$")
_ELEMENT = re.compile(
    # (address . protocol . port) in an allowlist, or the address alone (always_allow's names).
    r'^(\S+) \{ (\S+)(?: \. (tcp|udp) \. (\d+))?(?: timeout (\d+)s)?(?: comment "([^"]*)")? \}$'
)
_DURATION = re.compile(r"(\d+)(ms|d|h|m|s)")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0}


def parse_script(script: str) -> Transaction:
    tx = Transaction()
    for line in script.splitlines():
        if line.startswith("# "):
            tx.note(line[2:])
        elif line.strip():
            match = _COMMAND.match(line)
            if match is None:
                raise ValueError(f"not a command knocknft writes: {line!r}")
            verb, kind, family, table, rest = match.groups()
            obj = _object(kind, Table(table, cast(Family, family)), rest or "")
            getattr(tx, cast(Verb, verb))(obj)
    return tx


def _object(kind: str, table: Table, rest: str) -> Object:
    if kind == "table":
        return table
    name, _, spec = rest.partition(" ")
    if kind == "chain":
        return _chain(table, name, spec.strip("{} "))
    if kind == "set":
        return _set(table, name, [p.strip() for p in spec.strip("{} ").split(";") if p.strip()])
    if kind == "rule":
        return Rule(Chain(table, name), spec)
    match = _ELEMENT.match(rest)
    if match is None:
        raise ValueError(f"not an element knocknft writes: {rest!r}")
    set_name, addr, proto, port, timeout, comment = match.groups()
    service = PortSpec(int(port), cast(Protocol, proto)) if proto is not None else None
    seconds = int(timeout) if timeout is not None else None
    return Element(table, set_name, ipaddress.ip_address(addr), service, seconds, comment)


def _chain(table: Table, name: str, spec: str) -> Chain:
    if not spec:
        return Chain(table, name)
    match = _BASE.match(spec.strip())
    if match is None:
        raise ValueError(f"not a chain knocknft writes: {spec!r}")
    kind, hook, priority, policy = match.groups()
    return Chain(table, name, kind, hook, priority, policy)


def _set(table: Table, name: str, attributes: list[str]) -> Set:
    key: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    timeout = size = None
    for attribute in attributes:
        word, _, value = attribute.partition(" ")
        if word == "type":
            key = tuple(value.split(" . "))
        elif word == "flags":
            flags = tuple(value.split(","))
        elif word == "timeout":
            timeout = sum(int(n) * _SECONDS[unit] for n, unit in _DURATION.findall(value))
        elif word == "size":
            size = int(value)
        elif word != "elements":
            raise ValueError(f"not a set attribute knocknft writes: {attribute!r}")
    return Set(table, name, key, flags, timeout, size)


def parse_listing(saved: SavedTable) -> Transaction:
    """What loading `saved` adds: its sets (elements left out), chains and their rules."""
    tx = Transaction()
    table = saved.table
    block: list[str] = []
    opened = ""
    for line in saved.text.splitlines():
        text = line.strip()
        if not opened and (text.startswith(("set ", "chain ")) and text.endswith("{")):
            opened, block = text[:-1].strip(), []
        elif opened and text == "}":
            kind, name = opened.split(" ", 1)
            if kind == "set":
                tx.add(_set(table, name, block))
            else:
                base = block[:1] if block[:1] and _BASE.match(block[0]) else []
                chain = _chain(table, name, base[0] if base else "")
                tx.add(chain)
                for body in block[len(base) :]:
                    tx.add(Rule(chain, body))
            opened = ""
        elif opened:
            block.append(text)
    return tx
