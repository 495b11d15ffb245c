"""nft transactions as data: every change knocknft makes to the kernel is a list of (verb, object).

Pure. Apply, grant, revoke, rollback, the restore after a flush: each builds a `Transaction` of
typed objects (`Table`, `Chain`, `Set`, `Rule`, `Element`, `SavedTable`), and `Transaction.render`
is the one place that turns them into nft script text. The adapter (knocknft.nft) only ever runs
what was rendered here; the stateful fake (knocknft.nft.fake) applies the objects themselves.

Every value is checked when its object is built (by knocknft.core.nftvalues), so no config value,
knockd.conf line or file can put foreign text into a script. A bad value raises InvalidValue (a
ValueError, and a KnocknftError, so the CLI and the daemon report it as they report any refusal;
TypeError for a value of the wrong type) at construction, never at the kernel.

The invariant for rule bodies: a `Rule` holds its body as text, built by knocknft.core.ruleset
only from values that went through knocknft.core.nftvalues' checks (`quoted`, `address`,
`check_name`, `service`) or from its own constants. `Rule` itself refuses a body that could end
its command or start another (a newline or other control character, `;`, `#`, an unbalanced
quote), so a value that slipped past the renderer could still not add a command of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from knocknft.config import IPAddress, PortSpec
from knocknft.core.nftvalues import (
    CONTROL_RE,
    address,
    check_count,
    check_name,
    check_seconds,
    check_text,
    quoted,
    service,
)
from knocknft.errors import InvalidValue

Verb = Literal["add", "create", "delete", "flush"]
Family = Literal["inet", "ip", "ip6"]
FAMILIES = ("inet", "ip", "ip6")
MAX_SET_SIZE = 2**32 - 1
_PRIORITY_RE = re.compile(r"^(?:-?\d+|(?:raw|mangle|dstnat|filter|security|srcnat)(?: [+-] \d+)?)$")
_HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress")
_CHAIN_TYPES = ("filter", "nat", "route")
_POLICIES = ("accept", "drop")
_KEY_TYPES = ("ipv4_addr", "ipv6_addr", "inet_proto", "inet_service", "ifname")
_SET_FLAGS = ("constant", "dynamic", "interval", "timeout")


def _one_of(value: object, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InvalidValue(f"{value!r} is not a {what} ({', '.join(allowed)})")
    return str(value)


@dataclass(frozen=True)
class Table:
    name: str
    family: Family = "inet"

    def __post_init__(self) -> None:
        check_name(self.name, "table name")
        _one_of(self.family, FAMILIES, "table family")

    def reference(self) -> str:
        return f"table {self.family} {self.name}"

    def declaration(self) -> str:
        return self.reference()


@dataclass(frozen=True)
class Chain:
    """A chain; with `hook`, a base chain the kernel calls on that hook at `priority`."""

    table: Table
    name: str
    type: str = "filter"
    hook: str | None = None
    priority: str = "filter"
    policy: str = "accept"

    def __post_init__(self) -> None:
        check_name(self.name, "chain name")
        _one_of(self.type, _CHAIN_TYPES, "chain type")
        if self.hook is not None:
            _one_of(self.hook, _HOOKS, "hook")
        if not _PRIORITY_RE.match(self.priority):
            raise InvalidValue(f"{self.priority!r} is not a chain priority")
        _one_of(self.policy, _POLICIES, "chain policy")

    def reference(self) -> str:
        return f"chain {self.table.family} {self.table.name} {self.name}"

    def declaration(self) -> str:
        if self.hook is None:
            return self.reference()
        return (
            f"{self.reference()} {{ type {self.type} hook {self.hook} priority {self.priority}; "
            f"policy {self.policy}; }}"
        )


@dataclass(frozen=True)
class Set:
    """A named set: its key (`ipv4_addr . inet_proto . inet_service`), flags and limits."""

    table: Table
    name: str
    key: tuple[str, ...] = ()  # empty: a set only named (flushed or deleted)
    flags: tuple[str, ...] = ()
    timeout: int | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "set name")
        for part in self.key:
            _one_of(part, _KEY_TYPES, "set key type")
        for flag in self.flags:
            _one_of(flag, _SET_FLAGS, "set flag")
        if self.timeout is not None:
            check_seconds(self.timeout)
        if self.size is not None:
            check_count(self.size, "a set size", MAX_SET_SIZE)

    def reference(self) -> str:
        return f"set {self.table.family} {self.table.name} {self.name}"

    def declaration(self) -> str:
        if not self.key:
            raise InvalidValue(f"set {self.name} has no key type: it can only be named")
        spec = [f"type {' . '.join(self.key)}"]
        if self.flags:
            spec.append(f"flags {','.join(self.flags)}")
        if self.timeout is not None:
            spec.append(f"timeout {self.timeout}s")
        if self.size is not None:
            spec.append(f"size {self.size}")
        return f"{self.reference()} {{ {'; '.join(spec)}; }}"


@dataclass(frozen=True)
class Element:
    """One set element: (address . protocol . port) in an allowlist, or the address alone
    (`service` None) in a deny set, in set `set_name` of `table`, with an optional timeout and
    comment (the door's name). Deleting names the key only."""

    table: Table
    set_name: str
    address: IPAddress
    service: PortSpec | None
    timeout: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        check_name(self.set_name, "set name")
        address(self.address)
        if self.service is not None:
            service(self.service)
        if self.timeout is not None:
            check_seconds(self.timeout)
        if self.comment is not None:
            check_text(self.comment)

    def _key(self) -> str:
        if self.service is None:
            return address(self.address)
        return f"{address(self.address)} . {service(self.service)}"

    def reference(self) -> str:
        return self._text("")

    def declaration(self) -> str:
        extra = f" timeout {self.timeout}s" if self.timeout is not None else ""
        extra += f" comment {quoted(self.comment)}" if self.comment is not None else ""
        return self._text(extra)

    def _text(self, extra: str) -> str:
        t = self.table
        return f"element {t.family} {t.name} {self.set_name} {{ {self._key()}{extra} }}"


@dataclass(frozen=True)
class Rule:
    """A rule appended to `chain`. See the module docstring for what may enter `body`."""

    chain: Chain
    body: str

    def __post_init__(self) -> None:
        body = self.body
        if not isinstance(body, str) or not body.strip():
            raise InvalidValue("a rule needs a body")
        if CONTROL_RE.search(body) or ";" in body or "#" in body or body.count('"') % 2:
            raise InvalidValue(f"rule body {body!r} could end its command or start another")

    def reference(self) -> str:
        raise InvalidValue("a rule can only be added: knocknft replaces whole chains")

    def declaration(self) -> str:
        return (
            f"rule {self.chain.table.family} {self.chain.table.name} {self.chain.name} {self.body}"
        )


@dataclass(frozen=True)
class SavedTable:
    """Our table as `nft list table` printed it (knocknft.admin.confirm's rollback point).

    The text is the kernel's, not ours to build, so it is checked for its shape instead: one
    `table FAMILY NAME { ... }` block naming this table, with braces balanced outside quoted
    text, and nothing else outside it but blank and `#` lines. Declaring it adds what it lists.
    """

    table: Table
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not _one_block(self.text, self.table):
            raise InvalidValue(f"not a listing of {self.table.reference()} alone")

    def reference(self) -> str:
        raise InvalidValue("a saved table can only be added")

    def declaration(self) -> str:
        return self.text.rstrip("\n")


def _one_block(text: str, table: Table) -> bool:
    """Whether `text` is one `table ... { }` block for `table`, as nft itself would read it."""
    depth = blocks = 0
    for line in text.splitlines():
        if CONTROL_RE.search(line.replace("\t", "")) or line.count('"') % 2:
            return False
        code = _code(line)
        if depth == 0:
            if not code.strip():
                continue
            if blocks or not code.startswith(f"{table.reference()} {{"):
                return False
            blocks += 1
            code = code[len(table.reference()) :]
        for i, char in enumerate(code):
            depth += {"{": 1, "}": -1}.get(char, 0)
            if char == "}" and depth == 0 and code[i + 1 :].strip():
                return False  # text after the block closes, on the same line
    return depth == 0 and blocks == 1


def _code(line: str) -> str:
    """The line as nft's parser sees its structure: quoted text blanked, a `#` comment cut."""
    parts = line.split('"')
    for i in range(0, len(parts), 2):
        if "#" in parts[i]:
            parts = [*parts[:i], parts[i].split("#", 1)[0]]
            break
    return "".join(p if i % 2 == 0 else " " * len(p) for i, p in enumerate(parts))


Object = Table | Chain | Set | Element | Rule | SavedTable


class Op(NamedTuple):
    verb: Verb
    obj: Object


@dataclass
class Transaction:
    """An ordered list of (verb, object), applied by the kernel all or nothing.

    `notes` are `#` lines that head the script (the ruleset's provenance); they change nothing.
    """

    ops: list[Op] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> Transaction:
        self.notes.append(check_text(text, "script note"))
        return self

    def add(self, obj: Object) -> Transaction:
        return self._op("add", obj)

    def create(self, obj: Object) -> Transaction:
        return self._op("create", obj)

    def flush(self, obj: Table | Chain | Set) -> Transaction:
        return self._op("flush", obj)

    def delete(self, obj: Object) -> Transaction:
        return self._op("delete", obj)

    def extend(self, other: Transaction) -> Transaction:
        self.notes += other.notes
        self.ops += other.ops
        return self

    def _op(self, verb: Verb, obj: Object) -> Transaction:
        # Rendered now, so that what cannot be said (a rule deleted, a set added without its
        # key) fails where it is built, not when the transaction is applied.
        render_op(Op(verb, obj))
        if verb == "flush" and isinstance(obj, Element):
            raise InvalidValue("an element cannot be flushed")
        self.ops.append(Op(verb, obj))
        return self

    def __bool__(self) -> bool:
        return bool(self.ops)

    def render(self) -> str:
        """The nft script: one command a line, after the notes; empty when there is nothing."""
        lines = [f"# {note}" for note in self.notes]
        lines += [render_op(op) for op in self.ops]
        return "\n".join(lines) + "\n" if lines else ""


def render_op(op: Op) -> str:
    verb, obj = op
    if isinstance(obj, SavedTable):
        return obj.declaration()  # a listing declares without a verb: nft reads it as `add`
    text = obj.reference() if verb in ("delete", "flush") else obj.declaration()
    return f"{verb} {text}"
