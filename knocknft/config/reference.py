"""What each config key means: its default, its meaning and the JSON Schema of its value, in one
place. knocknft.yaml(5) and knocknft.schema.json are generated from it (scripts/gendocs.py), and a
unit test holds it to the parsers' key lists (every `*_KEYS` of knocknft.config), so a key the
parser takes and this file does not explain fails the tests. Pure: data only.
"""

from __future__ import annotations

from knocknft.config import valueschema as v
from knocknft.config.doors import DOOR_KEYS
from knocknft.config.keydoc import Key, Section
from knocknft.config.model import (
    DEFAULT_CMD_TIMEOUT,
    DEFAULT_GRANT_MARK,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SEQ_TIMEOUT,
    DEFAULT_STATE_DIR,
    MAX_ATTEMPTS_CEILING,
    MAX_BAN_SECONDS,
    MAX_CMD_TIMEOUT,
    MAX_GRANT_SECONDS,
    MAX_NFLOG_GROUP,
    MAX_SEQ_TIMEOUT,
    MAX_SEQUENCE_LENGTH,
    MAX_TIMEOUT_SECONDS,
)
from knocknft.config.options import OPTION_KEYS
from knocknft.config.reference_spa import CLIENT, FWKNOP, SPA_DOOR_KEYS, SPA_OPTIONS

_PORTS = v.one_or_list(v.port())

OPTIONS = Section(
    "options",
    "options (all optional)",
    "How knocknft runs on this host. Every key may be left out.",
    (
        Key(
            "nflog_group",
            "7",
            f"NFLOG group the knock rule sends packets to (0-{MAX_NFLOG_GROUP}); pick one no "
            "other tool (ulogd) uses.",
            v.integer(0, MAX_NFLOG_GROUP),
        ),
        Key(
            "table",
            "knocknft",
            "Name of knocknft's own nft table (family inet); knocknft never touches another. "
            "Changing it takes a restart, after which the old table must be deleted by hand "
            "(nft delete table inet OLD).",
            v.table_name(),
        ),
        Key(
            "interfaces",
            "every interface",
            "Only knocks arriving on these interfaces count; a trailing * matches a prefix "
            "(wg*). The protected services are dropped on every interface whatever this says. "
            "Each must exist when the table is applied: check, apply and run refuse a name the "
            "kernel does not have.",
            v.one_or_list(v.interface_name()),
        ),
        Key(
            "late_interfaces",
            "none",
            "Names from interfaces that may be missing when the table is applied, because they "
            "come later (wg0, ppp0); knocks count on them once they exist.",
            v.one_or_list(v.interface_name()),
        ),
        Key(
            "always_allow",
            "none",
            "Addresses, networks or host names that reach the protected services without "
            "knocking, and are never banned: your safety line against locking yourself out. "
            "Host names are resolved at apply and by the daemon at start, every 5 minutes and "
            "on SIGHUP.",
            v.one_or_list(v.network_or_name()),
        ),
        Key(
            "always_allow_file",
            "none",
            "A trusted list as knockd setups keep one: one address, network or host name a "
            "line, # starts a comment. Its entries join always_allow. A regular UTF-8 file, "
            "owned by root and writable by nobody else; re-read on SIGHUP.",
            v.abs_path(),
        ),
        Key("log_file", "none", "Also log to this file.", v.abs_path()),
        Key("syslog", "false", "Also log to syslog.", v.boolean()),
        Key(
            "state_dir",
            str(DEFAULT_STATE_DIR),
            "Where the daemon keeps its state (pending stop commands, counters), and apply the "
            "last-known-good table the boot guard loads (last-good.nft).",
            v.abs_path(),
        ),
        Key(
            "knock_rate_limit",
            "off",
            "A per-source limit on knock packets, kept by the kernel: COUNT/UNIT, unit second, "
            "minute, hour or day (20/second). Knocks beyond it are dropped before the daemon "
            f"sees them. An emptied bucket must refill within {MAX_TIMEOUT_SECONDS}s.",
            v.rate(),
        ),
        Key(
            "knock_rate_burst",
            "twice the rate",
            "With knock_rate_limit: the knocks a source may send at once before the rate "
            "applies; must cover the longest sequence.",
            v.rate_count(),
        ),
        Key(
            "metrics",
            "off",
            "Serve the daemon's counters for Prometheus at http://ADDRESS:PORT/metrics, e.g. "
            "127.0.0.1:9641 or '[::1]:9641' (quoted: YAML reads [ as a list).",
            v.listen_address(),
        ),
        Key(
            "event_log",
            "off",
            "Also append one JSON object per line for each door opened, grant, grant end and "
            "command run: an audit trail, never a line per knock.",
            v.abs_path(),
        ),
        Key(
            "grant_mark",
            f"{DEFAULT_GRANT_MARK:#x}",
            "The packet-mark bit knocknft's table sets on granted clients' packets, so your own "
            "firewall can accept them with one rule (knocknft doctor gives it). One bit, clear "
            "of WireGuard, Docker, Kubernetes, Cilium, Istio, Calico and Tailscale's.",
            v.mark_bit(),
        ),
        Key(
            "knock_reply",
            "drop",
            "What a knock packet gets back once logged: drop (nothing; knock ports look "
            "filtered) or reject (a closed port's answer, so telnet or ssh used as a knocker "
            "fails at once). Answers are limited to 20 a second for all sources together.",
            v.enum("drop", "reject"),
        ),
        Key(
            "max_attempts",
            str(DEFAULT_MAX_ATTEMPTS),
            f"Knock attempts in progress the daemon tracks, 1 to {MAX_ATTEMPTS_CEILING}; when "
            "full the oldest is evicted, so a spoofed flood costs bounded memory.",
            v.integer(1, MAX_ATTEMPTS_CEILING),
        ),
        *SPA_OPTIONS,
    ),
    OPTION_KEYS,
)

DOORS = Section(
    "doors.NAME",
    "doors",
    "Each key under doors is a door's name (letters, digits, _ . -, at most 32; shown in logs "
    "and status). A knock door needs a sequence (or one_time_sequences) and something to do: "
    "open with open_for, close, deny_for (a door that bans), or a start_command. An SPA door "
    "has fwknop or clients instead of a sequence, and needs open and open_for.",
    (
        Key(
            "sequence",
            "required (knock doors)",
            f"The knock ports in order, e.g. [7000/tcp, 9000/udp, 8000/tcp], at most "
            f"{MAX_SEQUENCE_LENGTH} steps.",
            v.one_or_list(v.port(), min_items=1, max_items=MAX_SEQUENCE_LENGTH),
        ),
        Key(
            "one_time_sequences",
            "none",
            "Instead of sequence: a knockd one-time file, one sequence per line "
            "(7000,9000:udp,8000); a used line is marked with # on disk before the knocker is "
            "let in. A regular UTF-8 file owned by root and writable by nobody else.",
            v.abs_path(),
        ),
        Key(
            "seq_timeout",
            f"{DEFAULT_SEQ_TIMEOUT}s",
            "Time to complete the whole sequence, counted from the first knock; at most 1d.",
            v.duration(MAX_SEQ_TIMEOUT),
        ),
        Key(
            "tcpflags",
            "any",
            "knockd's syntax, per bit: syn,!ack is SYN set and ACK clear; a TCP knock whose "
            "flags do not match is ignored. Quote a value that starts with !.",
            v.tcpflags(),
        ),
        Key(
            "open",
            "none",
            "The services granted to the knocker, e.g. [22/tcp], on this host's own addresses "
            "(or forwarded by a DNAT to a host behind).",
            _PORTS,
        ),
        Key(
            "open_for",
            "required with open",
            "How long a grant lasts: the set element's timeout; at most 7d.",
            v.duration(MAX_GRANT_SECONDS),
        ),
        Key(
            "close",
            "none",
            "The services whose grants a completed knock revokes for the knocker, whichever "
            "door granted them (knockd's closeSSH door). Not in open of the same door.",
            _PORTS,
        ),
        Key(
            "close_sessions",
            "false",
            "When a grant for one of open's services ends, the client's established "
            "connections to it end too (TCP reset, UDP dropped). Turning it on ends every "
            "session from an address without a grant, your own included. Needs open.",
            v.boolean(),
        ),
        Key(
            "deny_for",
            "none",
            "Instead of granting, ban the knocker for this long (knockd's banned doors, traps "
            "for scanners); knocking again extends it. At most 30d. A door either opens or "
            "bans. always_allow is never banned.",
            v.duration(MAX_BAN_SECONDS),
        ),
        Key(
            "deny",
            "services",
            "With deny_for, what the ban takes away: services (the protected services) or "
            "host (every packet to this host).",
            v.enum("services", "host"),
        ),
        Key("target", "any address", "Only knocks sent to this address count.", v.address()),
        Key(
            "start_command",
            "none",
            "knockd-compatible shell command run on success; %IP% is the knocker's address.",
            v.text(),
        ),
        Key("stop_command", "none", "Run cmd_timeout after the start command.", v.text()),
        Key(
            "start_command_6",
            "start_command",
            "The IPv6 variant of start_command.",
            v.text(),
        ),
        Key("stop_command_6", "stop_command", "The IPv6 variant of stop_command.", v.text()),
        Key(
            "cmd_timeout",
            f"{DEFAULT_CMD_TIMEOUT}s",
            "Delay between the start and the stop command; at most 7d.",
            v.duration(MAX_CMD_TIMEOUT),
        ),
        *SPA_DOOR_KEYS,
    ),
    DOOR_KEYS,
)

SECTIONS: tuple[Section, ...] = (OPTIONS, DOORS, FWKNOP, CLIENT)
