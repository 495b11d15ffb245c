"""The daemon's counters as others read them: what each one means, and whether the daemon that
wrote `stats.json` is still running, for `knocknft status --stats` and the metrics endpoint.

Pure apart from `read_status`, which reads the file and asks the kernel whether the pid lives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from knocknft.core.grants import format_seconds

STATS_FILE = "stats.json"
# How often the daemon writes it (and hands it to the metrics endpoint and systemd).
STATS_INTERVAL = 5.0
# Written every STATS_INTERVAL: three missed writes mean the loop is stuck, not just busy.
STALE_AFTER = 3 * STATS_INTERVAL


@dataclass(frozen=True)
class Stat:
    """One value of stats.json: a counter (only ever grows while the daemon runs) or a gauge."""

    key: str
    kind: Literal["counter", "gauge"]
    help: str
    # The Prometheus name when it is not knocknft_<key>_total (counters) or knocknft_<key>.
    metric: str = ""

    @property
    def metric_name(self) -> str:
        if self.metric:
            return self.metric
        return f"knocknft_{self.key}_total" if self.kind == "counter" else f"knocknft_{self.key}"


STATS: tuple[Stat, ...] = (
    Stat("knocks", "counter", "Knock packets judged by the engine."),
    Stat("stages", "counter", "Knocks that advanced an attempt by one step."),
    Stat("opens", "counter", "Knock sequences completed: doors opened."),
    Stat("timeouts", "counter", "Attempts that ran out of seq_timeout."),
    Stat("invalidations", "counter", "Attempts broken by a wrong knock."),
    Stat(
        "evictions", "counter", "Attempts evicted, oldest first, because max_attempts was reached."
    ),
    Stat("flags_ignored", "counter", "TCP knocks ignored because of their flags (tcpflags)."),
    Stat("grants", "counter", "Grants added to the allowlist sets."),
    Stat("grant_failures", "counter", "Grants the kernel refused."),
    Stat("grants_refreshed", "counter", "Knocks that moved a pending stop command later."),
    Stat("commands_started", "counter", "Start and stop commands started."),
    Stat(
        "commands_failed", "counter", "Commands that exited non-zero, were killed or did not start."
    ),
    Stat("ipv6_ignored", "counter", "IPv6 knocks ignored under -4."),
    Stat(
        "table_restores",
        "counter",
        "Times the daemon put its table back after another tool deleted it.",
    ),
    Stat("knock_log_suppressed", "counter", "Per-knock log lines held back by the log rate limit."),
    Stat("nflog_messages", "counter", "NFLOG messages received from the kernel."),
    Stat(
        "nflog_lost", "counter", "Logged packets the kernel could not queue (NFLOG sequence gaps)."
    ),
    Stat("nflog_overruns", "counter", "Receive buffer overruns (ENOBUFS) on the NFLOG socket."),
    Stat("nflog_malformed", "counter", "NFLOG messages that could not be decoded."),
    Stat("nflog_not_knocks", "counter", "Logged packets that were not TCP or UDP knocks."),
    Stat(
        "lookups_dropped", "counter", "Reverse DNS lookups dropped because the queue was full (-l)."
    ),
    Stat("attempts_tracked", "gauge", "Knock attempts in progress."),
    Stat("attempts_cap", "gauge", "The most attempts tracked at once (options.max_attempts)."),
    Stat("pending_stop_commands", "gauge", "Stop commands waiting for their time."),
    Stat(
        "started",
        "gauge",
        "When the daemon started, in seconds since the epoch.",
        "knocknft_start_time_seconds",
    ),
    Stat(
        "updated",
        "gauge",
        "When these values were taken, in seconds since the epoch.",
        "knocknft_stats_updated_timestamp_seconds",
    ),
)


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
        stats = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DaemonStatus(
            "absent",
            f"no {path}: the daemon has not run with this state_dir (--state-dir DIR?)",
            path,
        )
    except (OSError, ValueError) as exc:
        return DaemonStatus("absent", f"cannot read {path}: {exc}", path)
    if not isinstance(stats, dict):
        return DaemonStatus("absent", f"{path} is not a stats object", path)
    return judge(stats, path, time.time() if now is None else now, alive)


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
