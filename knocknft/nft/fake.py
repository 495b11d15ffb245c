"""`FakeNft`: an `Nft` (and `NftSnapshots`) over an in-memory model of the kernel's tables.

For tests of what knocknft does to the ruleset, without a kernel. It applies transactions the
way nf_tables does for the operations knocknft uses (all or nothing; `add` of an existing object
keeps it, and a set its elements; `create` of one, or `delete`/`flush` of a missing one, fails;
a chain is deleted with its rules, a set only when no rule names it; a set holds at most its
`size` elements, and an element beyond it is refused with the kernel's ENFILE), answers the listings
knocknft reads in libnftables' JSON shape and the text listing confirm's snapshot takes, can be
told to refuse an operation, and records what it was given. tests/integration/test_fake.py
holds its answers equal to the kernel's for the same transactions.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from knocknft.config import IPAddress, PortSpec
from knocknft.core.grants import Grant, Refusal, grant_transaction, revoke_transaction
from knocknft.core.transaction import (
    Chain,
    Element,
    Op,
    Rule,
    SavedTable,
    Set,
    Table,
    Transaction,
)
from knocknft.errors import NftError, SetFull, TableMissing
from knocknft.nft.libnft import classify
from knocknft.nft.script import parse_listing, parse_script

Operation = Literal["apply", "check", "grant", "load", "list"]
ENOENT = "Error: Could not process rule: No such file or directory"
EEXIST = "Error: Could not process rule: File exists"
EBUSY = "Error: Could not process rule: Device or resource busy"
ENFILE = "Error: Could not process rule: Too many open files in system"


@dataclass
class FakeElement:
    timeout: int | None
    comment: str | None
    ends: float | None  # on the fake's clock


@dataclass
class FakeSet:
    spec: Set
    # Keyed (address, service), or (address, None) in a set keyed by address alone.
    elements: dict[tuple[IPAddress, PortSpec | None], FakeElement] = field(default_factory=dict)


@dataclass
class FakeChain:
    spec: Chain
    rules: list[str] = field(default_factory=list)


@dataclass
class FakeTable:
    spec: Table
    sets: dict[str, FakeSet] = field(default_factory=dict)
    chains: dict[str, FakeChain] = field(default_factory=dict)


class FakeNft:
    """The kernel's tables in memory. `clock` times element timeouts (seconds)."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.clock = clock
        self.tables: dict[tuple[str, str], FakeTable] = {}
        self.transactions: list[Transaction] = []  # applied, grants included
        self.checked: list[Transaction] = []
        self.scripts: list[str] = []  # what changed the tables, as nft text, in order
        self.reads: list[str] = []  # every listing command
        self.on_read: Callable[[str], None] | None = None
        self._refusals: dict[Operation, NftError] = {}

    def refuse(self, operation: Operation, error: NftError | None) -> None:
        """From now on `operation` raises `error` (None: works again)."""
        if error is None:
            self._refusals.pop(operation, None)
        else:
            self._refusals[operation] = error

    def flush_ruleset(self) -> None:
        """What another tool's `nft flush ruleset` does: every table gone."""
        self.tables.clear()

    # -- Nft ------------------------------------------------------------------------------

    def apply(self, tx: Transaction) -> None:
        self._refused("apply")
        self._commit(tx)
        self.transactions.append(tx)
        self.scripts.append(tx.render())

    def grant(
        self,
        table: str,
        grants: list[Grant] | Any,
        evictions: list[tuple[IPAddress, PortSpec]] | Any = (),
    ) -> list[Refusal]:
        """As LibNft: the evictions, then each grant; a refused grant leaves the others in."""
        self._refused("grant")
        refused = []
        for tx, grant in [(revoke_transaction(table, evictions), None)] + [
            (grant_transaction(table, [g]), g) for g in grants
        ]:
            if not tx.ops:
                continue
            try:
                self._commit(tx)
            except (SetFull, NftError) as exc:
                if grant is None or isinstance(exc, TableMissing):
                    raise
                refused.append(Refusal(grant, exc))
                continue
            self.transactions.append(tx)
            self.scripts.append(tx.render())
        return refused

    def load_script(self, script: str) -> None:
        self._refused("load")
        try:
            tx = parse_script(script)
        except ValueError as exc:
            raise NftError(f"Error: syntax error ({exc})") from exc
        self._commit(tx)
        self.scripts.append(script)

    def check(self, tx: Transaction) -> None:
        self._refused("check")
        self.checked.append(tx)
        self._run(copy.deepcopy(self.tables), tx)

    def list_json(self, command: str) -> dict[str, Any]:
        self._read(command)
        words = command.split()
        items: list[dict[str, Any]]
        if words == ["list", "ruleset"]:
            # Tables and chains: what doctor reads; the fake keeps rules as text only.
            items = [{"table": _table_json(t)} for t in self.tables.values()]
            items += [
                {"chain": _chain_json(t, c)}
                for t in self.tables.values()
                for c in t.chains.values()
            ]
        elif words[:2] == ["list", "tables"]:
            items = [{"table": _table_json(t)} for t in self._family(words[2:])]
        elif words[:2] == ["list", "chains"]:
            items = [
                {"chain": _chain_json(t, c)}
                for t in self._family(words[2:])
                for c in t.chains.values()
            ]
        elif words[:2] == ["list", "table"] and len(words) == 4:
            table = self._table(self.tables, words[2], words[3])
            items = [{"table": _table_json(table)}]
            items += [{"set": self._set_json(table, s)} for s in table.sets.values()]
            items += [{"chain": _chain_json(table, c)} for c in table.chains.values()]
        elif words[:2] == ["list", "chain"] and len(words) == 5:
            table = self._table(self.tables, words[2], words[3])
            if words[4] not in table.chains:
                raise TableMissing(ENOENT)
            chain = table.chains[words[4]]
            items = [{"chain": _chain_json(table, chain)}]
            # The rule as text: the fake keeps no expressions.
            items += [
                {"rule": {"table": words[3], "chain": words[4], "expr": rule}}
                for rule in chain.rules
            ]
        elif words[:2] == ["list", "set"] and len(words) == 5:
            table = self._table(self.tables, words[2], words[3])
            if words[4] not in table.sets:
                raise TableMissing(ENOENT)
            items = [{"set": self._set_json(table, table.sets[words[4]])}]
        else:
            raise NftError(f"the fake does not list {command!r}")
        return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]}

    def list_text(self, command: str) -> str:
        """`list table FAMILY NAME`, terse and stateless: declarations without elements."""
        self._read(command)
        words = command.split()
        if words[:2] != ["list", "table"] or len(words) != 4:
            raise NftError(f"the fake does not list {command!r} as text")
        table = self._table(self.tables, words[2], words[3])
        lines = [f"{table.spec.reference()} {{"]
        for s in table.sets.values():
            lines += [f"\tset {s.spec.name} {{", f"\t\ttype {' . '.join(s.spec.key)}"]
            if s.spec.size is not None:
                lines.append(f"\t\tsize {s.spec.size}")
            if s.spec.flags:
                lines.append(f"\t\tflags {','.join(s.spec.flags)}")
            if s.spec.timeout is not None:
                lines.append(f"\t\ttimeout {s.spec.timeout}s")
            lines.append("\t}")
        for c in table.chains.values():
            lines.append(f"\tchain {c.spec.name} {{")
            if c.spec.hook is not None:
                lines.append(
                    f"\t\ttype {c.spec.type} hook {c.spec.hook} priority {c.spec.priority}; "
                    f"policy {c.spec.policy};"
                )
            lines += [f"\t\t{rule}" for rule in c.rules]
            lines.append("\t}")
        return "\n".join([*lines, "}"]) + "\n"

    # -- the model ------------------------------------------------------------------------

    def _refused(self, operation: Operation) -> None:
        error = self._refusals.get(operation)
        if error is not None:
            raise error

    def _read(self, command: str) -> None:
        self.reads.append(command)
        if self.on_read is not None:
            self.on_read(command)
        self._refused("list")

    def _commit(self, tx: Transaction) -> None:
        """All or nothing, as the kernel's transaction: work on a copy, keep it if it all went."""
        tables = copy.deepcopy(self.tables)
        self._run(tables, tx)
        self.tables = tables

    def _run(self, tables: dict[tuple[str, str], FakeTable], tx: Transaction) -> None:
        try:
            for op in tx.ops:
                self._op(tables, op)
        except NftError as exc:  # in the words LibNft would find for the same script
            raise classify(str(exc), tx.render()) from None

    def _op(self, tables: dict[tuple[str, str], FakeTable], op: Op) -> None:  # noqa: C901 - one branch per verb and object kind, as the kernel dispatches them
        verb, obj = op
        if isinstance(obj, Table):
            key = (obj.family, obj.name)
            if verb == "delete":
                self._table(tables, obj.family, obj.name)
                del tables[key]
            elif verb == "create" and key in tables:
                raise NftError(EEXIST)
            elif verb == "flush":
                for chain in self._table(tables, obj.family, obj.name).chains.values():
                    chain.rules.clear()
            else:
                tables.setdefault(key, FakeTable(obj))
        elif isinstance(obj, SavedTable):
            tables.setdefault((obj.table.family, obj.table.name), FakeTable(obj.table))
            self._run(tables, parse_listing(obj))
        elif isinstance(obj, Chain):
            self._chain_op(self._table(tables, obj.table.family, obj.table.name), verb, obj)
        elif isinstance(obj, Set):
            self._set_op(self._table(tables, obj.table.family, obj.table.name), verb, obj)
        elif isinstance(obj, Element):
            self._element_op(self._table(tables, obj.table.family, obj.table.name), verb, obj)
        elif isinstance(obj, Rule):
            table = self._table(tables, obj.chain.table.family, obj.chain.table.name)
            if obj.chain.name not in table.chains:
                raise TableMissing(ENOENT)
            table.chains[obj.chain.name].rules.append(obj.body)

    @staticmethod
    def _chain_op(table: FakeTable, verb: str, chain: Chain) -> None:
        there = table.chains.get(chain.name)
        if verb in ("add", "create"):
            if there is not None and verb == "create":
                raise NftError(EEXIST)
            table.chains.setdefault(chain.name, FakeChain(chain))
        elif there is None:
            raise TableMissing(ENOENT)
        elif verb == "flush":
            there.rules.clear()
        else:  # rules and all, as the kernel does (tests/integration/test_fake.py)
            del table.chains[chain.name]

    @staticmethod
    def _set_op(table: FakeTable, verb: str, spec: Set) -> None:
        there = table.sets.get(spec.name)
        if verb in ("add", "create"):
            if there is not None and verb == "create":
                raise NftError(EEXIST)
            if there is None:
                table.sets[spec.name] = FakeSet(spec)
            else:
                there.spec = spec  # an existing set keeps its elements; its defaults follow
        elif there is None:
            raise TableMissing(ENOENT)
        elif verb == "flush":
            there.elements.clear()
        elif any(f"@{spec.name} " in r for c in table.chains.values() for r in c.rules):
            raise NftError(EBUSY)  # a rule still names it
        else:
            del table.sets[spec.name]

    def _element_op(self, table: FakeTable, verb: str, element: Element) -> None:
        fake_set = table.sets.get(element.set_name)
        if fake_set is None:
            raise TableMissing(ENOENT)
        key = (element.address, element.service)
        self._expire(fake_set)
        there = key in fake_set.elements
        if verb == "delete":
            if not there:
                raise TableMissing(ENOENT)
            del fake_set.elements[key]
        elif there and verb == "create":
            raise NftError(EEXIST)
        elif not there:  # `add` of an element that is there keeps it, and its timer
            size = fake_set.spec.size
            if size is not None and len(fake_set.elements) >= size:
                raise NftError(ENFILE)
            timeout = element.timeout if element.timeout is not None else fake_set.spec.timeout
            ends = None if timeout is None else self.clock() + timeout
            fake_set.elements[key] = FakeElement(element.timeout, element.comment, ends)

    def _expire(self, fake_set: FakeSet) -> None:
        now = self.clock()
        fake_set.elements = {
            k: e for k, e in fake_set.elements.items() if e.ends is None or e.ends > now
        }

    @staticmethod
    def _table(tables: dict[tuple[str, str], FakeTable], family: str, name: str) -> FakeTable:
        table = tables.get((family, name))
        if table is None:
            raise TableMissing(ENOENT)
        return table

    def _family(self, words: list[str]) -> list[FakeTable]:
        return [t for t in self.tables.values() if not words or t.spec.family == words[0]]

    def _set_json(self, table: FakeTable, fake_set: FakeSet) -> dict[str, Any]:
        self._expire(fake_set)
        spec = fake_set.spec
        data: dict[str, Any] = {
            "family": table.spec.family,
            "name": spec.name,
            "table": table.spec.name,
            "type": list(spec.key) if len(spec.key) > 1 else spec.key[0],
        }
        if spec.flags:
            data["flags"] = list(spec.flags)
        if spec.timeout is not None:
            data["timeout"] = spec.timeout
        if spec.size is not None:
            data["size"] = spec.size
        elements = [self._elem_json(k, e, spec) for k, e in fake_set.elements.items()]
        if elements:
            data["elem"] = elements
        return data

    def _elem_json(
        self, key: tuple[IPAddress, PortSpec | None], element: FakeElement, spec: Set
    ) -> dict[str, Any]:
        address, service = key
        val: object = (
            str(address)
            if service is None
            else {"concat": [str(address), service.protocol, service.port]}
        )
        elem: dict[str, Any] = {"val": val}
        # As nft: an element's own timeout is left out when it is the set's default.
        if element.timeout is not None and element.timeout != spec.timeout:
            elem["timeout"] = element.timeout
        if element.ends is not None:
            elem["expires"] = max(0, math.ceil(element.ends - self.clock()))
        if element.comment is not None:
            elem["comment"] = element.comment
        return {"elem": elem}


def _table_json(table: FakeTable) -> dict[str, Any]:
    return {"family": table.spec.family, "name": table.spec.name}


def _chain_json(table: FakeTable, chain: FakeChain) -> dict[str, Any]:
    data: dict[str, Any] = {
        "family": table.spec.family,
        "table": table.spec.name,
        "name": chain.spec.name,
    }
    if chain.spec.hook is not None:
        data.update(type=chain.spec.type, hook=chain.spec.hook, policy=chain.spec.policy)
    return data
