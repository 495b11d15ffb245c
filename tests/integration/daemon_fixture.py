"""A running `knocknft run` in the server namespace, with its log captured, for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from knocknft.lab import Lab
from tests.integration.conftest import BIN

READY = "listening on NFLOG group"


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


class RunningDaemon:
    def __init__(
        self,
        lab: Lab,
        config: Path,
        log_path: Path,
        extra: tuple[str, ...] = (),
        *,
        env: Mapping[str, str] | None = None,  # added to this process's environment
        prefix: Sequence[str] = (),  # a command that runs knocknft, e.g. setpriv with its flags
        verbose: bool = True,
    ) -> None:
        self.lab = lab
        self.config = config
        self.log_path = log_path
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        # -v by default, for the detail a failing test needs; a flood test goes without, since
        # -v writes a line for every evicted attempt.
        flags = ("-v",) if verbose else ()
        self.proc = subprocess.Popen(
            lab.server.cmd(
                *prefix, str(BIN / "knocknft"), "run", "-c", str(config), *flags, *extra
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        self.wait_for(READY, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float = 5.0, count: int = 1) -> str:
        def alive() -> None:
            if self.proc.poll() is not None:
                raise AssertionError(f"knocknft run exited {self.proc.returncode}:\n{self.log()}")

        return wait_for_log(self.log_path, text, timeout, count, alive)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextmanager
def running(
    lab: Lab,
    config: Path,
    log_path: Path,
    extra: tuple[str, ...] = (),
    *,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    verbose: bool = True,
) -> Iterator[RunningDaemon]:
    daemon = RunningDaemon(lab, config, log_path, extra, env=env, prefix=prefix, verbose=verbose)
    try:
        yield daemon
    finally:
        daemon.stop()
