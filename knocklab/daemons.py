"""Programs under test inside a lab namespace: knocknft's daemon (the tests' and benchmarks'
wrappers build on `LabDaemon`) and Debian's knockd, the peer knocknft is compared with; and what
the tests read from them (their logs, their memory).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from knocklab.lab import Host

# Debian's knockd, the daemon knocknft replaces: the peer the tests and benchmarks compare with.
KNOCKD = Path("/usr/sbin/knockd")


def wait_for_log(
    path: Path,
    text: str,
    timeout: float = 5.0,
    count: int = 1,
    check: Callable[[], None] = lambda: None,
) -> str:
    """Poll a log file until `text` is in it `count` times; `check` raises if waiting is futile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text() if path.exists() else ""
        if log.count(text) >= count:
            return log
        check()
        time.sleep(0.02)
    log = path.read_text() if path.exists() else "(no log file)"
    raise AssertionError(f"{text!r} (x{count}) not in {path} after {timeout}s:\n{log}")


class LabDaemon:
    """A long-running program inside one of the lab's namespaces, its stdout and stderr appended
    to `log_path`. Ready once `ready` is logged; stopped with SIGTERM (SIGKILL if it lingers) by
    `stop` or on leaving a `with` block. A daemon that fails to get ready is stopped too: a
    process left behind would keep its namespace alive after the lab is deleted. `cpu` pins it
    to one CPU (the benchmarks give the daemon a core of its own); `env` is added to this
    process's environment; `name` is how failures call it (argv[0]'s name by default)."""

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        log_path: Path,
        ready: str,
        *,
        timeout: float = 10.0,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.host = host
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            host.cmd(*pinned, *argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        try:
            self.wait_for(ready, timeout=timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @property
    def pid(self) -> int:
        # `ip netns exec` (and `taskset`) exec the program: the Popen pid is the daemon itself.
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float = 5.0, count: int = 1) -> str:
        def alive() -> None:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")

        return wait_for_log(self.log_path, text, timeout, count, alive)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LabDaemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_knockd(
    host: Host, config: Path, log_path: Path, verbose: bool = True, cpu: int | None = None
) -> LabDaemon:
    """Debian's knockd on `host`'s lab interface. -v makes it log every stage and OPEN SESAME
    to stdout, flushed line by line, and "listening on IFACE..." once its pcap filter is set.
    Without -v, `config` must have `LogFile = log_path`: knockd logs "starting up, listening on
    IFACE" there instead, and every stage too (as it does in production)."""
    return LabDaemon(
        host,
        [str(KNOCKD), "-i", host.ifname, "-c", str(config), *(["-v"] if verbose else [])],
        log_path,
        f"listening on {host.ifname}",
        cpu=cpu,
    )


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS): what a flood costs the daemon."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS in /proc/{pid}/status")
