"""Configs and samples the unit tests share: test modules import from here (and from fakes.py),
never from each other."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import cast

import pytest

from knocknft.config import Config, parse_config
from knocknft.daemon.executor import Daemon
from knocknft.daemon.hooks import source_stats
from knocknft.daemon.stats import DaemonStats
from knocknft.daemon.stops import PendingStops
from knocknft.errors import ConfigError, Problem
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import RecordingRunner

# A config with every usual part of one door.
GOOD = """\
options:
  nflog_group: 9
  interfaces: [eth0, wg*]
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000]
    seq_timeout: 5s
    tcpflags: syn,!ack
    open: [22/tcp]
    open_for: 30s
"""

# Two doors: one opens 22/tcp, the reversed sequence closes it again.
CLOSING = """\
doors:
  openSSH:
    sequence: [2000/tcp, 3000/udp, 4000/tcp]
    open: [22/tcp]
    open_for: 1h
  closeSSH:
    sequence: [4000/tcp, 3000/udp, 2000/tcp]
    close: [22/tcp]
"""


def errors_of(text: str) -> list[Problem]:
    """Every problem `check` finds in a config text (dedented), file cfg.yaml."""
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "cfg.yaml")
    return info.value.problems


def only_error(text: str) -> Problem:
    problems = errors_of(text)
    assert len(problems) == 1, problems
    return problems[0]


NOW = 1_700_000_000.0


def sample_stats(pid: int = 4321, updated: float = NOW - 2, **values: int) -> DaemonStats:
    """What a daemon running GOOD writes to stats.json, with pid, times and values as given."""
    daemon = Daemon(
        parse_config(GOOD).config,
        FakeNft(),
        RecordingRunner(),
        PendingStops(None),
        clock=lambda: updated,
    )
    stats = daemon.stats(source_stats(NflogCounters(), None))
    unknown = set(values) - set(stats)
    assert not unknown, f"not in stats.json: {unknown}"
    # Only keys of DaemonStats, checked just above, and all of them ints.
    return cast(DaemonStats, {**stats, "pid": pid, "started": updated - 3725, **values})


def with_state_dir(config: Config, state_dir: Path) -> Config:
    """`config` keeping its state in `state_dir`: a unit test never writes the host's
    /var/lib/knocknft (tests/unit/conftest.py fails one that does)."""
    options = dataclasses.replace(config.options, state_dir=state_dir)
    return dataclasses.replace(config, options=options)
