"""The configuration model: frozen dataclasses for options and doors, and the YAML loader that
builds them keeping every key's line number, so each error can say file:line and how to fix it.

Pure apart from `load_config`, which reads the file (and a door's one-time-sequences file) and hands
the text to `parse_config`.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import yaml

from knocknft.errors import ConfigError, Problem

Protocol = Literal["tcp", "udp"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONFIG_PATH = Path("/etc/knocknft/config.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/knocknft")
DEFAULT_SEQ_TIMEOUT = 25  # knockd's default, seconds
DEFAULT_CMD_TIMEOUT = 10  # knockd's default, seconds
MAX_SEQUENCE_LENGTH = 32  # knockd's limit
# Knock attempts in progress the daemon keeps (oldest evicted first): what bounds its memory
# under a spoofed flood. The ceiling keeps a typo from asking for gigabytes.
DEFAULT_MAX_ATTEMPTS = 65536
MAX_ATTEMPTS_CEILING = 1 << 20
# nft element comments are stored as userdata; keep names short and shell/log safe.
DOOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}\*?$")

# TCP header flag bits, as knockd names them (plus the two ECN bits).
TCP_FLAG_BITS: dict[str, int] = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ece": 0x40,
    "cwr": 0x80,
}


@dataclass(frozen=True, order=True)
class PortSpec:
    """A port and its transport protocol: one knock step or one protected service."""

    port: int
    protocol: Protocol = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class TcpFlags:
    """knockd's per-bit TCP flag filter: `required` bits must be set, `forbidden` bits clear."""

    required: int = 0
    forbidden: int = 0

    def matches(self, flags: int) -> bool:
        return flags & self.required == self.required and flags & self.forbidden == 0

    def __str__(self) -> str:
        names = [n for n, b in TCP_FLAG_BITS.items() if self.required & b]
        names += [f"!{n}" for n, b in TCP_FLAG_BITS.items() if self.forbidden & b]
        return ",".join(names)


@dataclass(frozen=True)
class OneTimeSequence:
    """One line of a knockd one-time-sequences file that is still unused."""

    line: int
    steps: tuple[PortSpec, ...]


@dataclass(frozen=True)
class Door:
    """A knock sequence and what completing it grants ("event" in knockd's words)."""

    name: str
    sequence: tuple[PortSpec, ...] = ()
    one_time_sequences: Path | None = None
    # Unused lines of the one-time file, read at load time so rendering and matching stay pure.
    one_time: tuple[OneTimeSequence, ...] = ()
    seq_timeout: int = DEFAULT_SEQ_TIMEOUT
    tcpflags: TcpFlags = field(default_factory=TcpFlags)
    open: tuple[PortSpec, ...] = ()
    open_for: int | None = None
    # Completing the sequence revokes the knocker's grants for these services, whichever door
    # granted them: knockd's "closeSSH" door, whose command deletes what "openSSH" added.
    close: tuple[PortSpec, ...] = ()
    # When a grant for one of `open`'s services ends (expiry, `knocknft close`, a closing door),
    # the client's established connections to it end too: TCP with a reset, UDP dropped.
    close_sessions: bool = False
    target: IPAddress | None = None
    start_command: str | None = None
    stop_command: str | None = None
    start_command_6: str | None = None
    stop_command_6: str | None = None
    cmd_timeout: int = DEFAULT_CMD_TIMEOUT
    line: int | None = None

    @property
    def knock_ports(self) -> frozenset[PortSpec]:
        """Every port a knock for this door may hit, including all unused one-time lines."""
        ports = set(self.sequence)
        for seq in self.one_time:
            ports.update(seq.steps)
        return frozenset(ports)


@dataclass(frozen=True)
class ListenAddress:
    """An IP address and TCP port to serve on, e.g. the metrics endpoint's."""

    host: IPAddress
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"
        )


RateUnit = Literal["second", "minute", "hour", "day"]
RATE_UNIT_SECONDS: dict[RateUnit, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MAX_RATE = 1_000_000  # packets per unit, and burst: far above any knocker, far below nft's u32


@dataclass(frozen=True)
class RateLimit:
    """At most `count` knock packets per `unit` from one source, after a burst of `burst`:
    enforced by the kernel before NFLOG, so a noisy source costs the daemon nothing."""

    count: int
    unit: RateUnit
    burst: int

    @property
    def refill_seconds(self) -> float:
        """How long an emptied bucket takes to fill up again."""
        return self.burst * RATE_UNIT_SECONDS[self.unit] / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.unit} burst {self.burst}"


@dataclass(frozen=True)
class Options:
    nflog_group: int = 7
    table: str = "knocknft"
    log_file: Path | None = None
    syslog: bool = False
    interfaces: tuple[str, ...] = ()
    # Sources that reach the protected services without knocking (a management network):
    # the admin's safety line against locking themselves out.
    always_allow: tuple[IPNetwork, ...] = ()
    state_dir: Path = DEFAULT_STATE_DIR
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    knock_rate_limit: RateLimit | None = None
    # The Prometheus endpoint (/metrics); off unless set.
    metrics: ListenAddress | None = None
    # JSON lines of opens, grants, closes, commands...; off unless set.
    event_log: Path | None = None


@dataclass(frozen=True)
class Config:
    options: Options
    doors: tuple[Door, ...]
    source: str = "<config>"

    def door(self, name: str) -> Door | None:
        return next((d for d in self.doors if d.name == name), None)

    @property
    def protected(self) -> frozenset[PortSpec]:
        return frozenset(p for d in self.doors for p in d.open)

    @property
    def sessions_closed(self) -> frozenset[PortSpec]:
        """The services whose established connections end with the client's grant."""
        return frozenset(p for d in self.doors if d.close_sessions for p in d.open)


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    warnings: tuple[Problem, ...]


# ---------------------------------------------------------------------------------------------
# Scalar parsers. Each takes the YAML scalar's text and raises ValueError with a message and a hint
# separated by " | ", which the walker turns into a located Problem.


class Invalid(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`30`, `30s`, `5m`, `1h`, `1d` -> whole seconds (> 0)."""
    match = _DURATION_RE.match(text)
    if not match:
        raise Invalid(
            f"{text!r} is not a duration",
            "write a whole number with an optional unit s, m, h or d, e.g. 30s, 5m, 1h",
        )
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise Invalid(f"{text!r} is zero", "a duration must be at least 1s")
    return seconds


_PORT_RE = re.compile(r"^\s*([^/:\s]+)\s*(?:[/:]\s*([A-Za-z0-9]+)\s*)?$")


def parse_port_spec(text: str) -> PortSpec:
    """`22`, `22/tcp`, `8000/udp` (and knockd's `8000:udp`) -> PortSpec."""
    match = _PORT_RE.match(text)
    if not match:
        raise Invalid(f"{text!r} is not a port", "write PORT or PORT/PROTOCOL, e.g. 7000/tcp")
    port_text, proto_text = match.group(1), (match.group(2) or "tcp")
    if not port_text.isdigit():
        raise Invalid(f"{port_text!r} is not a port number", "ports are numbers from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise Invalid(f"port {port} is out of range", "ports are numbers from 1 to 65535")
    proto = proto_text.lower()
    if proto not in ("tcp", "udp"):
        raise Invalid(
            f"protocol {proto_text!r} cannot be knocked or granted",
            "use tcp or udp, e.g. 8000/udp",
        )
    return PortSpec(port, "tcp" if proto == "tcp" else "udp")


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


def parse_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise Invalid(
            f"{text!r} is not an IP address", "write an IPv4 or IPv6 address, e.g. 198.18.0.1"
        ) from None


def parse_network(text: str) -> IPNetwork:
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
    value = text.strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise Invalid(f"{text!r} is not a number from {low} to {high}")
    return int(value)


_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
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
    count = int(match.group(1))
    if not 1 <= count <= MAX_RATE:
        raise Invalid(f"{text!r} is out of range", f"the count is 1 to {MAX_RATE}, e.g. 20/second")
    return count, unit


_LISTEN_RE = re.compile(r"^\s*(?:\[([^\]]+)\]|([^\[\]\s]+)):(\d+)\s*$")


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
    port = int(match.group(3))
    if not 1 <= port <= 65535:
        raise Invalid(f"port {port} is out of range", "ports are numbers from 1 to 65535")
    return ListenAddress(host, port)


def parse_one_time_line(text: str) -> tuple[PortSpec, ...]:
    """A one-time-sequences line: knockd's `7000,8000:udp,9000` (our `/` works too)."""
    items = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not items:
        raise Invalid("empty sequence")
    return tuple(parse_port_spec(t) for t in items)


# ---------------------------------------------------------------------------------------------
# The walker over PyYAML's node graph: nodes keep their line, constructed objects do not.


T = TypeVar("T")


class Walker:
    """Checks a composed YAML document node by node, collecting located errors and warnings.

    Shared by every YAML file knocknft reads (the config, the knock client's profiles)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, node: yaml.Node | None, key: str, message: str, hint: str = "") -> None:
        self.errors.append(Problem(self.file, _line(node), key, message, hint))

    def warn(self, node: yaml.Node | None, key: str, message: str, hint: str = "") -> None:
        self.warnings.append(Problem(self.file, _line(node), key, message, hint))

    def mapping(
        self, node: yaml.Node, key: str, allowed: tuple[str, ...] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The entries of a mapping node, by key, checking for unknown and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"expected a mapping of keys, got {_kind(node)}")
            return {}
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            path = f"{key}.{name}" if key else name
            if name in entries:
                self.error(
                    key_node,
                    path,
                    f"{name!r} is given twice (first on line {_line(entries[name][0])})",
                    "remove one of them",
                )
                continue
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name.lower(), allowed, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"known keys here: {', '.join(allowed)}"
                )
                self.error(key_node, path, f"unknown key {name!r}", hint)
                continue
            entries[name] = (key_node, value_node)
        return entries

    def scalar(self, node: yaml.Node, key: str, parse: Callable[[str], T]) -> T | None:
        if not isinstance(node, yaml.ScalarNode) or node.value is None:
            self.error(node, key, f"expected a single value, got {_kind(node)}")
            return None
        if node.tag == "tag:yaml.org,2002:null":
            self.error(node, key, "has no value", "give it a value or remove the key")
            return None
        if node.tag.startswith("!"):
            # YAML reads a leading ! as a tag, which swallows knockd-style `!ack` flags.
            self.error(
                node,
                key,
                f"YAML read {node.tag!r} as a tag, not as part of the value",
                f"quote the value, e.g. {key.rsplit('.', 1)[-1]}: "
                f'"{" ".join(filter(None, [node.tag, str(node.value)]))}"',
            )
            return None
        try:
            return parse(str(node.value))
        except Invalid as exc:
            self.error(node, key, exc.message, exc.hint)
            return None

    def items(self, node: yaml.Node, key: str) -> Iterator[tuple[str, yaml.Node]]:
        """A list's items with their paths; a lone scalar is taken as a one-item list."""
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            yield f"{key}[0]", node
            return
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, key, f"expected a list, got {_kind(node)}", "write [a, b, c]")
            return
        for index, item in enumerate(node.value):
            yield f"{key}[{index}]", item

    def scalar_list(self, node: yaml.Node, key: str, parse: Callable[[str], T]) -> list[T]:
        values = [self.scalar(item, path, parse) for path, item in self.items(node, key)]
        return [v for v in values if v is not None]


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing"
    return f"{node.value!r}"


OPTION_KEYS = (
    "nflog_group",
    "table",
    "log_file",
    "syslog",
    "interfaces",
    "always_allow",
    "state_dir",
    "max_attempts",
    "knock_rate_limit",
    "knock_rate_burst",
    "metrics",
    "event_log",
)
DOOR_KEYS = (
    "sequence",
    "one_time_sequences",
    "seq_timeout",
    "tcpflags",
    "open",
    "open_for",
    "close",
    "close_sessions",
    "target",
    "start_command",
    "stop_command",
    "start_command_6",
    "stop_command_6",
    "cmd_timeout",
)


def _parse_options(w: Walker, node: yaml.Node | None) -> Options:
    if node is None or node.tag == "tag:yaml.org,2002:null":
        return Options()
    entries = w.mapping(node, "options", OPTION_KEYS)
    values: dict[str, object] = {}
    for name, (_, value) in entries.items():
        if name in ("knock_rate_limit", "knock_rate_burst"):
            continue  # one RateLimit of two keys: _parse_rate_limit
        key = f"options.{name}"
        parsed: object
        if name == "nflog_group":
            parsed = w.scalar(value, key, lambda t: parse_int(t, 0, 65535))
        elif name == "table":
            parsed = w.scalar(value, key, _parse_table_name)
        elif name in ("log_file", "state_dir", "event_log"):
            parsed = w.scalar(value, key, _parse_abs_path)
        elif name == "syslog":
            parsed = w.scalar(value, key, parse_bool)
        elif name == "max_attempts":
            parsed = w.scalar(value, key, _parse_max_attempts)
        elif name == "metrics":
            parsed = listen = w.scalar(value, key, parse_listen_address)
            if listen is not None and not listen.host.is_loopback:
                w.warn(
                    value,
                    key,
                    f"the metrics endpoint on {listen} is open to whoever reaches that address",
                    "serve it on 127.0.0.1 or [::1], or let your firewall guard the port",
                )
        elif name == "interfaces":
            parsed = tuple(dict.fromkeys(w.scalar_list(value, key, _parse_ifname)))
        else:  # always_allow
            parsed = tuple(w.scalar_list(value, key, parse_network))
        if parsed is not None:
            values[name] = parsed
    rate_limit = _parse_rate_limit(w, entries)
    if rate_limit is not None:
        values["knock_rate_limit"] = rate_limit
    return Options(**values)  # type: ignore[arg-type]  # keys and types checked above


def _parse_rate_limit(
    w: Walker, entries: dict[str, tuple[yaml.Node, yaml.Node]]
) -> RateLimit | None:
    """knock_rate_limit and knock_rate_burst, two keys that make one RateLimit."""
    rate = burst = None
    if "knock_rate_limit" in entries:
        rate = w.scalar(entries["knock_rate_limit"][1], "options.knock_rate_limit", parse_rate)
    if "knock_rate_burst" in entries:
        key_node, value = entries["knock_rate_burst"]
        burst = w.scalar(value, "options.knock_rate_burst", lambda t: parse_int(t, 1, MAX_RATE))
        if "knock_rate_limit" not in entries:
            w.error(
                key_node,
                "options.knock_rate_burst",
                "knock_rate_burst has no rate to go with",
                "add knock_rate_limit: 20/second, or remove knock_rate_burst",
            )
    if rate is None:
        return None
    count, unit = rate
    # Twice the rate by default: room for a knock sequence and a retry of it.
    return RateLimit(count, unit, burst or 2 * count)


def _parse_max_attempts(text: str) -> int:
    try:
        return parse_int(text, 1, MAX_ATTEMPTS_CEILING)
    except Invalid as exc:
        raise Invalid(
            exc.message,
            f"the default, {DEFAULT_MAX_ATTEMPTS}, keeps a spoofed flood's cost bounded; "
            "see the README for the memory each size takes",
        ) from None


def _parse_table_name(text: str) -> str:
    if not TABLE_NAME_RE.match(text):
        raise Invalid(
            f"{text!r} is not a usable nft table name",
            "start with a letter; use letters, digits and _ (at most 32)",
        )
    return text


def _parse_abs_path(text: str) -> Path:
    path = Path(text.strip())
    if not path.is_absolute():
        raise Invalid(f"{text!r} is not an absolute path", "write a path starting with /")
    return path


def _parse_ifname(text: str) -> str:
    if not IFNAME_RE.match(text):
        raise Invalid(
            f"{text!r} is not an interface name",
            "at most 15 characters; a trailing * matches a prefix, e.g. wg*",
        )
    return text


def _parse_command(text: str) -> str:
    if not text.strip():
        raise Invalid("the command is empty", "remove the key or give a shell command")
    return text


ReadFile = Callable[[Path], str]


def _parse_door(
    w: Walker, name: str, name_node: yaml.Node, node: yaml.Node, read_file: ReadFile
) -> Door | None:
    base = f"doors.{name}"
    if not DOOR_NAME_RE.match(name):
        w.error(
            name_node,
            base,
            f"door name {name!r} is not usable",
            "start with a letter or digit; use letters, digits, _ . - (at most 32)",
        )
    entries = w.mapping(node, base, DOOR_KEYS)
    errors_before = len(w.errors)
    fields: dict[str, object] = {"name": name, "line": _line(name_node)}

    def get(key: str, parse: Callable[[str], T]) -> T | None:
        if key not in entries:
            return None
        return w.scalar(entries[key][1], f"{base}.{key}", parse)

    if "sequence" in entries:
        seq_node = entries["sequence"][1]
        steps = tuple(w.scalar_list(seq_node, f"{base}.sequence", parse_port_spec))
        if not steps and len(w.errors) == errors_before:
            w.error(
                seq_node,
                f"{base}.sequence",
                "the sequence is empty",
                "list the knock ports in order, e.g. [7000/tcp, 8000/udp, 9000/tcp]",
            )
        elif len(steps) > MAX_SEQUENCE_LENGTH:
            w.error(seq_node, f"{base}.sequence", f"more than {MAX_SEQUENCE_LENGTH} steps")
        fields["sequence"] = steps

    otp = get("one_time_sequences", _parse_abs_path)
    if otp is not None:
        fields["one_time_sequences"] = otp
        fields["one_time"] = _read_one_time(
            w, entries["one_time_sequences"][1], base, otp, read_file
        )
    if "sequence" in entries and "one_time_sequences" in entries:
        w.error(
            entries["one_time_sequences"][0],
            f"{base}.one_time_sequences",
            "a door takes either sequence or one_time_sequences, not both",
            "remove one of them",
        )
    elif "sequence" not in entries and "one_time_sequences" not in entries:
        w.error(
            name_node,
            base,
            "the door has no sequence",
            "add sequence: [7000/tcp, 8000/udp, 9000/tcp] (or one_time_sequences: FILE)",
        )

    for key in ("seq_timeout", "open_for", "cmd_timeout"):
        value = get(key, parse_duration)
        if value is not None:
            fields[key] = value
    flags = get("tcpflags", parse_tcpflags)
    if flags is not None:
        fields["tcpflags"] = flags
    target = get("target", parse_address)
    if target is not None:
        fields["target"] = target
    close_sessions = get("close_sessions", parse_bool)
    if close_sessions is not None:
        fields["close_sessions"] = close_sessions
    for key in ("start_command", "stop_command", "start_command_6", "stop_command_6"):
        command = get(key, _parse_command)
        if command is not None:
            fields[key] = command
    services: dict[str, tuple[PortSpec, ...]] = {}
    for key in ("open", "close"):
        if key in entries:
            services[key] = tuple(
                dict.fromkeys(w.scalar_list(entries[key][1], f"{base}.{key}", parse_port_spec))
            )
    fields.update(services)
    both = sorted(set(services.get("open", ())) & set(services.get("close", ())))
    if both:
        w.error(
            entries["close"][0],
            f"{base}.close",
            f"{', '.join(map(str, both))} is both opened and closed by this door",
            "a door either grants a service or revokes it; remove it from one list",
        )

    has_open = "open" in entries
    has_command = any(k in entries for k in ("start_command", "start_command_6", "stop_command"))
    if has_open and "open_for" not in entries:
        w.error(
            entries["open"][0],
            f"{base}.open",
            "open needs open_for: how long a knocker's grant lasts",
            "add e.g. open_for: 30s",
        )
    if close_sessions and not has_open:
        w.error(
            entries["close_sessions"][0],
            f"{base}.close_sessions",
            "close_sessions has nothing to close: the door has no open",
            "add open: [22/tcp] with open_for, or remove close_sessions",
        )
    if "open_for" in entries and not has_open:
        w.error(
            entries["open_for"][0],
            f"{base}.open_for",
            "open_for has nothing to time: the door has no open",
            "add open: [22/tcp] or remove open_for",
        )
    if not has_open and not has_command and "close" not in entries:
        w.error(
            name_node,
            base,
            "the door does nothing: it has neither open, close nor a start_command",
            "add open: [22/tcp] with open_for: 30s, or a start_command",
        )
    if "cmd_timeout" in entries and "stop_command" not in entries:
        w.warn(
            entries["cmd_timeout"][0],
            f"{base}.cmd_timeout",
            "cmd_timeout has no effect without stop_command",
        )
    if len(w.errors) != errors_before:
        return None
    return Door(**fields)  # type: ignore[arg-type]  # keys and types checked above


def unused_one_time_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of each line of a one-time file still to be used.

    knockd marks a used line by overwriting its first character with '#'; blank lines are skipped.
    """
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _read_one_time(
    w: Walker, node: yaml.Node, base: str, path: Path, read_file: ReadFile
) -> tuple[OneTimeSequence, ...]:
    key = f"{base}.one_time_sequences"
    try:
        text = read_file(path)
    except OSError as exc:
        w.error(
            node,
            key,
            f"cannot read {path}: {exc.strerror or exc}",
            "create the file or fix the path",
        )
        return ()
    sequences: list[OneTimeSequence] = []
    for number, line in unused_one_time_lines(text):
        try:
            sequences.append(OneTimeSequence(number, parse_one_time_line(line)))
        except Invalid as exc:
            w.error(node, key, f"{path}:{number}: {exc.message}", exc.hint)
    if not sequences:
        w.warn(node, key, f"{path} has no unused sequence left: the door cannot open")
    return tuple(sequences)


def _check_doors(w: Walker, doors: list[tuple[Door, yaml.Node]]) -> None:
    """Cross-door errors and the weak-sequence warnings."""
    all_knock_ports = {p for d, _ in doors for p in d.knock_ports}
    opened = {p for d, _ in doors for p in d.open}
    closing_sessions = {p for d, _ in doors if d.close_sessions for p in d.open}
    for door, node in doors:
        mixed = [] if door.close_sessions else sorted(closing_sessions.intersection(door.open))
        if mixed:
            # The kernel rule can only ask "does this address hold a grant for the service",
            # not which door gave it, so the setting is per service.
            w.warn(
                node,
                f"doors.{door.name}.close_sessions",
                f"{', '.join(map(str, mixed))} is also opened by a door with close_sessions: "
                "sessions to it end when the grant ends, whichever door gave it",
                "set close_sessions the same on every door that opens the service",
            )
        never_opened = sorted(set(door.close) - opened)
        if never_opened:
            w.warn(
                node,
                f"doors.{door.name}.close",
                f"no door opens {', '.join(map(str, never_opened))}: closing it has no effect",
                "close the services another door lists in open",
            )
        clash = sorted(set(door.open) & all_knock_ports)
        if clash:
            w.error(
                node,
                f"doors.{door.name}.open",
                f"{', '.join(map(str, clash))} is both a knock port and a protected service",
                "knock ports are dropped for everyone; pick knock ports no service uses",
            )
        seq = door.sequence
        if not seq:
            continue
        key = f"doors.{door.name}.sequence"
        if len(seq) < 3:
            w.warn(node, key, f"only {len(seq)} step(s): easy to guess", "use 3 or more knocks")
        if len(seq) > 1 and all(a.port < b.port for a, b in itertools.pairwise(seq)):
            w.warn(
                node,
                key,
                "the ports only go up: a port scan walks them in this order",
                "mix the order, e.g. [9000, 7000, 8000]",
            )
        if len(seq) > 1 and len({s.protocol for s in seq}) == 1:
            w.warn(node, key, f"every step is {seq[0].protocol}", "mix tcp and udp steps")
        for other, _ in doors:
            if (
                other is not door
                and len(other.sequence) > len(seq)
                and other.sequence[: len(seq)] == seq
            ):
                w.warn(
                    node,
                    key,
                    f"the sequence is a prefix of door {other.name!r}'s: knocking that door "
                    f"opens this one on the way",
                    "make the sequences differ in their first steps",
                )


def _check_rate_limit(
    w: Walker, options: Options, doors: list[Door], options_node: yaml.Node | None
) -> None:
    """The burst must let a knocker through a whole sequence at full speed."""
    limit = options.knock_rate_limit
    if limit is None or not isinstance(options_node, yaml.MappingNode):
        return
    steps = [(len(d.sequence), d.name) for d in doors]
    steps += [(len(seq.steps), d.name) for d in doors for seq in d.one_time]
    longest, door = max(steps, default=(0, ""))
    if limit.burst >= longest:
        return
    keys = {str(k.value): k for k, _ in options_node.value if isinstance(k, yaml.ScalarNode)}
    name = "knock_rate_burst" if "knock_rate_burst" in keys else "knock_rate_limit"
    w.error(
        keys.get(name),
        f"options.{name}",
        f"a burst of {limit.burst} knocks is less than door {door!r}'s {longest} steps: "
        "its knockers would be dropped before they finish",
        f"set knock_rate_burst to {2 * longest} or more",
    )


def compose_yaml(text: str, file: str) -> yaml.Node | None:
    """The document's node graph (None for an empty file); YAML syntax errors are located."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"not valid YAML: {exc.problem or exc}",
                    "check the indentation and quoting",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None


def parse_config(
    text: str, file: str = "<config>", read_file: ReadFile | None = None
) -> LoadedConfig:
    """Parse config text. Raises ConfigError listing every problem; returns warnings otherwise."""
    reader: ReadFile = read_file or (lambda p: p.read_text(encoding="utf-8"))
    w = Walker(file)
    root = compose_yaml(text, file)
    if root is None:
        raise ConfigError([Problem(file, 1, "", "the file is empty", "see config.example.yaml")])
    top = w.mapping(root, "", ("options", "doors"))
    options_node = top["options"][1] if "options" in top else None
    options = _parse_options(w, options_node)
    doors: list[tuple[Door, yaml.Node]] = []
    if "doors" not in top:
        if not w.errors:
            w.error(
                root,
                "doors",
                "no doors are defined",
                "add a doors: section; see config.example.yaml",
            )
    else:
        doors_node = top["doors"][1]
        for name, (name_node, door_node) in w.mapping(doors_node, "doors", None).items():
            door = _parse_door(w, name, name_node, door_node, reader)
            if door is not None:
                doors.append((door, name_node))
        if isinstance(doors_node, yaml.MappingNode) and not doors_node.value:
            w.error(doors_node, "doors", "no doors are defined", "add at least one door")
    if not w.errors:
        _check_doors(w, doors)
        _check_rate_limit(w, options, [d for d, _ in doors], options_node)
    if w.errors:
        raise ConfigError(w.errors)
    config = Config(options, tuple(d for d, _ in doors), file)
    return LoadedConfig(config, tuple(w.warnings))


def load_config(path: Path) -> LoadedConfig:
    """Read and parse a config file; an unreadable file is a ConfigError like any other."""
    return parse_config(read_config_text(path), str(path))


def read_config_text(
    path: Path,
    what: str = "the config",
    hint: str = "check the path (-c FILE) and that you may read it",
) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"cannot read {what}: {exc.strerror or exc}",
                    hint,
                )
            ]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, "", f"not UTF-8 text: {exc.reason}")]) from None
    return text
