"""The daemon's counters as `status --stats` reads them: running, stale, stopped or absent, and
every value the daemon writes has a meaning to show."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_FAILURE
from knocknft.daemon.stats import STALE_AFTER, STATS, STATS_FILE, format_status, judge, read_status
from tests.unit.support import NOW, sample_stats

runner = CliRunner()


def test_every_value_the_daemon_writes_is_explained() -> None:
    written = set(sample_stats()) - {"pid", "version"}
    assert written == {s.key for s in STATS}
    names = [s.metric_name for s in STATS]
    assert len(set(names)) == len(names)
    assert all(
        n.endswith("_total") for s, n in zip(STATS, names, strict=True) if s.kind == "counter"
    )


def test_a_live_pid_with_fresh_stats_is_running() -> None:
    status = judge(sample_stats(knocks=12), Path("s.json"), NOW, alive=lambda pid: True)
    assert status.running and status.state == "running" and status.age == 2
    text = format_status(status)
    assert text.startswith("knocknft daemon: running: pid 4321\n")
    assert "up 1h02m05s when these were taken, 2s ago (s.json)" in text
    assert "  knocks" in text and "12  Knock packets judged by the engine." in text
    assert "evictions" in text and "nflog_lost" in text and "commands_failed" in text


def test_a_dead_pid_is_not_running_and_its_last_values_still_show() -> None:
    status = judge(sample_stats(), Path("s.json"), NOW, alive=lambda pid: False)
    assert status.state == "stopped" and not status.running
    text = format_status(status)
    assert text.startswith("knocknft daemon: NOT RUNNING: the daemon (pid 4321) is not running")
    assert "attempts_cap" in text


def test_stats_not_written_for_too_long_are_stale() -> None:
    old = sample_stats(updated=NOW - STALE_AFTER - 1)
    status = judge(old, Path("s.json"), NOW, alive=lambda pid: True)
    assert status.state == "stale" and not status.running
    assert "16s old" in status.reason and "stuck" in status.reason


def test_no_stats_file_says_where_it_looked(tmp_path: Path) -> None:
    status = read_status(tmp_path)
    assert status.state == "absent" and status.stats is None
    assert str(tmp_path / STATS_FILE) in format_status(status)


def write(tmp_path: Path, stats: Mapping[str, object]) -> None:
    (tmp_path / STATS_FILE).write_text(json.dumps(stats))


def test_cli_running_exits_0_and_json_is_stable(tmp_path: Path) -> None:
    write(tmp_path, sample_stats(pid=os.getpid(), updated=time.time(), opens=3))
    result = runner.invoke(app, ["status", "--stats", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "knocknft daemon: running" in result.stdout and "opens" in result.stdout
    result = runner.invoke(app, ["status", "--stats", "--json", "--state-dir", str(tmp_path)])
    data = json.loads(result.stdout)
    assert set(data) == {"state", "running", "reason", "path", "age", "stats"}
    assert data["state"] == "running" and data["stats"]["opens"] == 3


def test_cli_exits_1_when_the_daemon_is_gone(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])  # a pid that has exited, and been reaped
    child.wait()
    write(tmp_path, sample_stats(pid=child.pid))
    result = runner.invoke(app, ["status", "--stats", "--state-dir", str(tmp_path)])
    assert result.exit_code == EXIT_FAILURE
    assert "NOT RUNNING" in result.stdout
    result = runner.invoke(app, ["status", "--stats", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == EXIT_FAILURE and "has not run with this state_dir" in result.stdout
