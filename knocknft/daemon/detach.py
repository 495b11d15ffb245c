"""Becoming a background daemon (`knocknft run -d`, knockd's --daemon) and its pidfile.

knockd calls daemon(3) and writes its pidfile afterwards: its parent exits 0 before the child
has opened anything, so an init script reports success for a daemon that dies a moment later.
Here the parent waits on a pipe until the daemon says it is listening, and exits 1 with the
daemon's own error message if it does not: `knocknft run -d && echo up` means it is up.

The usual double fork: the first child calls setsid() (no controlling terminal, own session) and
forks again, so the daemon is not a session leader and can never acquire a terminal; the daemon
runs from / with stdin, stdout and stderr on /dev/null. Fork before any thread is started (the
command runner's pool, the lookup thread): only the forking thread survives a fork.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path

from knocknft.errors import KnocknftError
from knocknft.files import DamagedFile, read_state, write_atomic

DEFAULT_PID_FILE = Path("/run/knocknft.pid")
READY_TIMEOUT = 60.0
_READY = b"ready\n"
# A pidfile is one line of digits; more is not a pidfile.
_PID_FILE_LIMIT = 64
# The kernel's largest pid (PID_MAX_LIMIT on 64-bit): a bigger number names no process.
_PID_MAX = 1 << 22


class DaemonFailed(KnocknftError):
    """The background daemon could not start; the message is its own."""


class AlreadyRunning(KnocknftError):
    """The pidfile names a knocknft that is still running."""


class Readiness:
    """The daemon's end of the pipe to the waiting parent, and the owner of the pidfile."""

    def __init__(self, fd: int, pid_file: Path) -> None:
        self._fd: int | None = fd
        self.pid_file = pid_file

    def ready(self) -> None:
        """Tell the parent we are listening; it exits 0."""
        self._send(_READY)

    def failed(self, message: str) -> None:
        """Tell the parent why we could not start (no-op once ready); it exits 1."""
        self._send(message.encode("utf-8", "replace") or b"failed")

    def _send(self, data: bytes) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # the parent may have been killed meanwhile
            os.write(self._fd, data)
        os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        """On exit: release the parent (if still waiting) and remove our pidfile."""
        self.failed("the daemon exited before it was ready")
        remove_pid_file(self.pid_file)


def detach(pid_file: Path, timeout: float = READY_TIMEOUT) -> Readiness | None:
    """Fork into the background. Returns the daemon's Readiness in the daemon; in the original
    process returns None once the daemon is ready, or raises DaemonFailed.
    """
    check_not_running(pid_file)
    read_end, write_end = os.pipe()
    if not fork_detached():
        os.close(write_end)
        _wait_ready(read_end, timeout)
        return None
    try:
        os.close(read_end)
        readiness = Readiness(write_end, pid_file)
        try:
            write_pid_file(pid_file)
        except OSError as exc:
            readiness.failed(f"cannot write the pidfile {pid_file}: {exc.strerror or exc}")
            os._exit(1)
        return readiness
    except BaseException:
        # Never let a child fall back into the caller's code path as if it were the parent.
        os._exit(1)


def fork_detached() -> bool:
    """The double fork. False in the calling process, once the middle process has exited; True
    in the detached one: in a session of its own whose leader has exited (so it can never get a
    controlling terminal), a child of init's, running from / with stdio on /dev/null.
    """
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the middle process exits at once; reap it
        return False
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        return True
    except BaseException:
        os._exit(1)


def read_until_closed(fd: int, timeout: float) -> bytes | None:
    """All that arrives on a pipe until the writer closes it; None if that takes too long."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return data
            data += chunk
    finally:
        os.close(fd)


def _wait_ready(fd: int, timeout: float) -> None:
    data = read_until_closed(fd, timeout)
    if data is None:
        raise DaemonFailed(f"the daemon did not report ready within {timeout:g}s")
    if data != _READY:
        raise DaemonFailed(data.decode("utf-8", "replace").strip() or "the daemon died at start")


def write_pid_file(path: Path) -> None:
    """Write our pid atomically, so a reader never sees a half-written file. A pid is no secret:
    readable by all, as pidfiles are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, f"{os.getpid()}\n", new_mode=0o644)


def read_pid_file(path: Path) -> int | None:
    """The pid in `path`, or None when there is none to trust: the file is absent, a symbolic
    link (never followed: root would act on whatever file it names), a FIFO or device (which
    would block the read or never end it), longer than a pid's line, or not a pid the kernel
    could have given."""
    try:
        data = read_state(path, _PID_FILE_LIMIT)
    except (OSError, DamagedFile):
        return None
    text = data.strip()
    if not (text.isdigit() and text.isascii()):
        return None
    pid = int(text)
    return pid if 0 < pid <= _PID_MAX else None


def remove_pid_file(path: Path) -> None:
    """Remove the pidfile if it is still ours (a newer instance may have taken the name)."""
    if read_pid_file(path) == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def check_not_running(path: Path) -> None:
    """Refuse to start over a live knocknft; a stale pidfile (crash, reboot) is simply replaced.

    A pid is reused by unrelated processes after a while, so only a process whose command line
    names knocknft counts as running.
    """
    pid = read_pid_file(path)
    if pid is None or pid == os.getpid():
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"knocknft" in cmdline:
        raise AlreadyRunning(f"already running as pid {pid} (pidfile {path})")
