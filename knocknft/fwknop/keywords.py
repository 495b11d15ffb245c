"""What each access.conf keyword does to the stanza being read, as fwknopd takes it
(server/access.c parse_access_file): a value set, the stanza refused, or the line listed as not
mapped. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from knocknft.config import HMAC_DIGESTS, Invalid
from knocknft.errors import Problem
from knocknft.fwknop.grammar import Directive, RawStanza
from knocknft.fwknop.values import (
    check_not_placeholder,
    decode_base64,
    last_day_before_date,
    last_day_before_epoch,
    parse_networks,
    parse_ports,
    parse_seconds,
    parse_yes,
)

ENCRYPTION_MODES = ("cbc", "ecb", "cfb", "ofb", "ctr", "asymmetric", "legacy")


@dataclass(frozen=True)
class Secret:
    """A key: its bytes, and its own text when access.conf gave it as text (KEY, HMAC_KEY), so
    the output keeps the form the admin knows. Never shown in a message."""

    raw: bytes = field(repr=False)
    text: str | None = field(repr=False)
    where: Directive = field(repr=False)


@dataclass
class StanzaBuilder:
    """A stanza being read: its values so far, and what was refused or not mapped."""

    raw: RawStanza
    errors: list[Problem]
    refused: list[Problem] = field(default_factory=list)
    not_mapped: list[Problem] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    # field -> (the line that set it, its value): a later line replaces an earlier one.
    values: dict[str, tuple[Directive, object]] = field(default_factory=dict)

    def where(self, directive: Directive) -> str:
        return f"stanza #{self.raw.number} {directive.keyword}"

    def refuse(self, directive: Directive, why: str, hint: str = "") -> None:
        self.refused.append(
            Problem(directive.file, directive.line, self.where(directive), why, hint)
        )

    def unmapped(self, directive: Directive, why: str) -> None:
        self.not_mapped.append(Problem(directive.file, directive.line, self.where(directive), why))

    def value(self, name: str) -> object:
        return self.values[name][1] if name in self.values else None


def _key(b: StanzaBuilder, d: Directive) -> None:
    name = "hmac_key" if d.keyword.startswith("HMAC") else "key"
    if d.keyword.endswith("_BASE64"):
        b.values[name] = (d, Secret(decode_base64(d.value), None, d))
    else:
        check_not_placeholder(d.value)
        if d.blanks_cut:
            raise Invalid(
                "the key ends in blanks: Debian's fwknopd 2.6.10 keeps them in the key, later "
                "versions drop them, so which key the clients use cannot be told",
                "remove the blanks, and check that the clients' key has none",
            )
        b.values[name] = (d, Secret(d.value.encode("utf-8"), d.value, d))


def _digest(b: StanzaBuilder, d: Directive) -> None:
    name = d.value.lower()
    if name not in HMAC_DIGESTS:
        raise Invalid(
            f"{d.value[:30]!r} is not an HMAC digest fwknopd knows: it refuses to start",
            f"one of {', '.join(HMAC_DIGESTS)}",
        )
    b.values["hmac_digest"] = (d, name)


def _encryption_mode(b: StanzaBuilder, d: Directive) -> None:
    mode = d.value.lower()
    if mode not in ENCRYPTION_MODES:
        raise Invalid(
            f"{d.value[:30]!r} is not an ENCRYPTION_MODE fwknopd knows: it refuses to start",
            "CBC (the default), CTR, OFB, CFB, ECB, Asymmetric or legacy",
        )
    if mode != "cbc":
        b.refuse(
            d,
            f"mode {d.value}: knocknft serves fwknop's default mode, AES in CBC, only",
            "have the clients use the default mode (no --encryption-mode) and drop this line",
        )


def _destination(b: StanzaBuilder, d: Directive) -> None:
    if parse_networks(d.value) is not None:
        b.refuse(
            d,
            "DESTINATION limits the addresses of this host an SPA packet may be sent to; "
            "knocknft has no such limit, so the door would let in more than fwknopd did",
            "use options.interfaces to limit where SPA packets are heard, and drop DESTINATION",
        )


def _refused(why: str, hint: str = "") -> Callable[[StanzaBuilder, Directive], None]:
    return lambda b, d: b.refuse(d, why, hint)


def _when_yes(why: str) -> Callable[[StanzaBuilder, Directive], None]:
    return lambda b, d: b.refuse(d, why) if parse_yes(d.value) else None


def _unmapped(why: str) -> Callable[[StanzaBuilder, Directive], None]:
    return lambda b, d: b.unmapped(d, why)


def _unmapped_when_yes(why: str) -> Callable[[StanzaBuilder, Directive], None]:
    return lambda b, d: b.unmapped(d, why) if parse_yes(d.value) else None


def _gpg(b: StanzaBuilder, d: Directive) -> None:
    if d.keyword == "GPG_DECRYPT_PW":
        check_not_placeholder(d.value)
        b.values["gpg"] = (d, True)
    elif d.keyword == "GPG_ALLOW_NO_PW" and parse_yes(d.value):
        b.values["gpg"] = (d, True)
    b.unmapped(d, "GPG is not served: only the Rijndael (KEY) + HMAC mode")


def _setter(
    name: str, parse: Callable[[Directive], object]
) -> Callable[[StanzaBuilder, Directive], None]:
    def set_value(b: StanzaBuilder, d: Directive) -> None:
        b.values[name] = (d, parse(d))

    return set_value


_NAT = "it forwards the client to another host (NAT); knocknft grants access to this host only"
_CMD_EXEC = "knocknft runs no command an SPA packet carries: such packets are refused"
_HANDLERS: dict[str, Callable[[StanzaBuilder, Directive], None]] = {
    "KEY": _key,
    "KEY_BASE64": _key,
    "HMAC_KEY": _key,
    "HMAC_KEY_BASE64": _key,
    "HMAC_DIGEST_TYPE": _digest,
    "ENCRYPTION_MODE": _encryption_mode,
    "DESTINATION": _destination,
    "OPEN_PORTS": _setter("open", lambda d: parse_ports(d.value)),
    "RESTRICT_PORTS": _setter("restrict", lambda d: parse_ports(d.value)),
    "FW_ACCESS_TIMEOUT": _setter("open_for", lambda d: parse_seconds(d.value)),
    "MAX_FW_TIMEOUT": _setter("max_open_for", lambda d: parse_seconds(d.value)),
    "REQUIRE_SOURCE_ADDRESS": _setter("require_source", lambda d: parse_yes(d.value)),
    "REQUIRE_SOURCE": _setter("require_source", lambda d: parse_yes(d.value)),
    "ACCESS_EXPIRE": _setter("expires", lambda d: last_day_before_date(d.value)),
    "ACCESS_EXPIRE_EPOCH": _setter("expires", lambda d: last_day_before_epoch(d.value)),
    "CMD_CYCLE_OPEN": _setter("cmd_open", lambda d: d),
    "CMD_CYCLE_CLOSE": _setter("cmd_close", lambda d: d),
    "CMD_CYCLE_TIMER": _setter("cmd_timer", lambda d: parse_seconds(d.value, 1)),
    "REQUIRE_USERNAME": _refused(
        "knocknft does not check the user name an SPA packet carries, so the "
        "door would let in more than fwknopd did",
        "drop REQUIRE_USERNAME (the keys already say who may knock)",
    ),
    "FORCE_NAT": _refused(_NAT),
    "FORCE_SNAT": _refused(_NAT),
    "FORCE_MASQUERADE": _when_yes(_NAT),
    "DISABLE_DNAT": _when_yes(_NAT),
    "FORWARD_ALL": _when_yes(_NAT),
    "ENABLE_CMD_EXEC": _unmapped_when_yes(_CMD_EXEC),
    "ENABLE_CMD_SUDO_EXEC": _unmapped_when_yes(_CMD_EXEC),
    "CMD_EXEC_USER": _unmapped(_CMD_EXEC),
    "CMD_EXEC_GROUP": _unmapped(_CMD_EXEC),
    "CMD_SUDO_EXEC_USER": _unmapped(_CMD_EXEC),
    "CMD_SUDO_EXEC_GROUP": _unmapped(_CMD_EXEC),
}


def read_keyword(b: StanzaBuilder, d: Directive) -> None:
    """The line's effect on the stanza; raises Invalid where fwknopd would refuse to start."""
    handler = _HANDLERS.get(d.keyword, _gpg if d.keyword.startswith("GPG_") else None)
    if handler is not None:
        handler(b, d)
