"""The SPA doors' keys (`fwknop:` an fwknop access.conf stanza, `clients:` public keys), and the
checks of the SPA options against the doors. Pure: walks YAML nodes, returns model values.

Keys are secrets: no message here quotes a key's text, only what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import date

import yaml

from knocknft.config.model import (
    DOOR_NAME_RE,
    ED25519_PUBLIC_KEY_BYTES,
    HMAC_DIGESTS,
    MAX_FWKNOP_HMAC_KEY_BYTES,
    MAX_FWKNOP_KEY_BYTES,
    MAX_GRANT_SECONDS,
    ClientKey,
    Door,
    FwknopKey,
    IPNetwork,
    Options,
)
from knocknft.config.scalars import Invalid, parse_bool, parse_duration, parse_network
from knocknft.config.walker import Walker

Entries = dict[str, tuple[yaml.Node, yaml.Node]]

SPA_KEYS = ("fwknop", "clients")
# What only a knock door has: an SPA door is opened by one packet, with no sequence to time,
# no flags to match, nothing to close or ban.
KNOCK_ONLY_KEYS = (
    "sequence",
    "one_time_sequences",
    "seq_timeout",
    "tcpflags",
    "close",
    "deny_for",
    "deny",
)
SPA_ONLY_KEYS = ("max_open_for",)
FWKNOP_KEYS = (
    "source",
    "key",
    "key_base64",
    "hmac_key",
    "hmac_key_base64",
    "hmac_digest",
    "require_source_address",
    "expires",
)
CLIENT_KEYS = ("public_key", "expires", "revoked")

# The tags a plain scalar gets: a key's text is taken as written, whatever YAML thinks it is.
_SECRET_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "timestamp")
)
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_DATE_RE = re.compile(r"^\s*([0-9]{4})-([0-9]{2})-([0-9]{2})\s*$")


def is_spa_door(entries: Entries) -> bool:
    return any(key in entries for key in SPA_KEYS)


def parse_spa_door(
    w: Walker, base: str, name_node: yaml.Node, entries: Entries
) -> dict[str, object]:
    """An SPA door's own fields (fwknop or clients, max_open_for); errors for the knock door's
    keys it may not have and for what it lacks."""
    fields: dict[str, object] = {}
    if "fwknop" in entries and "clients" in entries:
        w.error(
            entries["clients"][0],
            f"{base}.clients",
            "a door takes either fwknop or clients, not both",
            "make the public-key clients a door of their own",
        )
    _refuse(
        w,
        base,
        [k for k in KNOCK_ONLY_KEYS if k in entries],
        entries,
        message="an SPA door (fwknop or clients) has no {key}: it is opened by one packet",
        hint="remove {key}, or make the knock sequence a door of its own",
    )
    if "open" not in entries:
        w.error(
            name_node,
            base,
            "an SPA door needs open: the services its requests may name",
            "add open: [22/tcp] and open_for: 30s",
        )
    if "fwknop" in entries:
        fwknop = _fwknop(w, f"{base}.fwknop", *entries["fwknop"])
        if fwknop is not None:
            fields["fwknop"] = fwknop
    elif "clients" in entries:
        fields["clients"] = _clients(w, f"{base}.clients", entries["clients"][1])
    if "max_open_for" in entries:
        value = w.scalar(
            entries["max_open_for"][1],
            f"{base}.max_open_for",
            lambda t: parse_duration(t, MAX_GRANT_SECONDS),
        )
        if value is not None:
            fields["max_open_for"] = value
    return fields


def refuse_spa_only_keys(w: Walker, base: str, entries: Entries) -> None:
    """A knock door with a key that only an SPA door has."""
    _refuse(
        w,
        base,
        [k for k in SPA_ONLY_KEYS if k in entries],
        entries,
        message="{key} is for SPA doors (fwknop or clients): a knock grants open_for",
        hint="remove {key}",
    )


def _refuse(
    w: Walker, base: str, keys: list[str], entries: Entries, *, message: str, hint: str
) -> None:
    """An error at each of `keys`, a key this kind of door does not take."""
    for key in keys:
        w.error(entries[key][0], f"{base}.{key}", message.format(key=key), hint.format(key=key))


def check_open_for(w: Walker, base: str, entries: Entries, fields: dict[str, object]) -> None:
    """max_open_for caps what a client asks for; below the door's own open_for it means nothing."""
    longest, default = fields.get("max_open_for"), fields.get("open_for")
    if isinstance(longest, int) and isinstance(default, int) and longest < default:
        w.error(
            entries["max_open_for"][1],
            f"{base}.max_open_for",
            f"max_open_for ({longest}s) is shorter than open_for ({default}s)",
            "max_open_for caps the time a client asks for (fwknop -f); make it open_for or more",
        )


def _fwknop(w: Walker, base: str, key_node: yaml.Node, node: yaml.Node) -> FwknopKey | None:
    """The stanza; a key it lacks is an error at `key_node`, the line saying `fwknop:`."""
    entries = w.mapping(node, base, FWKNOP_KEYS)
    if not isinstance(node, yaml.MappingNode):
        return None
    errors_before = len(w.errors)
    key = _one_key(w, base, key_node, entries, name="key", longest=MAX_FWKNOP_KEY_BYTES)
    hmac_key = _one_key(
        w, base, key_node, entries, name="hmac_key", longest=MAX_FWKNOP_HMAC_KEY_BYTES
    )
    fields: dict[str, object] = {"source": _source(w, base, entries)}
    if "hmac_digest" in entries:
        fields["hmac_digest"] = w.scalar(
            entries["hmac_digest"][1], f"{base}.hmac_digest", _parse_digest
        )
    if "require_source_address" in entries:
        fields["require_source_address"] = w.scalar(
            entries["require_source_address"][1], f"{base}.require_source_address", parse_bool
        )
    if "expires" in entries:
        fields["expires"] = w.scalar(entries["expires"][1], f"{base}.expires", parse_date)
    if key is not None and key == hmac_key:
        # fwknopd refuses the stanza too: one secret for both jobs.
        name = "hmac_key_base64" if "hmac_key_base64" in entries else "hmac_key"
        w.error(
            entries[name][1],
            f"{base}.{name}",
            "the HMAC key is the same as the encryption key",
            "give each its own: fwknop --key-gen makes a pair",
        )
    if len(w.errors) != errors_before or key is None or hmac_key is None:
        return None
    return FwknopKey(key=key, hmac_key=hmac_key, **fields)  # type: ignore[arg-type]  # checked above


def _one_key(
    w: Walker, base: str, node: yaml.Node, entries: Entries, *, name: str, longest: int
) -> bytes | None:
    """`name` (its text's UTF-8 bytes) or `name`_base64 (the bytes it decodes to): exactly one,
    1 to `longest` bytes, the lengths fwknop's clients accept."""
    encoded = f"{name}_base64"
    if name in entries and encoded in entries:
        w.error(
            entries[encoded][0],
            f"{base}.{encoded}",
            f"give {name} or {encoded}, not both",
            f"remove one of them ({encoded} is what fwknop --key-gen prints)",
        )
        return None
    if name not in entries and encoded not in entries:
        w.error(
            node,
            f"{base}.{encoded}",
            f"the stanza has no {encoded} (or {name})",
            f"add {encoded}: the {name.upper()}_BASE64 of access.conf, or fwknop --key-gen's",
        )
        return None
    if encoded in entries:
        path, value = f"{base}.{encoded}", _secret(w, entries[encoded][1], f"{base}.{encoded}")
        raw = None if value is None else _decode_base64(w, entries[encoded][1], path, value)
    else:
        path, value = f"{base}.{name}", _secret(w, entries[name][1], f"{base}.{name}")
        raw = None if value is None else value.encode("utf-8")
    if raw is None:
        return None
    if not 1 <= len(raw) <= longest:
        w.error(
            entries[encoded if encoded in entries else name][1],
            path,
            f"the key is {len(raw)} bytes long; fwknop's keys are 1 to {longest} bytes",
            "fwknop --key-gen makes a key of the right length",
        )
        return None
    return raw


def _secret(w: Walker, node: yaml.Node, key: str) -> str | None:
    """A key's text. Unlike Walker.scalar, no message quotes the value: keys reach no log."""
    w.visit(node)
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _SECRET_TAGS:
        w.error(node, key, "a key is one quoted value", f'write {key.rsplit(".", 1)[-1]}: "..."')
        return None
    return str(node.value)


def _decode_base64(w: Walker, node: yaml.Node, key: str, text: str) -> bytes | None:
    stripped = text.strip()
    try:
        if not _BASE64_RE.match(stripped):
            raise binascii.Error
        # fwknop writes its keys padded; a key copied without its = signs is the same key.
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except binascii.Error:
        w.error(
            node,
            key,
            "the key is not base64",
            "copy it as fwknop --key-gen or access.conf gives it: A-Z a-z 0-9 + / and = at the end",
        )
        return None


def _source(w: Walker, base: str, entries: Entries) -> tuple[IPNetwork, ...]:
    """SOURCE: networks, or `any` (the default): the empty tuple."""
    if "source" not in entries:
        return ()
    node = entries["source"][1]
    listed = w.scalar_list(node, f"{base}.source", _parse_source)
    if isinstance(node, yaml.SequenceNode) and not node.value:
        # The model's "any" is the empty tuple: an empty list must not silently become it.
        w.error(
            node,
            f"{base}.source",
            "source lists no network",
            "list the networks that may send, or write any for every source",
        )
    if "any" in listed and len(listed) > 1:
        w.error(
            entries["source"][1],
            f"{base}.source",
            "any is listed with networks: any already takes every source",
            "list networks, or any alone",
        )
    return tuple(dict.fromkeys(n for n in listed if not isinstance(n, str)))


def _parse_source(text: str) -> IPNetwork | str:
    return "any" if text.strip().lower() == "any" else parse_network(text)


def _parse_digest(text: str) -> str:
    name = text.strip().lower().replace("-", "_")
    if name not in HMAC_DIGESTS:
        raise Invalid(
            f"{text.strip()[:40]!r} is not an HMAC digest fwknop speaks",
            f"one of {', '.join(HMAC_DIGESTS)} (fwknop --hmac-digest-type; sha256 by default)",
        )
    return name


def parse_date(text: str) -> date:
    """A day as YYYY-MM-DD: access.conf's ACCESS_EXPIRE (MM/DD/YYYY there, converted on import)."""
    match = _DATE_RE.match(text)
    try:
        if match is None:
            raise ValueError
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise Invalid(
            f"{text.strip()[:40]!r} is not a date", "write YYYY-MM-DD, e.g. 2027-06-30"
        ) from None


def _clients(w: Walker, base: str, node: yaml.Node) -> tuple[ClientKey, ...]:
    clients: list[ClientKey] = []
    entries = w.mapping(node, base, None)
    if isinstance(node, yaml.MappingNode) and not entries and not node.value:
        w.error(node, base, "no clients are listed", "add NAME: {public_key: ...} for each client")
    for name, (name_node, client_node) in entries.items():
        client = _client(w, f"{base}.{name}", name, name_node, client_node)
        if client is not None:
            clients.append(client)
    return tuple(clients)


def _client(
    w: Walker, base: str, name: str, name_node: yaml.Node, node: yaml.Node
) -> ClientKey | None:
    errors_before = len(w.errors)
    if not DOOR_NAME_RE.match(name):
        w.error(
            name_node,
            base,
            f"client name {name!r} is not usable",
            "start with a letter or digit; use letters, digits, _ . - (at most 32)",
        )
    entries = w.mapping(node, base, CLIENT_KEYS)
    fields: dict[str, object] = {"name": name}
    if "public_key" not in entries:
        if isinstance(node, yaml.MappingNode):
            w.error(
                name_node,
                f"{base}.public_key",
                "the client has no public_key",
                "add public_key: the line of the .pub file knocknft keygen wrote",
            )
    else:
        fields["public_key"] = w.scalar(
            entries["public_key"][1], f"{base}.public_key", _parse_public_key
        )
    optional: tuple[tuple[str, Callable[[str], object]], ...] = (
        ("expires", parse_date),
        ("revoked", parse_bool),
    )
    for key, parse in optional:
        if key in entries:
            fields[key] = w.scalar(entries[key][1], f"{base}.{key}", parse)
    if len(w.errors) != errors_before:
        return None
    return ClientKey(**fields)  # type: ignore[arg-type]  # keys and types checked above


def _parse_public_key(text: str) -> bytes:
    hint = "the line of the .pub file knocknft keygen wrote: base64 of the 32-byte Ed25519 key"
    stripped = text.strip()
    try:
        if not _BASE64_RE.match(stripped):
            raise binascii.Error
        raw = base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except binascii.Error:
        raise Invalid("the public key is not base64", hint) from None
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise Invalid(f"the public key is {len(raw)} bytes, not {ED25519_PUBLIC_KEY_BYTES}", hint)
    return raw


def check_spa(
    w: Walker, options: Options, doors: list[tuple[Door, yaml.Node]], options_node: yaml.Node | None
) -> None:
    """With SPA doors: their NFLOG group is not the knocks', and the SPA port is no knock port or
    service (its packets are logged and dropped for everyone)."""
    if not any(d.is_spa for d, _ in doors):
        return
    keys: dict[str, yaml.Node] = {}
    if isinstance(options_node, yaml.MappingNode):
        keys = {str(k.value): k for k, _ in options_node.value if isinstance(k, yaml.ScalarNode)}
    if options.spa_nflog_group == options.nflog_group:
        name = "spa_nflog_group" if "spa_nflog_group" in keys else "nflog_group"
        w.error(
            keys.get(name),
            f"options.{name}",
            f"SPA packets and knocks would share NFLOG group {options.nflog_group}",
            "give spa_nflog_group a group of its own (8 by default, nflog_group 7)",
        )
    for door, node in doors:
        for port in (*door.knock_ports, *door.open):
            if port.protocol == "udp" and port.port == options.spa_port:
                w.error(
                    keys.get("spa_port", node),
                    "options.spa_port" if "spa_port" in keys else f"doors.{door.name}",
                    f"{port} is the SPA port and door {door.name!r}'s "
                    + ("service" if port in door.open else "knock port"),
                    "SPA packets are dropped for everyone: pick another spa_port or port",
                )
