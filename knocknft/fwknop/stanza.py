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
from dataclasses import dataclass
from datetime import date

from knocknft.config import (
    MAX_CMD_TIMEOUT,
    MAX_FWKNOP_HMAC_KEY_BYTES,
    MAX_FWKNOP_KEY_BYTES,
    MAX_GRANT_SECONDS,
    Invalid,
    PortSpec,
)
from knocknft.errors import Problem
from knocknft.fwknop.grammar import Directive, RawStanza
from knocknft.fwknop.keywords import Secret, StanzaBuilder, read_keyword
from knocknft.fwknop.values import parse_networks, translate_command

# fwknopd's defaults (server/fwknopd_common.h).
DEFAULT_FW_ACCESS_TIMEOUT = 30
DEFAULT_MAX_FW_TIMEOUT = 300


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


def check_stanza(raw: RawStanza, errors: list[Problem]) -> Checked:
    """The door a stanza imports as; what fwknopd would refuse goes into `errors`."""
    b = StanzaBuilder(raw, errors)
    errors_before = len(errors)
    try:
        b.values["networks"] = (raw.source, parse_networks(raw.source.value) or ())
    except Invalid as exc:
        errors.append(raw.source.problem(exc.message + " (fwknopd: invalid SOURCE)", exc.hint))
    for d in raw.directives:
        try:
            read_keyword(b, d)
        except Invalid as exc:
            errors.append(d.problem(exc.message, exc.hint))
        if d.dropped:
            b.unmapped(d, "fwknopd ignored the text after the `;` on this line, and so does this")
    _check_as_fwknopd(b)
    if len(errors) != errors_before:
        return Checked(None, (), tuple(b.not_mapped))
    door = _door(b)
    return Checked(None if b.refused else door, tuple(b.refused), tuple(b.not_mapped))


def _check_as_fwknopd(b: StanzaBuilder) -> None:
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


def _door(b: StanzaBuilder) -> FwknopDoor | None:
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


def _services(b: StanzaBuilder) -> tuple[PortSpec, ...]:
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


def _timeouts(b: StanzaBuilder) -> tuple[int, int]:
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


def _commands(b: StanzaBuilder) -> tuple[str | None, str | None, int | None]:
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
