"""The configuration's model: the frozen dataclasses a parsed config is made of, and the limits and
defaults the parsers check against. Pure: no I/O, no YAML.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from knocknft.errors import Problem

Protocol = Literal["tcp", "udp"]
# What a banning door denies its knocker: the protected services, or every packet to this host.
DenyScope = Literal["services", "host"]
DENY_SCOPES: tuple[DenyScope, ...] = ("services", "host")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONFIG_PATH = Path("/etc/knocknft/config.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/knocknft")
DEFAULT_SEQ_TIMEOUT = 25  # knockd's default, seconds
DEFAULT_CMD_TIMEOUT = 10  # knockd's default, seconds
MAX_SEQUENCE_LENGTH = 32  # knockd's limit

# The limits of the kernel and of knocknft's encoders, one definition each: the config's parsers
# refuse a value beyond them at `check`, with the range, and knocknft.core.transaction,
# knocknft.core.grants and knocknft.netlink check the same names again where a value becomes an
# nft object or a netlink message, so a value `check` accepts can never fail at apply or later.
MAX_PORT = 65535
MAX_NFLOG_GROUP = 65535  # the kernel's u16 group number
# The kernel keeps timeouts in milliseconds; older kernels hold them in 32 bits (49.7 days).
MAX_TIMEOUT_SECONDS = (2**32 - 1) // 1000
# A grant longer than a week is almost certainly a unit mistake (seconds vs. hours). open_for,
# and cmd_timeout too: a knockd door's stop command ends its grant (`import` writes it as open_for).
MAX_GRANT_SECONDS = 7 * 86400
MAX_CMD_TIMEOUT = MAX_GRANT_SECONDS
# A ban (deny_for) may outlast a grant: a scanner is kept out for a month at most, well inside
# what the kernel's timeouts hold.
MAX_BAN_SECONDS = 30 * 86400
# A knock sequence that takes longer than a day to finish is no sequence; the daemon keeps each
# attempt in memory for this long at most.
MAX_SEQ_TIMEOUT = 86400
# nft refuses a longer comment ("comment too long, 128 characters maximum allowed").
MAX_COMMENT_LENGTH = 128
# always_allow entries from the YAML and the file together: a trusted list, not a blocklist.
MAX_ALWAYS_ALLOW = 10000
# The config and the knockd.conf are read whole: a bigger file is a mistake (or an attack on
# the parser), refused before parsing.
MAX_CONFIG_BYTES = 1 << 20
# YAML nesting deeper than this is refused before PyYAML composes it (its recursion, and ours,
# would end in a RecursionError); a config needs four levels.
MAX_YAML_DEPTH = 64
# Values (keys and scalars) a config may hold, counted as walked, aliases each time they are
# named; and doors (the checks across doors compare every pair).
MAX_YAML_VALUES = 100_000
MAX_DOORS = 1000
# Knock attempts in progress the daemon keeps (oldest evicted first): what bounds its memory
# under a spoofed flood. The ceiling keeps a typo from asking for gigabytes.
DEFAULT_MAX_ATTEMPTS = 65536
MAX_ATTEMPTS_CEILING = 1 << 20
# nft element comments are stored as userdata; keep names short and shell/log safe.
DOOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}\*?$")

# Single packet authorization (SPA). The port and window are fwknopd's defaults (PCAP_FILTER's
# udp port 62201, MAX_SPA_PACKET_AGE 120 s); the SPA NFLOG group is a second one, apart from the
# knock path's. The window is also how long an accepted packet's digest is remembered, so a
# longer one is a bigger replay cache: an hour at most.
DEFAULT_SPA_PORT = 62201
DEFAULT_SPA_NFLOG_GROUP = 8
DEFAULT_SPA_WINDOW = 120
MAX_SPA_WINDOW = 3600
# Accepted digests remembered at most: the replay cache's bound, about 150 bytes each.
DEFAULT_SPA_REPLAY_CACHE = 100_000
MAX_SPA_REPLAY_CACHE = 1 << 22
# fwknop's limits (lib/rijndael.h RIJNDAEL_MAX_KEYSIZE, lib/hmac.h MAX_DIGEST_BLOCK_LEN): a
# longer key cannot be one its clients use.
MAX_FWKNOP_KEY_BYTES = 32
MAX_FWKNOP_HMAC_KEY_BYTES = 136
ED25519_PUBLIC_KEY_BYTES = 32
HmacDigest = Literal["md5", "sha1", "sha256", "sha384", "sha512", "sha3_256", "sha3_512"]
HMAC_DIGESTS: tuple[HmacDigest, ...] = (
    "md5",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "sha3_256",
    "sha3_512",
)

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
class FwknopKey:
    """An fwknop access.conf stanza's keys and rules: who may send, with which keys.

    The keys are secrets: kept out of repr, so that no log line or message shows them."""

    source: tuple[IPNetwork, ...]  # SOURCE; empty: any
    key: bytes = field(repr=False)  # KEY / KEY_BASE64, the Rijndael passphrase
    hmac_key: bytes = field(repr=False)  # HMAC_KEY / HMAC_KEY_BASE64
    hmac_digest: HmacDigest = "sha256"
    # REQUIRE_SOURCE_ADDRESS: refuse a request that names 0.0.0.0 (fwknop -s).
    require_source_address: bool = False
    expires: date | None = None  # ACCESS_EXPIRE: refused after this day


@dataclass(frozen=True)
class ClientKey:
    """One client of a public-key SPA door: its name (in logs and audit) and Ed25519 key."""

    name: str
    public_key: bytes  # the 32 raw bytes
    expires: date | None = None
    revoked: bool = False


@dataclass(frozen=True)
class Door:
    """A knock sequence and what completing it grants ("event" in knockd's words); or, for an
    SPA door (`fwknop` or `clients`, no sequence), what one authorized packet may be granted."""

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
    # A banning door: its knocker is put on the kernel's deny list for this long instead of
    # being granted (knockd's "banned" doors, whose command dropped the knocker), denied
    # `deny` (the protected services, or the whole host). always_allow is never denied.
    deny_for: int | None = None
    deny: DenyScope = "services"
    target: IPAddress | None = None
    start_command: str | None = None
    stop_command: str | None = None
    start_command_6: str | None = None
    stop_command_6: str | None = None
    cmd_timeout: int = DEFAULT_CMD_TIMEOUT
    line: int | None = None
    # An SPA door has one of these instead of a sequence: an fwknop stanza's keys, or the
    # public keys of its clients.
    fwknop: FwknopKey | None = None
    clients: tuple[ClientKey, ...] = ()
    # The longest grant an SPA client may ask for (fwknop -f, MAX_FW_TIMEOUT); None: open_for.
    max_open_for: int | None = None

    @property
    def is_spa(self) -> bool:
        """Opened by a single authorized packet, not by a knock sequence."""
        return self.fwknop is not None or bool(self.clients)

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


KnockReply = Literal["drop", "reject"]
KNOCK_REPLIES: tuple[KnockReply, ...] = ("drop", "reject")

RateUnit = Literal["second", "minute", "hour", "day"]
RATE_UNIT_SECONDS: dict[RateUnit, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# One bit that no common mark user takes: WireGuard's fwmark 0xca6c, Kubernetes' (and Docker
# swarm's, flannel's) 0x4000 and 0x8000, Cilium's 0x0f00 nibble, Istio's 0x539, Mullvad's
# 0x6d6f6c65, and the upper half that Calico, Cilium's identities and Tailscale (0xff0000) use.
DEFAULT_GRANT_MARK = 0x00001000
MAX_RATE = 1_000_000  # packets per unit, and burst: far above any knocker, far below nft's u32
# A source's bucket lives at least this long after its last knock.
MIN_BUCKET_SECONDS = 60


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

    @property
    def bucket_seconds(self) -> int:
        """How long the kernel keeps a source's bucket after its last knock: until it is full
        again, and at least a minute. At most MAX_TIMEOUT_SECONDS, a set's timeout."""
        return max(MIN_BUCKET_SECONDS, math.ceil(self.refill_seconds))

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
    # The host names among always_allow's entries and always_allow_file's lines: resolved at
    # load (`apply`) and again while the daemon runs; what they resolve to is
    # Config.always_allow_resolved. The networks of both are in always_allow.
    always_allow_names: tuple[str, ...] = ()
    # A trusted list, one address, network or host name a line (knockd.trusted), re-read on reload.
    always_allow_file: Path | None = None
    # Names in `interfaces` that may be missing when the table is applied (wg0, ppp0): every
    # other one must exist, so a typo is refused instead of leaving knocks unheard.
    late_interfaces: tuple[str, ...] = ()
    state_dir: Path = DEFAULT_STATE_DIR
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    knock_rate_limit: RateLimit | None = None
    # The Prometheus endpoint (/metrics); off unless set.
    metrics: ListenAddress | None = None
    # JSON lines of opens, grants, closes, commands...; off unless set.
    event_log: Path | None = None
    # The packet-mark bit our table sets on granted clients' packets: the hand-off, so that the
    # admin's own firewall accepts them with one rule (`knocknft doctor` gives it).
    grant_mark: int = DEFAULT_GRANT_MARK
    # What a knock packet gets back after it is logged: nothing (`drop`, the knock ports look
    # filtered), or a closed port's answer (`reject`: a TCP reset, ICMP port unreachable), so
    # that a blocking connect (telnet, ssh, a browser) fails at once instead of retrying.
    knock_reply: KnockReply = "drop"
    # SPA (doors with fwknop or clients): the UDP port its packets come to, the NFLOG group
    # they are copied to, the timestamp window (seconds, either way) and the replay cache's size.
    spa_port: int = DEFAULT_SPA_PORT
    spa_nflog_group: int = DEFAULT_SPA_NFLOG_GROUP
    spa_window: int = DEFAULT_SPA_WINDOW
    spa_replay_cache: int = DEFAULT_SPA_REPLAY_CACHE


@dataclass(frozen=True)
class HostInterfaces:
    """The network interfaces of the host a config is for, as the kernel names them now:
    `interfaces` must name them (but for `late_interfaces`). Not `strict` (a config checked for
    another host): a missing one is a warning, not an error."""

    names: frozenset[str]
    strict: bool = True

    def has(self, name: str) -> bool:
        """Whether `name` (or, ending in `*`, a prefix) matches an interface of the host."""
        if name.endswith("*"):
            return any(n.startswith(name[:-1]) for n in self.names)
        return name in self.names

    def missing(self, wanted: Iterable[str], late: Iterable[str] = ()) -> list[str]:
        """The names in `wanted` the host lacks, but for those that may come `late`."""
        late_names = set(late)
        return [n for n in wanted if n not in late_names and not self.has(n)]

    def explain(self, name: str, what: str) -> tuple[str, str]:
        """(message, hint) for a missing interface: the names the host has, and the way out."""
        names = ", ".join(sorted(self.names))
        return (
            f"{what} {name!r} does not exist on this host (it has: {names})",
            "fix the name; an interface that appears later (wg0, ppp0) goes in "
            "options.late_interfaces as well",
        )


@dataclass(frozen=True)
class Config:
    options: Options
    doors: tuple[Door, ...]
    source: str = "<config>"
    # What options.always_allow_names resolved to, (name, address) each: filled in by whoever
    # resolves (`apply` once, the daemon's resolver thread), never by the parser, which does no I/O.
    always_allow_resolved: tuple[tuple[str, IPAddress], ...] = ()

    def door(self, name: str) -> Door | None:
        return next((d for d in self.doors if d.name == name), None)

    @property
    def spa_doors(self) -> tuple[Door, ...]:
        """The doors opened by single packet authorization, in the config's order."""
        return tuple(d for d in self.doors if d.is_spa)

    @property
    def protected(self) -> frozenset[PortSpec]:
        return frozenset(p for d in self.doors for p in d.open)

    def bans(self, scope: DenyScope) -> bool:
        """Whether a door bans its knockers from `scope`: the kernel's rule for it is needed."""
        return any(d.deny_for is not None and d.deny == scope for d in self.doors)

    @property
    def sessions_closed(self) -> frozenset[PortSpec]:
        """The services whose established connections end with the client's grant."""
        return frozenset(p for d in self.doors if d.close_sessions for p in d.open)


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    warnings: tuple[Problem, ...]
