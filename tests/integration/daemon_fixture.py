"""A running `knocknft run` in the server namespace, with its log captured, for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from knocknft.lab import Lab, LabDaemon, wait_for_log
from tests.integration.conftest import BIN

__all__ = ["READY", "RunningDaemon", "running", "wait_for_log"]

READY = "listening on NFLOG group"


class RunningDaemon(LabDaemon):
    def __init__(self, lab: Lab, config: Path, log_path: Path, extra: tuple[str, ...] = ()) -> None:
        self.lab = lab
        self.config = config
        super().__init__(
            lab.server,
            [str(BIN / "knocknft"), "run", "-c", str(config), "-v", *extra],
            log_path,
            READY,
        )


@contextmanager
def running(
    lab: Lab, config: Path, log_path: Path, extra: tuple[str, ...] = ()
) -> Iterator[RunningDaemon]:
    daemon = RunningDaemon(lab, config, log_path, extra)
    try:
        yield daemon
    finally:
        daemon.stop()
