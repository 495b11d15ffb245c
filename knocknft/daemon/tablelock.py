"""One daemon per table: a lock named for the table, held while `knocknft run` runs.

The lock is an abstract AF_UNIX socket (`@knocknft/table/NAME`). Abstract sockets live in the
network namespace, as the table does: a daemon in another namespace with a table of the same name
is no rival, and two daemons in one namespace are. There is no file to leave behind or to make
writable (ProtectSystem=strict), and the kernel lets go of it when its holder dies, even by
SIGKILL. The holder listens, so whoever finds the lock taken can ask who holds it: the kernel
says the pid and uid (SO_PEERCRED), and the holder says its config and NFLOG group.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass

from knocknft.errors import KnocknftError

log = logging.getLogger("knocknft")

_PREFIX = b"\0knocknft/table/"
# What a holder says of itself is read, not trusted: this much, printable characters only.
_ABOUT_LIMIT = 512
_ASK_TIMEOUT = 1.0
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class TableBusy(KnocknftError):
    """Another process holds the table's lock: a daemon already runs for that table."""


@dataclass(frozen=True)
class Holder:
    """Who holds a table's lock: the kernel's word for pid and uid, the holder's for `about`."""

    pid: int | None
    uid: int | None
    about: str

    def describe(self, table: str) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "a process"
        if self.uid is not None and self.uid not in (0, os.geteuid()):
            return f"table inet {table} is locked by {who} of uid {self.uid}, not a knocknft daemon"
        about = f" ({self.about})" if self.about else ""
        return f"table inet {table} is already run by knocknft daemon {who}{about}"


def _address(table: str) -> bytes:
    return _PREFIX + table.encode()


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text).strip()


def lock_holder(table: str) -> Holder | None:
    """Who holds the table's lock, or None when nobody does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_ASK_TIMEOUT)
        try:
            sock.connect(_address(table))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError:
            return Holder(None, None, "")  # there, but not answering: busy all the same
        pid, uid, _ = _CREDENTIALS.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        )
        about = b""
        with contextlib.suppress(OSError):
            while len(about) < _ABOUT_LIMIT and (chunk := sock.recv(_ABOUT_LIMIT - len(about))):
                about += chunk
        return Holder(pid, uid, _printable(about))


def refuse_if_daemon_runs(table: str) -> None:
    """For `knocknft apply`: a daemon that runs for the table owns it. An apply would swap its
    table for another config's under it (the daemon would go on judging knocks by its own), and
    telling it to reload would load its config file, not the one given: so refuse, and say how."""
    holder = lock_holder(table)
    if holder is not None:
        pid = holder.pid if holder.pid is not None else "PID"
        raise TableBusy(
            f"{holder.describe(table)}: apply would change the table under it; edit its config "
            f"and reload it (systemctl reload knocknft, or kill -HUP {pid}), or stop it first"
        )


class TableLock:
    """Holds the lock for `table` until closed; raises TableBusy, naming the holder, when
    another process has it. `about` is what this daemon tells whoever asks (config, group)."""

    def __init__(self, table: str, about: str) -> None:
        self.table = table
        self._about = about.encode()[:_ABOUT_LIMIT]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(_address(table))
            self._sock.listen(8)
        except OSError as exc:
            self._sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise KnocknftError(f"cannot lock table inet {table}: {exc}") from exc
            holder = lock_holder(table) or Holder(None, None, "")
            raise TableBusy(
                f"{holder.describe(table)}: one daemon per table; stop that one first, or give "
                "this config another options.table"
            ) from None
        # Answers who holds the lock; each asker is told and let go at once.
        self._thread = threading.Thread(target=self._answer, name="table-lock", daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError):
                conn.settimeout(_ASK_TIMEOUT)
                conn.sendall(self._about)

    def close(self) -> None:
        # shutdown wakes the accept() blocked in the answering thread.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=_ASK_TIMEOUT)

    def __enter__(self) -> TableLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
