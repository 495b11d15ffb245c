"""Values as they may enter an nft script: each check returns the value (or its nft text) or
raises InvalidValue (TypeError for a value of the wrong type).

Pure. knocknft.core.transaction builds its objects only from values that went through these,
and knocknft.core.ruleset writes rule bodies with them: names are nft identifiers, interface
names are what the kernel allows, addresses carry no IPv6 scope id, quoted text holds no quote,
backslash or control character, timeouts are whole seconds within the kernel's range.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from knocknft.config import (
    IFNAME_RE,
    MAX_COMMENT_LENGTH,
    MAX_PORT,
    MAX_TIMEOUT_SECONDS,
    TABLE_NAME_RE,
    IPAddress,
    IPNetwork,
    PortSpec,
)
from knocknft.errors import InvalidValue

PROTOCOLS = ("tcp", "udp")
# Table, chain and set names: the same rule as options.table, so one check serves them all.
NAME_RE = TABLE_NAME_RE
# What would end a quoted string, a command or a script line.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_name(text: object, what: str = "name") -> str:
    """A table, chain or set name: a letter, then letters, digits or `_`, at most 32."""
    if not isinstance(text, str) or not NAME_RE.match(text):
        raise InvalidValue(f"{text!r} is not a usable nft {what}")
    return text


def check_text(text: object, what: str = "comment") -> str:
    """Text nft reads between double quotes, or a script's `#` line: nothing that ends it."""
    if not isinstance(text, str):
        raise TypeError(f"a {what} must be text, not {text!r}")
    if '"' in text or "\\" in text or CONTROL_RE.search(text):
        raise InvalidValue(f"{what} {text!r} holds a quote, backslash or control character")
    return text


def quoted(text: str, what: str = "comment") -> str:
    """Text between double quotes, as long as nft takes it (a comment, an interface name)."""
    if len(check_text(text, what).encode()) > MAX_COMMENT_LENGTH:
        raise InvalidValue(f"{what} {text[:40]!r}... is longer than nft's {MAX_COMMENT_LENGTH}")
    return f'"{text}"'


def check_interface(text: object) -> str:
    if not isinstance(text, str) or not IFNAME_RE.match(text):
        raise InvalidValue(f"{text!r} is not an interface name")
    return text


def address(value: object) -> str:
    """An address or network as nft reads it; IPv6 scope ids (fe80::1%eth0) mean nothing there."""
    if not isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network,
    ):
        raise TypeError(f"{value!r} is not an IP address or network")
    text = str(value)
    if "%" in text:
        raise InvalidValue(f"{text}: an address with a scope id cannot go into a ruleset")
    return text


def check_seconds(value: object, maximum: int = MAX_TIMEOUT_SECONDS) -> int:
    """A timeout: whole seconds (never a float or text, which libnftables may take as none)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a timeout must be whole seconds (int), not {value!r}")
    if not 1 <= value <= maximum:
        raise InvalidValue(f"a timeout must be 1..{maximum} s, not {value}")
    return value


def check_count(value: object, what: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidValue(f"{what} must be a whole number 0..{maximum}, not {value!r}")
    return value


def service(spec: object) -> str:
    """`proto . port`, the service half of an allowlist key."""
    if not isinstance(spec, PortSpec):
        raise TypeError(f"{spec!r} is not a PortSpec")
    if spec.protocol not in PROTOCOLS:
        raise InvalidValue(f"{spec.protocol!r} is not a protocol knocknft matches")
    check_count(spec.port, "a port", MAX_PORT)
    return f"{spec.protocol} . {spec.port}"


def networks(nets: Iterable[IPAddress | IPNetwork]) -> str:
    """An anonymous set of addresses or networks: `{ 198.18.0.0/15, 2001:db8::/32 }`."""
    return "{ " + ", ".join(address(n) for n in nets) + " }"
