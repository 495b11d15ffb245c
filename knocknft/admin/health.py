"""Whether the gate is really in place, for `knocknft status`: our table loaded, a daemon
running for it (the table's lock), the configured interfaces present, no `apply --confirm`
waiting to roll back. Each is read, never changed: a damaged confirmation marker is reported,
not set aside (that is the watcher's and `apply`'s business).

The verdict is the exit status scripts test: EXIT_GATE_DOWN when nothing of ours guards the
protected services, EXIT_GATE_DEGRADED when the table guards them but something is amiss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knocknft.admin.confirm import watcher_alive
from knocknft.admin.confirmfiles import MARKER, Pending, boottime
from knocknft.config import Config, HostInterfaces, format_seconds
from knocknft.daemon.tablelock import Holder, lock_holder
from knocknft.files import DamagedFile, parse_json, read_text

EXIT_GATE_DOWN = 3  # our table is not loaded: the protected services are not guarded
EXIT_GATE_DEGRADED = 4  # loaded, but no daemon, an interface missing, or a rollback pending

EXIT_CODES_HELP = (
    "Exit status: 0 the gate is in place (table loaded, daemon running, interfaces present, "
    f"no rollback pending); {EXIT_GATE_DOWN} the table is not loaded, the protected services "
    f"are not guarded; {EXIT_GATE_DEGRADED} the table is loaded but the daemon is not running "
    "(no knock opens anything), a configured interface is missing, or an `apply --confirm` "
    "awaits `knocknft confirm`; 1 the kernel could not be read; 2 invalid config or arguments."
)


@dataclass(frozen=True)
class PendingConfirm:
    """An `apply --confirm` not yet confirmed, as its marker says; `pending` None: damaged."""

    pending: Pending | None
    watcher_running: bool
    problem: str = ""

    def describe(self, now: float) -> str:
        if self.pending is None:
            return f"an `apply --confirm` marker that cannot be read ({self.problem})"
        left = format_seconds(max(0, round(self.pending.deadline - now)))
        if not self.watcher_running:
            return "a confirmation whose rollback watcher is gone: the next apply drops it"
        return f"an `apply --confirm` rolls table inet {self.pending.table} back in {left}"


@dataclass(frozen=True)
class Health:
    table: str
    table_loaded: bool
    daemon: Holder | None
    interfaces: tuple[str, ...] = ()  # options.interfaces: () is every one
    interfaces_missing: tuple[str, ...] = ()
    late_missing: tuple[str, ...] = ()  # options.late_interfaces not there yet: allowed
    confirm: PendingConfirm | None = None

    @property
    def confirm_pending(self) -> bool:
        return self.confirm is not None and (
            self.confirm.pending is None or self.confirm.watcher_running
        )

    def problems(self, now: float) -> list[str]:
        """What keeps the gate from being in place, worst first; none: it is."""
        found = []
        if not self.table_loaded:
            found.append(
                f"table inet {self.table} is not loaded: the protected services are not guarded "
                "(`knocknft apply`, or start the daemon)"
            )
        if self.daemon is None:
            found.append("no daemon runs for the table: knocks open nothing (`knocknft run`)")
        if self.interfaces_missing:
            names = ", ".join(self.interfaces_missing)
            found.append(f"configured interface(s) missing: {names}: knocks on them go unheard")
        if self.confirm is not None and self.confirm_pending:
            found.append(self.confirm.describe(now) + " unless `knocknft confirm` runs")
        return found

    def exit_code(self) -> int:
        if not self.table_loaded:
            return EXIT_GATE_DOWN
        if self.daemon is None or self.interfaces_missing or self.confirm_pending:
            return EXIT_GATE_DEGRADED
        return 0

    def to_json(self, now: float) -> dict[str, Any]:
        confirm: dict[str, Any] | None = None
        if self.confirm is not None:
            p = self.confirm.pending
            confirm = {
                "pending": self.confirm_pending,
                "table": p.table if p else None,
                "due_at": p.due_at if p else None,
                "rolls_back_in": max(0, round(p.deadline - now)) if p else None,
                "watcher_running": self.confirm.watcher_running,
            }
        return {
            "in_place": self.exit_code() == 0,
            "exit": self.exit_code(),
            "table_loaded": self.table_loaded,
            "daemon": None
            if self.daemon is None
            else {"running": True, "pid": self.daemon.pid, "about": self.daemon.about},
            "daemon_running": self.daemon is not None,
            "interfaces": list(self.interfaces),
            "interfaces_missing": list(self.interfaces_missing),
            "late_interfaces_missing": list(self.late_missing),
            "confirm": confirm,
            "problems": self.problems(now),
        }


def check_health(
    config: Config, table_loaded: bool, host: HostInterfaces, state_dir: Path
) -> Health:
    options = config.options
    late = set(options.late_interfaces)
    return Health(
        table=options.table,
        table_loaded=table_loaded,
        daemon=lock_holder(options.table),
        interfaces=options.interfaces,
        interfaces_missing=tuple(host.missing(options.interfaces, late)),
        late_missing=tuple(n for n in options.interfaces if n in late and not host.has(n)),
        confirm=read_confirm(state_dir),
    )


def read_confirm(state_dir: Path) -> PendingConfirm | None:
    """The pending confirmation's marker, read and left as it is."""
    try:
        pending = Pending.from_json(parse_json(read_text(state_dir / MARKER)), boottime())
    except FileNotFoundError:
        return None
    except (OSError, DamagedFile) as exc:
        return PendingConfirm(None, False, str(exc))
    return PendingConfirm(pending, watcher_alive(pending.watcher))
