"""The daemon's counters: the one definition of what stats.json holds and what each value means,
and whether the daemon that wrote it is still running, for `knocknft status --stats` and the
metrics endpoint.

Pure apart from `read_status`, which reads the file and asks the kernel whether the pid lives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict, get_type_hints

from knocknft.config import format_seconds
from knocknft.files import DamagedFile, finite, parse_json, read_text

STATS_FILE = "stats.json"
# How often the daemon writes it (and hands it to the metrics endpoint and systemd).
STATS_INTERVAL = 5.0
# Written every STATS_INTERVAL: three missed writes mean the loop is stuck, not just busy.
STALE_AFTER = 3 * STATS_INTERVAL


@dataclass(frozen=True)
class Meaning:
    """What one value of stats.json means: a counter (only ever grows while the daemon runs) or a
    gauge, its help text, and its Prometheus name when that is not knocknft_<key>_total (counters)
    or knocknft_<key> (gauges)."""

    kind: Literal["counter", "gauge"]
    help: str
    metric: str = ""


def _counter(help: str) -> Meaning:
    return Meaning("counter", help)


# The counters stats.json holds, each named once here with its meaning: the daemon fills them in
# (Daemon.stats, and run.source_stats for its sources), `status --stats` and the metrics endpoint
# describe them from STATS below, systemd's status line quotes a few. The classes' order is the
# order they are shown in.


class _DaemonCounters(TypedDict):
    pid: int  # the daemon's process: whether it still runs
    version: str  # knocknft's version (the metrics' knocknft_info)
    knocks: Annotated[int, _counter("Knock packets judged by the engine.")]
    stages: Annotated[int, _counter("Knocks that advanced an attempt by one step.")]
    opens: Annotated[int, _counter("Knock sequences completed: doors opened.")]
    timeouts: Annotated[int, _counter("Attempts that ran out of seq_timeout.")]
    invalidations: Annotated[int, _counter("Attempts broken by a wrong knock.")]
    evictions: Annotated[
        int, _counter("Attempts evicted, oldest first, because max_attempts was reached.")
    ]
    flags_ignored: Annotated[int, _counter("TCP knocks ignored because of their flags (tcpflags).")]
    retransmissions_ignored: Annotated[
        int, _counter("TCP knocks ignored as a retransmission of the knock last counted.")
    ]
    grants: Annotated[int, _counter("Grants added to the allowlist sets.")]
    grant_failures: Annotated[
        int,
        _counter(
            "Grants not made: refused by the kernel (each alone), or held back because their "
            "prefix had its share of a set over half full."
        ),
    ]
    grants_evicted: Annotated[
        int, _counter("Grants that gave way to a newer knocker because their set was full.")
    ]
    bans: Annotated[int, _counter("Knockers of banning doors added to the deny sets.")]
    ban_failures: Annotated[int, _counter("Bans the kernel refused (a deny set full?).")]
    odd_addresses_refused: Annotated[
        int,
        _counter(
            "Completed sequences from sources never granted (unspecified, multicast, broadcast,"
            " network, reserved, loopback, link-local or this host's own address): no grant, no"
            " command."
        ),
    ]
    grants_refreshed: Annotated[int, _counter("Knocks that moved a pending stop command later.")]
    commands_started: Annotated[int, _counter("Start and stop commands started.")]
    commands_failed: Annotated[
        int, _counter("Commands that exited non-zero, were killed or did not start.")
    ]
    ipv6_ignored: Annotated[int, _counter("IPv6 knocks ignored under -4.")]
    table_restores: Annotated[
        int, _counter("Times the daemon put its table back after another tool deleted it.")
    ]
    knock_log_suppressed: Annotated[
        int, _counter("Per-knock log lines held back by the log rate limit.")
    ]


class SpaStats(TypedDict):
    """What SPA counts (knocknft.daemon.spa): requests accepted, and packets rejected by reason
    (the verifier's Rejection values) or dropped before it."""

    spa_accepted: Annotated[int, _counter("SPA requests accepted: doors opened.")]
    spa_rejected_malformed: Annotated[
        int, _counter("SPA packets rejected as malformed: not an SPA packet of either mode.")
    ]
    spa_rejected_bad_auth: Annotated[
        int, _counter("SPA packets rejected because no key's HMAC or signature matched.")
    ]
    spa_rejected_stale: Annotated[
        int, _counter("SPA packets rejected because their timestamp was outside spa_window.")
    ]
    spa_rejected_replay: Annotated[
        int,
        _counter(
            "SPA packets rejected as a replay of one accepted before (or, after a damaged "
            "replay file, any request during the two windows that follow the start)."
        ),
    ]
    spa_rejected_not_allowed: Annotated[
        int,
        _counter(
            "Authentic SPA packets refused: source, ports outside open, expired or revoked key, "
            "0.0.0.0 with require_source_address."
        ),
    ]
    spa_unsaved: Annotated[
        int, _counter("SPA requests refused because the replay file could not be written.")
    ]
    spa_replay_cache_full: Annotated[
        int,
        _counter(
            "Authentic SPA requests refused because the replay cache was full of packets still "
            "inside their window (counted in spa_rejected_not_allowed too)."
        ),
    ]
    spa_packets_dropped: Annotated[
        int, _counter("Packets to the SPA port that held no whole UDP datagram (fragments...).")
    ]
    spa_packets_lost: Annotated[
        int, _counter("SPA packets the kernel could not queue (NFLOG sequence gaps).")
    ]


# A daemon without SPA doors counts nothing of SPA.
NO_SPA_STATS = SpaStats(
    spa_accepted=0,
    spa_rejected_malformed=0,
    spa_rejected_bad_auth=0,
    spa_rejected_stale=0,
    spa_rejected_replay=0,
    spa_rejected_not_allowed=0,
    spa_unsaved=0,
    spa_replay_cache_full=0,
    spa_packets_dropped=0,
    spa_packets_lost=0,
)


class SourceStats(SpaStats):
    """What the daemon's sources count: the NFLOG readers (knocks, SPA) and the name cache."""

    nflog_messages: Annotated[int, _counter("NFLOG messages received from the kernel.")]
    nflog_lost: Annotated[
        int, _counter("Logged packets the kernel could not queue (NFLOG sequence gaps).")
    ]
    nflog_overruns: Annotated[
        int, _counter("Receive buffer overruns (ENOBUFS) on the NFLOG socket.")
    ]
    nflog_malformed: Annotated[int, _counter("NFLOG messages that could not be decoded.")]
    nflog_not_knocks: Annotated[int, _counter("Logged packets that were not TCP or UDP knocks.")]
    lookups_dropped: Annotated[
        int, _counter("Reverse DNS lookups dropped because the queue was full (-l).")
    ]


class DaemonStats(_DaemonCounters, SourceStats):
    """Everything the daemon writes to stats.json every STATS_INTERVAL."""

    attempts_tracked: Annotated[int, Meaning("gauge", "Knock attempts in progress.")]
    attempts_cap: Annotated[
        int, Meaning("gauge", "The most attempts tracked at once (options.max_attempts).")
    ]
    pending_stop_commands: Annotated[int, Meaning("gauge", "Stop commands waiting for their time.")]
    started: Annotated[
        float,
        Meaning(
            "gauge",
            "When the daemon started, in seconds since the epoch.",
            "knocknft_start_time_seconds",
        ),
    ]
    updated: Annotated[
        float,
        Meaning(
            "gauge",
            "When these values were taken, in seconds since the epoch.",
            "knocknft_stats_updated_timestamp_seconds",
        ),
    ]


# A daemon run without sources (tests) counts nothing from them.
NO_SOURCE_STATS = SourceStats(
    nflog_messages=0,
    nflog_lost=0,
    nflog_overruns=0,
    nflog_malformed=0,
    nflog_not_knocks=0,
    lookups_dropped=0,
    **NO_SPA_STATS,
)


@dataclass(frozen=True)
class Stat:
    """One value of stats.json with its meaning, as `status --stats` and the metrics show it."""

    key: str
    kind: Literal["counter", "gauge"]
    help: str
    metric: str = ""

    @property
    def metric_name(self) -> str:
        if self.metric:
            return self.metric
        return f"knocknft_{self.key}_total" if self.kind == "counter" else f"knocknft_{self.key}"


def _described(stats: type) -> tuple[Stat, ...]:
    hints = get_type_hints(stats, include_extras=True)
    return tuple(
        Stat(key, meaning.kind, meaning.help, meaning.metric)
        for key, hint in hints.items()
        for meaning in getattr(hint, "__metadata__", ())
        if isinstance(meaning, Meaning)
    )


STATS: tuple[Stat, ...] = _described(DaemonStats)


State = Literal["running", "stale", "stopped", "absent"]


@dataclass(frozen=True)
class DaemonStatus:
    """What stats.json says about the daemon, judged: running, stale, stopped or absent."""

    state: State
    reason: str
    path: Path
    age: float | None = None  # seconds since the daemon last wrote the file
    stats: Mapping[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "running": self.running,
            "reason": self.reason,
            "path": str(self.path),
            "age": None if self.age is None else round(self.age, 3),
            "stats": dict(self.stats) if self.stats is not None else None,
        }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it is just not ours to signal
    return True


def read_status(
    state_dir: Path,
    now: float | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> DaemonStatus:
    """Read state_dir/stats.json and judge whether the daemon that writes it is running."""
    path = state_dir / STATS_FILE
    try:
        stats = checked_stats(parse_json(read_text(path, MAX_STATS_FILE)))
    except FileNotFoundError:
        return DaemonStatus(
            "absent",
            f"no {path}: the daemon has not run with this state_dir (--state-dir DIR?)",
            path,
        )
    except OSError as exc:
        return DaemonStatus("absent", f"cannot read {path}: {exc.strerror or exc}", path)
    except DamagedFile as exc:
        # Only reported: the daemon replaces the file whole every STATS_INTERVAL, and this
        # reader may not be allowed to move it.
        return DaemonStatus(
            "absent", f"{path} is damaged ({exc}): not written by a knocknft daemon", path
        )
    return judge(stats, path, time.time() if now is None else now, alive)


# stats.json is a few kilobytes; a bigger one is not the daemon's.
MAX_STATS_FILE = 1 << 20
_MAX_COUNT = float(1 << 63)
_MAX_PID = 1 << 22  # the kernel's ceiling for pid_max


def checked_stats(raw: object) -> dict[str, Any]:
    """stats.json as the daemon writes it: an object whose known values are finite numbers
    (and version a string, pid a positive int); DamagedFile otherwise. Unknown keys are kept."""
    if not isinstance(raw, dict):
        raise DamagedFile("not an object")
    for stat in STATS:
        if stat.key in raw:
            finite(raw[stat.key], 0.0 if stat.kind == "counter" else -_MAX_COUNT, _MAX_COUNT)
    pid = raw.get("pid")
    if pid is not None and (
        isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _MAX_PID
    ):
        raise DamagedFile(f"pid {pid!r} is not a process id")
    if not isinstance(raw.get("version", ""), str):
        raise DamagedFile("version is not text")
    return raw


def judge(
    stats: Mapping[str, Any], path: Path, now: float, alive: Callable[[int], bool]
) -> DaemonStatus:
    pid = stats.get("pid")
    updated = stats.get("updated")
    age = now - updated if isinstance(updated, int | float) else None
    if not isinstance(pid, int) or not alive(pid):
        return DaemonStatus(
            "stopped",
            f"the daemon (pid {pid}) is not running; these are its last values",
            path,
            age,
            stats,
        )
    if age is None or age > STALE_AFTER:
        return DaemonStatus(
            "stale",
            f"pid {pid} lives, but its stats are {format_seconds(_whole(age))} old (written every "
            f"{STATS_INTERVAL:g}s): the daemon is stuck, or another process took its pid",
            path,
            age,
            stats,
        )
    return DaemonStatus("running", f"pid {pid}", path, age, stats)


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds)


def format_status(status: DaemonStatus) -> str:
    """The human form of `knocknft status --stats`."""
    head = {
        "running": "knocknft daemon: running",
        "stale": "knocknft daemon: STALE",
        "stopped": "knocknft daemon: NOT RUNNING",
        "absent": "knocknft daemon: NOT RUNNING",
    }[status.state]
    lines = [f"{head}: {status.reason}"]
    stats = status.stats
    if stats is None:
        return "\n".join(lines) + "\n"
    started, updated = stats.get("started"), stats.get("updated")
    if isinstance(started, int | float) and isinstance(updated, int | float):
        lines.append(
            f"version {stats.get('version', '?')}, up {format_seconds(round(updated - started))}"
            f" when these were taken, {format_seconds(_whole(status.age))} ago ({status.path})"
        )
    shown = [s for s in STATS if s.key in stats and s.key not in ("started", "updated")]
    width = max((len(s.key) for s in shown), default=0)
    values = [str(stats[s.key]) for s in shown]
    value_width = max((len(v) for v in values), default=0)
    lines += [
        f"  {s.key.ljust(width)}  {v.rjust(value_width)}  {s.help}"
        for s, v in zip(shown, values, strict=True)
    ]
    return "\n".join(lines) + "\n"
