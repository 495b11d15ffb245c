"""One access.conf value's text to what it means, as fwknopd reads it, or `Invalid` saying why
fwknopd would refuse it (or, where fwknopd is lax, why it is ambiguous). Pure.

No message here quotes a key: keys must reach no terminal or log.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from knocknft.config import Invalid, PortSpec
from knocknft.fwknop.grammar import C_SPACE

# fwknopd's range check of FW_ACCESS_TIMEOUT, MAX_FW_TIMEOUT and CMD_CYCLE_TIMER (RCHK_MAX_...).
MAX_FWKNOP_SECONDS = 2 << 22
# The placeholder of the shipped access.conf; fwknopd refuses to start while a key holds it.
PLACEHOLDER = "__CHANGEME__"
# fwknopd's buffer for a command cycle's command (server/cmd_cycle.h).
CMD_CYCLE_BUFSIZE = 256
_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BASE64_CHARS_RE = re.compile(r"^[A-Za-z0-9+/=]+$")
_SECONDS_RE = re.compile(r"^[0-9]{1,20}$")
_DATE_RE = re.compile(r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{1,4})$")
_MASK_BITS_RE = re.compile(r"^[0-9]+$")


def split_list(text: str) -> list[str]:
    """A comma-separated value as fwknopd splits it: each item without its leading blanks (the
    whole value has lost its trailing ones)."""
    return [item.lstrip(C_SPACE) for item in text.split(",")]


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network, ...] | None:
    """SOURCE or DESTINATION: IPv4 addresses and networks (`/24` or `/255.255.255.0`), or ANY
    (None), comma-separated. fwknopd masks a network's host bits off, and so does this."""
    networks: list[ipaddress.IPv4Network] = []
    anywhere = False
    for item in split_list(text):
        if item.upper() == "ANY":
            anywhere = True
            continue
        networks.append(_network(item.rstrip(C_SPACE)))
    return None if anywhere else tuple(dict.fromkeys(networks))


def _network(item: str) -> ipaddress.IPv4Network:
    address, slash, mask = item.partition("/")
    hint = "write a.b.c.d or a.b.c.d/bits (fwknopd 2.6 takes IPv4 only), or ANY"
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        message = f"{item[:60]!r} is not an IPv4 address or network"
        if re.fullmatch(r"[0-9.]+", address) and re.search(r"(^|\.)0[0-9]", address):
            message += " (fwknopd reads a leading 0 as octal)"
        raise Invalid(message, hint) from None
    if not slash:
        return ipaddress.IPv4Network(address)
    if len(mask) <= 2:
        # fwknopd reads a mask of up to two characters as bits: 1 to 32.
        if not _MASK_BITS_RE.match(mask) or not 1 <= int(mask) <= 32:
            raise Invalid(f"{item[:60]!r}: {mask!r} is not a mask", hint)
        bits = int(mask)
    else:
        try:
            # A dotted mask is used as given by fwknopd; only a contiguous one means a network.
            bits = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            raise Invalid(f"{item[:60]!r}: {mask[:20]!r} is not a mask", hint) from None
    return ipaddress.IPv4Network(f"{address}/{bits}", strict=False)


def parse_ports(text: str) -> tuple[PortSpec, ...]:
    """OPEN_PORTS or RESTRICT_PORTS: `tcp/22, udp/1194`."""
    ports = []
    hint = "write proto/port items, e.g. tcp/22, udp/1194"
    for item in split_list(text):
        proto, slash, number = item.rstrip(C_SPACE).partition("/")
        if not slash or proto.lower() not in ("tcp", "udp"):
            raise Invalid(f"{item[:40]!r} is not tcp/PORT or udp/PORT", hint)
        if not re.fullmatch(r"[0-9]{1,5}", number) or not 1 <= int(number) <= 65535:
            raise Invalid(f"{item[:40]!r}: the port is not a number from 1 to 65535", hint)
        ports.append(PortSpec(int(number), "tcp" if proto.lower() == "tcp" else "udp"))
    return tuple(dict.fromkeys(ports))


def check_not_placeholder(text: str) -> None:
    if text.upper() == PLACEHOLDER:
        raise Invalid(
            f"still the placeholder {PLACEHOLDER}: fwknopd refuses to start",
            "fwknop --key-gen prints a KEY_BASE64 and an HMAC_KEY_BASE64 line to paste here "
            "(and into the client's ~/.fwknoprc)",
        )


def decode_base64(text: str) -> bytes:
    """KEY_BASE64, HMAC_KEY_BASE64 as fwknopd decodes them (lib/base64.c): up to the first `=`,
    each character six bits, the bits of an unfinished byte dropped."""
    check_not_placeholder(text)
    if not _BASE64_CHARS_RE.match(text):
        raise Invalid(
            "not base64: fwknopd refuses to start",
            "copy it as fwknop --key-gen prints it: A-Z a-z 0-9 + / and = at the end",
        )
    out = bytearray()
    bits = 0
    for index, char in enumerate(text.split("=", 1)[0]):
        bits = ((bits << 6) | _BASE64_ALPHABET.index(char)) & 0xFFFFFF
        if index & 3:
            out.append((bits >> (6 - 2 * (index & 3))) & 0xFF)
    return bytes(out)


def parse_seconds(text: str, low: int = 0) -> int:
    """A timeout in whole seconds, in fwknopd's range; fwknopd's strtol() would also take `30s`
    as 30 and `abc` as 0, which here is refused as a likely mistake."""
    if not _SECONDS_RE.match(text) or not low <= int(text) <= MAX_FWKNOP_SECONDS:
        raise Invalid(
            f"{text[:30]!r} is not a whole number of seconds from {low} to {MAX_FWKNOP_SECONDS}",
            "write the seconds as digits, e.g. 30",
        )
    return int(text)


def parse_yes(text: str) -> bool:
    """fwknopd's Y/N: true when the value starts with Y or y, whatever follows."""
    return text[:1] in ("Y", "y")


def last_day_before_date(text: str) -> tuple[date, str]:
    """ACCESS_EXPIRE MM/DD/YYYY -> the last day let in, and how that was worked out. fwknopd
    refuses from the start of that day (00:00 local time), and takes a two-digit year as 20YY."""
    match = _DATE_RE.match(text)
    hint = "write MM/DD/YYYY, e.g. 06/30/2027"
    if match is None:
        raise Invalid(f"{text[:30]!r} is not MM/DD/YYYY: fwknopd refuses it", hint)
    month, day, year = (int(g) for g in match.groups())
    if year < 100:
        year += 2000
    try:
        if year <= 1900:
            raise ValueError
        refused_from = date(year, month, day)
    except ValueError:
        raise Invalid(
            f"{text!r} is not a date (fwknopd would move it to another day)", hint
        ) from None
    last = refused_from - timedelta(days=1)
    return last, (
        f"fwknopd refused this stanza from {refused_from} 00:00, its local time; knocknft lets "
        "the day before in to its end, UTC"
    )


def last_day_before_epoch(text: str) -> tuple[date | None, str]:
    """ACCESS_EXPIRE_EPOCH -> the last whole day (UTC) before that second, or None when fwknopd
    never expires it (0, or beyond any date)."""
    if not _SECONDS_RE.match(text):
        raise Invalid(
            f"{text[:30]!r} is not a number of seconds since 1970",
            "write the digits of the time, e.g. 1814400000",
        )
    seconds = int(text)
    try:
        refused_from = datetime.fromtimestamp(seconds, UTC) if seconds else None
    except (OverflowError, ValueError, OSError):
        refused_from = None
    if refused_from is None:
        return None, "fwknopd never expired this stanza (no time, or one beyond any date)"
    last = refused_from.date() - timedelta(days=1)
    how = f"fwknopd refused this stanza from {refused_from:%Y-%m-%d %H:%M:%S} UTC"
    if refused_from.time() != datetime.min.time():
        how += "; knocknft expires whole days, so the rest of that day is refused too"
    return last, how


@dataclass(frozen=True)
class Command:
    """A command cycle's command as knocknft writes it, and what the translation changed."""

    text: str
    notes: tuple[str, ...]


# fwknopd's command variables (server/cmd_cycle.c build_cmd), tried in this order, each a prefix
# of what follows the `$`. Only the address has a knocknft counterpart (%IP%).
_ADDRESS_VARIABLES = ("IP", "SRC")
_OTHER_VARIABLES = ("PKT_SRC", "DST", "PORT", "PROTO", "TIMEOUT", "CLIENT_TIMEOUT")


def translate_command(text: str) -> Command:
    """CMD_CYCLE_OPEN/CLOSE -> a knocknft command. fwknopd replaces $IP and $SRC (the address
    from inside the SPA packet, what knocknft grants and calls %IP%), drops any other `$`, then
    splits the command at blanks and runs it without a shell; knocknft runs /bin/sh -c, so each
    word is quoted where the shell would read it otherwise. Raises Invalid for a variable with no
    counterpart."""
    if len(text) >= CMD_CYCLE_BUFSIZE:
        raise Invalid(
            f"the command is {len(text)} characters; fwknopd takes fewer than {CMD_CYCLE_BUFSIZE}"
        )
    out: list[str] = []
    notes: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char != "$":
            out.append(char)
            continue
        rest = text[index:]
        name = next((v for v in _ADDRESS_VARIABLES if rest.startswith(v)), None)
        if name is not None:
            out.append("%IP%")
            index += len(name)
            continue
        other = next((v for v in _OTHER_VARIABLES if rest.startswith(v)), None)
        if other is not None:
            raise Invalid(
                f"the command uses ${other}, which knocknft's commands have no counterpart for "
                "(they know the granted address, %IP%, only)",
                "use a stanza without it, or a door's start_command written for knocknft",
            )
        notes.append(f"fwknopd dropped the `$` before {rest[:12]!r}, and so does this")
    words = [word for word in re.split(r"[ \t\n\v\f\r]+", "".join(out)) if word]
    command = " ".join(shlex.quote(word) for word in words)
    if command != " ".join(words):
        notes.append(
            "fwknopd ran it without a shell, split at blanks: its words are quoted so that "
            "/bin/sh passes them the same"
        )
    return Command(command, tuple(notes))
