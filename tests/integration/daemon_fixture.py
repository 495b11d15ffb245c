"""A running `knocknft run` in the server namespace, with its log captured, for the tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from knocklab.lab import Lab, LabDaemon, wait_for_log
from tests.integration.conftest import BIN

__all__ = ["READY", "RunningDaemon", "running", "wait_for_log"]

READY = "listening on NFLOG group"


class RunningDaemon(LabDaemon):
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
        # -v by default, for the detail a failing test needs; a flood test goes without, since
        # -v writes a line for every evicted attempt.
        flags = ("-v",) if verbose else ()
        super().__init__(
            lab.server,
            [*prefix, str(BIN / "knocknft"), "run", "-c", str(config), *flags, *extra],
            log_path,
            READY,
            env=env,
            name="knocknft run",
        )


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
