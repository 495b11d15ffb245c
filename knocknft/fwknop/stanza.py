"""One access.conf stanza checked as fwknopd checks it (server/access.c), into what a knocknft
SPA door needs, or the reasons knocknft cannot serve it. Pure.

Three outcomes for what a stanza says:
- fwknopd itself would refuse to start (a bad SOURCE, a key left at __CHANGEME__, a timeout out
  of range, CMD_CYCLE_OPEN without CMD_CYCLE_CLOSE, ...): an error, and nothing is written;
- knocknft cannot do what the stanza does without letting in more than fwknopd did (no HMAC key,
  GPG only, NAT, REQUIRE_USERNAME, a DESTINATION, no OPEN_PORTS, a mode but CBC, ...): the
  stanza is refused, said with its line and why, and the others are imported;
- a keyword knocknft has no use for that narrows nothing (GPG_* next to a KEY, ENABLE_CMD_EXEC,
  ...): said as not mapped, with its line, and the stanza imported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from knocknft.config import (
    HMAC_DIGESTS,
    MAX_CMD_TIMEOUT,
    MAX_FWKNOP_HMAC_KEY_BYTES,
    MAX_FWKNOP_KEY_BYTES,
    MAX_GRANT_SECONDS,
    Invalid,
    PortSpec,
)
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
    translate_command,
)

# fwknopd's defaults (server/fwknopd_common.h).
DEFAULT_FW_ACCESS_TIMEOUT = 30
DEFAULT_MAX_FW_TIMEOUT = 300
ENCRYPTION_MODES = ("cbc", "ecb", "cfb", "ofb", "ctr", "asymmetric", "legacy")


@dataclass(frozen=True)
class Secret:
    """A key: its bytes, and its own text when access.conf gave it as text (KEY, HMAC_KEY), so
    the output keeps the form the admin knows. Never shown in a message."""

    raw: bytes = field(repr=False)
    text: str | None = field(repr=False)
    where: Directive = field(repr=False)


@dataclass(frozen=True)
class FwknopDoor:
    """What a stanza imports as: one SPA door."""

    number: int
    source: Directive  # the SOURCE line, which the output names
    networks: tuple[ipaddress.IPv4Network, ...]  # empty: any
    open: tuple[PortSpec, ...]
    key: Secret
    hmac_key: Secret
    hmac_digest: str
    open_for: int
    max_open_for: int
    require_source_address: bool
    expires: date | None
    start_command: str | None
    stop_command: str | None
    cmd_timeout: int | None
    # (line, text): comments the output puts by what they explain.
    notes: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Checked:
    door: FwknopDoor | None  # None when refused, or when fwknopd would not start
    refused: tuple[Problem, ...]
    not_mapped: tuple[Problem, ...]


@dataclass
class _Builder:
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


def _key(b: _Builder, d: Directive) -> None:
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


def _digest(b: _Builder, d: Directive) -> None:
    name = d.value.lower()
    if name not in HMAC_DIGESTS:
        raise Invalid(
            f"{d.value[:30]!r} is not an HMAC digest fwknopd knows: it refuses to start",
            f"one of {', '.join(HMAC_DIGESTS)}",
        )
    b.values["hmac_digest"] = (d, name)


def _encryption_mode(b: _Builder, d: Directive) -> None:
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


def _destination(b: _Builder, d: Directive) -> None:
    if parse_networks(d.value) is not None:
        b.refuse(
            d,
            "DESTINATION limits the addresses of this host an SPA packet may be sent to; "
            "knocknft has no such limit, so the door would let in more than fwknopd did",
            "use options.interfaces to limit where SPA packets are heard, and drop DESTINATION",
        )


def _refused(why: str, hint: str = "") -> Callable[[_Builder, Directive], None]:
    return lambda b, d: b.refuse(d, why, hint)


def _when_yes(why: str) -> Callable[[_Builder, Directive], None]:
    return lambda b, d: b.refuse(d, why) if parse_yes(d.value) else None


def _unmapped(why: str) -> Callable[[_Builder, Directive], None]:
    return lambda b, d: b.unmapped(d, why)


def _unmapped_when_yes(why: str) -> Callable[[_Builder, Directive], None]:
    return lambda b, d: b.unmapped(d, why) if parse_yes(d.value) else None


def _gpg(b: _Builder, d: Directive) -> None:
    if d.keyword == "GPG_DECRYPT_PW":
        check_not_placeholder(d.value)
        b.values["gpg"] = (d, True)
    elif d.keyword == "GPG_ALLOW_NO_PW" and parse_yes(d.value):
        b.values["gpg"] = (d, True)
    b.unmapped(d, "GPG is not served: only the Rijndael (KEY) + HMAC mode")


def _setter(
    name: str, parse: Callable[[Directive], object]
) -> Callable[[_Builder, Directive], None]:
    def set_value(b: _Builder, d: Directive) -> None:
        b.values[name] = (d, parse(d))

    return set_value


_NAT = "it forwards the client to another host (NAT); knocknft grants access to this host only"
_CMD_EXEC = "knocknft runs no command an SPA packet carries: such packets are refused"
_HANDLERS: dict[str, Callable[[_Builder, Directive], None]] = {
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


def check_stanza(raw: RawStanza, errors: list[Problem]) -> Checked:
    """The door a stanza imports as; what fwknopd would refuse goes into `errors`."""
    b = _Builder(raw, errors)
    errors_before = len(errors)
    try:
        b.values["networks"] = (raw.source, parse_networks(raw.source.value) or ())
    except Invalid as exc:
        errors.append(raw.source.problem(exc.message + " (fwknopd: invalid SOURCE)", exc.hint))
    for d in raw.directives:
        handler = _HANDLERS.get(d.keyword, _gpg if d.keyword.startswith("GPG_") else None)
        try:
            if handler is not None:
                handler(b, d)
        except Invalid as exc:
            errors.append(d.problem(exc.message, exc.hint))
        if d.dropped:
            b.unmapped(d, "fwknopd ignored the text after the `;` on this line, and so does this")
    _check_as_fwknopd(b)
    if len(errors) != errors_before:
        return Checked(None, (), tuple(b.not_mapped))
    door = _door(b)
    return Checked(None if b.refused else door, tuple(b.refused), tuple(b.not_mapped))


def _check_as_fwknopd(b: _Builder) -> None:
    """fwknopd's acc_data_is_valid(): what stops it at start."""
    source = b.raw.source
    key, hmac_key = b.value("key"), b.value("hmac_key")
    no_key = not isinstance(key, Secret) or not key.raw
    # A KEY line that failed is reported already: no second error for the missing key.
    failed = not isinstance(key, Secret) and any(
        d.keyword in ("KEY", "KEY_BASE64") for d in b.raw.directives
    )
    if no_key and not failed and not b.value("gpg"):
        b.errors.append(
            source.problem(
                f"stanza #{b.raw.number} has no KEY (or KEY_BASE64): fwknopd refuses to start",
                "add the KEY_BASE64 and HMAC_KEY_BASE64 lines fwknop --key-gen prints",
            )
        )
    if isinstance(key, Secret) and isinstance(hmac_key, Secret) and key.raw == hmac_key.raw:
        b.errors.append(
            hmac_key.where.problem(
                "the HMAC key is the encryption key: fwknopd refuses to start",
                "give the two different keys (fwknop --key-gen makes a pair)",
            )
        )
    opened, closed = b.values.get("cmd_open"), b.values.get("cmd_close")
    for present, missing in ((opened, "CMD_CYCLE_CLOSE"), (closed, "CMD_CYCLE_OPEN")):
        if present is not None and (opened is None or closed is None):
            b.errors.append(
                present[0].problem(
                    f"without {missing}: fwknopd refuses to start",
                    "give CMD_CYCLE_OPEN and CMD_CYCLE_CLOSE (NONE for no close), or neither",
                )
            )
    if (
        closed is not None
        and opened is not None
        and not closed[0].value.startswith("NONE")
        and "cmd_timer" not in b.values
    ):
        b.errors.append(
            closed[0].problem(
                "without CMD_CYCLE_TIMER: fwknopd refuses to start",
                "add CMD_CYCLE_TIMER, the seconds before the close command runs",
            )
        )


def _door(b: _Builder) -> FwknopDoor | None:
    """The door, or None after refusing the stanza (said in b.refused)."""
    source = b.raw.source
    key, hmac_key = b.value("key"), b.value("hmac_key")
    if not isinstance(key, Secret) or not key.raw:
        b.refuse(
            source,
            "it has no KEY, only GPG keys: knocknft serves the Rijndael (KEY) + HMAC mode only",
        )
    elif len(key.raw) > MAX_FWKNOP_KEY_BYTES:
        b.refuse(
            key.where,
            f"the key is {len(key.raw)} bytes: fwknop's clients take {MAX_FWKNOP_KEY_BYTES} at "
            "most, so no client could use this stanza",
        )
    if not isinstance(hmac_key, Secret) or not hmac_key.raw:
        b.refuse(
            source,
            "it has no HMAC_KEY (or HMAC_KEY_BASE64): knocknft serves SPA with an HMAC only, "
            "which authenticates a packet before anything of it is decrypted",
            "fwknop --key-gen prints an HMAC_KEY_BASE64; give it here and to the clients, "
            "which then send with --use-hmac",
        )
    elif len(hmac_key.raw) > MAX_FWKNOP_HMAC_KEY_BYTES:
        b.refuse(
            hmac_key.where,
            f"the HMAC key is {len(hmac_key.raw)} bytes: fwknop's clients take "
            f"{MAX_FWKNOP_HMAC_KEY_BYTES} at most",
        )
    services = _services(b)
    open_for, max_open_for = _timeouts(b)
    start, stop, cmd_timeout = _commands(b)
    if b.refused or not isinstance(key, Secret) or not isinstance(hmac_key, Secret):
        return None
    expires: date | None = None
    if "expires" in b.values:
        line, value = b.values["expires"]
        assert isinstance(value, tuple)  # set by _HANDLERS: (the last day or None, how)
        expires = value[0] if isinstance(value[0], date) else None
        b.notes.append((line.line, str(value[1])))
    digest = b.value("hmac_digest")
    networks = b.value("networks")
    return FwknopDoor(
        number=b.raw.number,
        source=source,
        networks=networks if isinstance(networks, tuple) else (),
        open=services,
        key=key,
        hmac_key=hmac_key,
        hmac_digest=digest if isinstance(digest, str) else "sha256",
        open_for=open_for,
        max_open_for=max_open_for,
        require_source_address=b.value("require_source") is True,
        expires=expires,
        start_command=start,
        stop_command=stop,
        cmd_timeout=cmd_timeout,
        notes=tuple(b.notes),
    )


def _services(b: _Builder) -> tuple[PortSpec, ...]:
    """OPEN_PORTS less RESTRICT_PORTS: fwknopd refuses a request naming a restricted port, and
    one naming a port outside OPEN_PORTS, so what is left is exactly what it granted."""
    opened, restricted = b.values.get("open"), b.values.get("restrict")
    if opened is None:
        b.refuse(
            b.raw.source,
            "it has no OPEN_PORTS: fwknopd opened whatever port a client asked for, and "
            "knocknft opens only the services a door lists",
            "add OPEN_PORTS with the ports your clients ask for (their -A), e.g. tcp/22",
        )
        return ()
    services = opened[1]
    assert isinstance(services, tuple)
    if restricted is not None:
        left = tuple(p for p in services if p not in restricted[1])  # type: ignore[operator]
        if not left:
            b.refuse(restricted[0], "RESTRICT_PORTS takes away every port of OPEN_PORTS")
        elif left != services:
            b.notes.append((restricted[0].line, "RESTRICT_PORTS taken out of OPEN_PORTS"))
        services = left
    return services


def _timeouts(b: _Builder) -> tuple[int, int]:
    """FW_ACCESS_TIMEOUT and MAX_FW_TIMEOUT (0 or unset: fwknopd's 30 s and 5 min)."""
    chosen = b.values.get("open_for")
    capped = b.values.get("max_open_for")
    open_for = chosen[1] if chosen is not None and chosen[1] else DEFAULT_FW_ACCESS_TIMEOUT
    longest = capped[1] if capped is not None and capped[1] else DEFAULT_MAX_FW_TIMEOUT
    assert isinstance(open_for, int) and isinstance(longest, int)
    if longest < open_for and capped is not None:
        b.notes.append(
            (
                capped[0].line,
                f"MAX_FW_TIMEOUT is shorter than FW_ACCESS_TIMEOUT ({open_for}s); knocknft "
                "needs max_open_for at least open_for, so open_for is the shorter of the two",
            )
        )
        open_for = longest
    for value, line in ((open_for, chosen), (longest, capped)):
        if value > MAX_GRANT_SECONDS and line is not None:
            b.notes.append((line[0].line, f"{value}s is over knocknft's longest grant: 7 days"))
    return min(open_for, MAX_GRANT_SECONDS), min(longest, MAX_GRANT_SECONDS)


def _commands(b: _Builder) -> tuple[str | None, str | None, int | None]:
    """CMD_CYCLE_OPEN/CLOSE/TIMER -> start_command, stop_command and cmd_timeout."""
    opened, closed = b.values.get("cmd_open"), b.values.get("cmd_close")
    if opened is None or closed is None:
        return None, None, None
    b.notes.append(
        (
            opened[0].line,
            "fwknopd ran these commands and added no firewall rule of its own for this stanza; "
            "knocknft runs them and also grants `open` in its table",
        )
    )
    commands: list[str | None] = []
    for line, _ in (opened, closed):
        if line.keyword == "CMD_CYCLE_CLOSE" and line.value.startswith("NONE"):
            commands.append(None)
            continue
        try:
            command = translate_command(line.value)
        except Invalid as exc:
            b.refuse(line, exc.message, exc.hint)
            commands.append(None)
            continue
        b.notes += [(line.line, note) for note in command.notes]
        commands.append(command.text)
    timer = b.value("cmd_timer")
    cmd_timeout = min(timer, MAX_CMD_TIMEOUT) if isinstance(timer, int) else None
    if isinstance(timer, int) and timer > MAX_CMD_TIMEOUT:
        b.notes.append((b.values["cmd_timer"][0].line, f"{timer}s cut to 7 days, knocknft's most"))
    return commands[0], commands[1], cmd_timeout if commands[1] is not None else None
