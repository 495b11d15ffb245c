"""Telling the service manager how the daemon is doing: systemd's sd_notify(3) protocol.

Under `Type=notify` systemd passes $NOTIFY_SOCKET, an AF_UNIX datagram socket: a path, or an
abstract name written with a leading '@'. Each message is one datagram of newline-separated
KEY=VALUE assignments. The daemon sends READY=1 once it listens on NFLOG (so units ordered
after knocknft.service start only once knocks work), RELOADING=1 when SIGHUP starts a reload and
READY=1 when it is done (whether or not the new config was taken), STOPPING=1 when it shuts
down, and STATUS=... lines that `systemctl status` shows. RELOADING=1 carries MONOTONIC_USEC,
which systemd >= 253 needs to pair it with its own signal under Type=notify-reload; older
managers ignore it.

A dozen lines of socket code instead of a dependency on libsystemd or a binding. Without
$NOTIFY_SOCKET every call does nothing, so the daemon behaves the same outside systemd, and a
failed send is logged, never raised: systemd's state display is not worth a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from knocknft.config import Config
from knocknft.daemon.stats import DaemonStats
from knocknft.errors import KnocknftError, TableMissing
from knocknft.nft.libnft import Nft
from knocknft.nft.queries import read_grants

log = logging.getLogger("knocknft")

ENVIRONMENT = "NOTIFY_SOCKET"
# systemd reads at most a pipe buffer's worth per datagram; a status line is far shorter.
MAX_STATUS = 1000


def socket_address(text: str) -> str | None:
    """$NOTIFY_SOCKET as an AF_UNIX address: '@name' is the abstract '\\0name'.

    None for what sd_notify(3) also refuses (a relative path, or systemd >= 254's vsock: form).
    """
    if text.startswith("@") and len(text) > 1:
        return "\0" + text[1:]
    if text.startswith("/"):
        return text
    return None


def one_line(text: str) -> str:
    """A value that stays one assignment: a newline in it would start a new KEY=VALUE line."""
    flat = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= MAX_STATUS else flat[: MAX_STATUS - 3] + "..."


class Notifier:
    """Sends sd_notify messages to one socket; a no-op without one."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        """The manager's socket, taken out of the environment.

        As sd_notify's unset_environment: the doors' commands must not inherit it, or a
        command that speaks sd_notify itself would speak for the daemon.
        """
        text = environ.pop(ENVIRONMENT, "")
        if not text:
            return cls(None)
        address = socket_address(text)
        if address is None:
            log.warning("%s=%r is not a socket knocknft can use; not notifying", ENVIRONMENT, text)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send KEY=VALUE lines as one datagram. False if not sent (no socket, or an error)."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(assignments).encode("utf-8", "replace"), self.address)
        except OSError as exc:
            if not self._failed:  # once: a gone manager would otherwise fill the log
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={one_line(status)}")

    def reloading(self, status: str = "reloading the config") -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={one_line(status)}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={one_line(status)}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={one_line(status)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# Counting open grants lists both sets through libnftables on the packet loop: about 0.5 ms
# for a few grants, 350 ms for 10,000. It may take this share of the time, at most.
GRANT_COUNT_SHARE = 0.01


class OpenGrants:
    """How many grants are open, read from the kernel on a time budget.

    The count is re-read when asked, but no sooner than the last reading's cost divided by
    GRANT_COUNT_SHARE after it, so a large set never slows the packet loop noticeably. Rare
    moments (ready, a reload) ask for a `fresh` count regardless.
    """

    def __init__(
        self,
        nft: Nft,
        table: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nft = nft
        self._table = table
        self._clock = clock
        self._count: int | None = None
        self._next = 0.0

    def count(self, fresh: bool = False) -> int | None:
        """The open grants, or None if the table is not loaded (someone flushed the ruleset)."""
        started = self._clock()
        if started < self._next and not fresh:
            return self._count
        try:
            self._count = len(read_grants(self._nft, self._table()))
        except TableMissing:
            self._count = None
        except KnocknftError as exc:  # keep the last count: it is not known to be wrong
            log.debug("cannot count open grants: %s", exc)
        self._next = started + (self._clock() - started) / GRANT_COUNT_SHARE
        return self._count


def status_line(
    config: Config,
    *,
    open_grants: int | None,
    stats: DaemonStats,
    reload_failed: bool = False,
) -> str:
    """What `systemctl status` shows: is it listening, what is open, what happened so far."""
    options = config.options
    grants = (
        f"table inet {options.table} is not loaded: nothing is guarded"
        if open_grants is None
        else f"{open_grants} grant(s) open"
    )
    parts = [
        f"listening on NFLOG group {options.nflog_group}, {len(config.doors)} door(s), "
        f"{grants}; since start: {stats['knocks']} knock(s), "
        f"{stats['opens']} door(s) opened"
    ]
    if config.spa_doors:
        refused = (
            stats["spa_rejected_malformed"]
            + stats["spa_rejected_bad_auth"]
            + stats["spa_rejected_stale"]
            + stats["spa_rejected_replay"]
            + stats["spa_rejected_not_allowed"]
        )
        parts.append(f"{stats['spa_accepted']} SPA request(s) accepted, {refused} refused")
    for count, what in (
        (stats["grant_failures"], "grant(s) failed"),
        (stats["commands_failed"], "command(s) failed"),
        (stats["nflog_lost"], "NFLOG message(s) lost"),
    ):
        if count:
            parts.append(f"{count} {what}")
    line = ", ".join(parts)
    if reload_failed:
        line = "last reload failed, running the previous config (see the log); " + line
    return line
