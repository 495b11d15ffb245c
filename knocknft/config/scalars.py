"""Scalar parsers: each takes one YAML scalar's (or knockd.conf value's) text and returns a model
value, or raises `Invalid` with a message and a hint, which the walker turns into a located Problem.
And `format_seconds`, the other way: a duration's short form for people, in messages. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

from knocknft.config.model import (
    MAX_PORT,
    MAX_RATE,
    MAX_TIMEOUT_SECONDS,
    TCP_FLAG_BITS,
    IPAddress,
    IPNetwork,
    ListenAddress,
    PortSpec,
    RateUnit,
    TcpFlags,
)


class Invalid(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


_DURATION_RE = re.compile(r"^\s*([0-9]+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DIGITS_RE = re.compile(r"\s*([0-9]+)\s*")
# More digits than any limit has: such a number is only ever "too big", and Python refuses to
# convert more than 4300 digits at all.
_MAX_DIGITS = 20


def _digits_value(digits: str) -> int:
    """ASCII digits (never str.isdigit, which takes '²' that int() refuses) to their value, or
    to 10**20, a value past every limit, when there are more digits than any limit has."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else 10**_MAX_DIGITS


def parse_duration(text: str, maximum: int = MAX_TIMEOUT_SECONDS) -> int:
    """`30`, `30s`, `5m`, `1h`, `1d` -> whole seconds, 1 .. `maximum`."""
    match = _DURATION_RE.match(text)
    if not match:
        raise Invalid(
            f"{text!r} is not a duration",
            "write a whole number with an optional unit s, m, h or d, e.g. 30s, 5m, 1h",
        )
    seconds = _digits_value(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not 1 <= seconds <= maximum:
        raise Invalid(
            f"{text.strip()!r} is {'zero' if seconds == 0 else 'too long'}",
            f"a duration here is 1s to {format_duration(maximum)}"
            + (f" ({maximum}s)" if format_duration(maximum) != f"{maximum}s" else ""),
        )
    return seconds


def format_duration(seconds: int) -> str:
    """A duration as parse_duration reads it, in its largest exact unit: 604800 -> `7d`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_PORT_RE = re.compile(r"^\s*([^/:\s]+)\s*(?:[/:]\s*([A-Za-z0-9]+)\s*)?$")


def parse_port_spec(text: str) -> PortSpec:
    """`22`, `22/tcp`, `8000/udp` (and knockd's `8000:udp`) -> PortSpec."""
    match = _PORT_RE.match(text)
    if not match:
        raise Invalid(f"{text!r} is not a port", "write PORT or PORT/PROTOCOL, e.g. 7000/tcp")
    port_text, proto_text = match.group(1), (match.group(2) or "tcp")
    port = _port(port_text)
    proto = proto_text.lower()
    if proto not in ("tcp", "udp"):
        raise Invalid(
            f"protocol {proto_text!r} cannot be knocked or granted",
            "use tcp or udp, e.g. 8000/udp",
        )
    return PortSpec(port, "tcp" if proto == "tcp" else "udp")


def _port(text: str) -> int:
    hint = f"ports are numbers from 1 to {MAX_PORT}"
    match = _DIGITS_RE.fullmatch(text)
    if match is None:
        raise Invalid(f"{text!r} is not a port number", hint)
    port = _digits_value(match.group(1))
    if not 1 <= port <= MAX_PORT:
        raise Invalid(f"port {match.group(1)[:_MAX_DIGITS]} is out of range", hint)
    return port


def parse_tcpflags(text: str) -> TcpFlags:
    """knockd's `syn,!ack` syntax; spaces after commas are allowed (knockd rejects them)."""
    required = forbidden = 0
    for raw in text.split(","):
        item = raw.strip().lower()
        negated = item.startswith("!")
        name = item[1:].strip() if negated else item
        bit = TCP_FLAG_BITS.get(name)
        if bit is None:
            raise Invalid(
                f"{raw.strip()!r} is not a TCP flag",
                f"use a comma-separated list of {', '.join(TCP_FLAG_BITS)}, each optionally "
                "prefixed with ! to require it clear, e.g. syn,!ack",
            )
        if negated:
            forbidden |= bit
        else:
            required |= bit
    if required & forbidden:
        raise Invalid(f"{text!r} both requires and forbids a flag", "name each flag once")
    return TcpFlags(required, forbidden)


def _no_scope(text: str) -> None:
    # Python reads `fe80::1%eth0`; nft has no scope ids, and the text must never reach a script.
    if "%" in text:
        raise Invalid(
            f"{text!r} carries an IPv6 scope id (%...)",
            "write the address without it; to limit an interface, use options.interfaces",
        )


def parse_address(text: str) -> IPAddress:
    _no_scope(text)
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise Invalid(
            f"{text!r} is not an IP address", "write an IPv4 or IPv6 address, e.g. 198.18.0.1"
        ) from None


def parse_network(text: str) -> IPNetwork:
    _no_scope(text)
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise Invalid(
            f"{text!r} is not an address or network",
            "write an address or CIDR network, e.g. 198.51.100.0/24",
        ) from None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Invalid(f"{text!r} is not true or false", "write true or false")


def parse_int(text: str, low: int, high: int) -> int:
    """A whole number in ASCII digits, `low` .. `high`."""
    match = _DIGITS_RE.fullmatch(text)
    if match is None or not low <= _digits_value(match.group(1)) <= high:
        raise Invalid(f"{text.strip()[:40]!r} is not a number from {low} to {high}")
    return _digits_value(match.group(1))


_RATE_RE = re.compile(r"^\s*([0-9]+)\s*/\s*([a-z]+)\s*$")
_RATE_UNITS: dict[str, RateUnit] = {
    "s": "second",
    "sec": "second",
    "second": "second",
    "m": "minute",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hour": "hour",
    "d": "day",
    "day": "day",
}


def parse_rate(text: str) -> tuple[int, RateUnit]:
    """`20/second`, `600/minute`, `20/s` -> (count, unit)."""
    match = _RATE_RE.match(text.lower())
    unit = _RATE_UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise Invalid(
            f"{text!r} is not a rate",
            "write COUNT/UNIT with a unit of second, minute, hour or day, e.g. 20/second",
        )
    count = _digits_value(match.group(1))
    if not 1 <= count <= MAX_RATE:
        raise Invalid(f"{text!r} is out of range", f"the count is 1 to {MAX_RATE}, e.g. 20/second")
    return count, unit


_LISTEN_RE = re.compile(r"^\s*(?:\[([^\]]+)\]|([^\[\]\s]+)):([0-9]+)\s*$")


def parse_listen_address(text: str) -> ListenAddress:
    """`127.0.0.1:9641`, `[::1]:9641` -> ListenAddress; an address, not a name: no DNS at start."""
    hint = "write ADDRESS:PORT, e.g. 127.0.0.1:9641, or [ADDRESS]:PORT for IPv6, e.g. [::1]:9641"
    match = _LISTEN_RE.match(text)
    if match is None:
        raise Invalid(f"{text!r} is not ADDRESS:PORT", hint)
    try:
        host = ipaddress.ip_address(match.group(1) or match.group(2))
    except ValueError:
        raise Invalid(f"{text!r} does not start with an IP address", hint) from None
    if match.group(2) is not None and host.version == 6:
        raise Invalid(f"{text!r}: an IPv6 address needs brackets", hint)
    return ListenAddress(host, _port(match.group(3)))


def parse_one_time_line(text: str) -> tuple[PortSpec, ...]:
    """A one-time-sequences line: knockd's `7000,8000:udp,9000` (our `/` works too)."""
    items = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not items:
        raise Invalid("empty sequence")
    return tuple(parse_port_spec(t) for t in items)


def parse_abs_path(text: str) -> Path:
    path = Path(text.strip())
    if not path.is_absolute():
        raise Invalid(f"{text!r} is not an absolute path", "write a path starting with /")
    return path


# Where a one-time file's lines end: \r\n, \n, or a lone \r (old Mac files). The one definition
# of a line, for the reader that numbers the lines and the daemon's marker that finds them again:
# were they to count differently, a knock would mark a line other than the one it used.
ONE_TIME_LINE_END = r"\r\n|\r|\n"
_LINE_END_TEXT = re.compile(ONE_TIME_LINE_END)
_LINE_END_BYTES = re.compile(ONE_TIME_LINE_END.encode())


def one_time_line_starts(data: bytes) -> list[int]:
    """The byte offset where each line of a one-time file starts: line n at [n - 1]."""
    return [0] + [m.end() for m in _LINE_END_BYTES.finditer(data)]


def unused_one_time_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of each line of a one-time file still to be used.

    knockd marks a used line by overwriting its first character with '#'; blank lines are skipped.
    """
    for number, raw in enumerate(_LINE_END_TEXT.split(text), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def format_seconds(seconds: int | None) -> str:
    """`1h02m03s`-style, short for humans; `-` when unknown."""
    if seconds is None:
        return "-"
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
