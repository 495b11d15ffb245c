"""knockd's command line on the real daemon: -d with its pidfile, -4, -g and -l, in namespaces."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from knocklab.daemons import wait_for_log
from knocklab.lab import Lab, Listener
from tests.integration.support import BIN, READY, RIGHT, config_text, running, write_config

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A = Lab.CLIENT_V4


def _gone(pid: int) -> bool:
    """Exited: no process, or a zombie nobody reaped yet (a container's pid 1 may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextlib.contextmanager
def killed_at_exit(pid_file: Path) -> Iterator[None]:
    """If a test fails half-way, stop the daemon it detached (found by its own pidfile)."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_daemon_mode_detaches_writes_the_pidfile_and_stops_by_it(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    pid_file, log = tmp_path / "run" / "knocknft.pid", tmp_path / "knocknft.log"
    with killed_at_exit(pid_file):
        result = lab.server.run(
            str(BIN / "knocknft"), "run", "-d", "-c", str(cfg), "-p", str(pid_file), "-g",
            str(log), check=False, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert READY in log.read_text(), "the parent returns only once the daemon listens"
        assert result.stdout == "" and "warning" not in result.stderr
        pid = int(pid_file.read_text())
        assert not _gone(pid)
        assert os.getsid(pid) not in (os.getsid(0), pid), "own session, not its leader"
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"

        lab.client.knock(SERVER, *RIGHT)
        wait_for_log(log, f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22)

        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        wait_for_log(log, "stopped; NFLOG group")
        deadline = time.monotonic() + 5
        while pid_file.exists() or not _gone(pid):
            assert time.monotonic() < deadline, "the daemon should exit and remove its pidfile"
            time.sleep(0.02)


def test_daemon_mode_reports_a_failure_after_detaching(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """The NFLOG group is taken by a running daemon: the second one fails after it forked, and
    its parent says why and exits 1 instead of pretending success as knockd does."""
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    pid_file = tmp_path / "second.pid"
    with running(lab, cfg, tmp_path / "first.log"), killed_at_exit(pid_file):
        result = lab.server.run(
            str(BIN / "knocknft"), "run", "-d", "-c", str(cfg), "-p", str(pid_file),
            check=False, timeout=30,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "knocknft: " in result.stderr and "group 7" in result.stderr, result.stderr
        assert not pid_file.exists(), "a daemon that failed leaves no pidfile"


def test_a_second_daemon_on_a_live_pidfile_is_refused(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    pid_file = tmp_path / "knocknft.pid"
    with running(lab, cfg, tmp_path / "first.log") as first:
        pid_file.write_text(f"{first.proc.pid}\n")  # `ip netns exec` execs knocknft: same pid
        result = lab.server.run(
            str(BIN / "knocknft"), "run", "-d", "-c", str(cfg), "-p", str(pid_file), check=False
        )
        assert result.returncode == 1
        assert f"already running as pid {first.proc.pid}" in result.stderr


def test_only_ipv4_ignores_an_ipv6_knock(lab: Lab, tmp_path: Path, ssh_listener: Listener) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state))
    with running(lab, cfg, tmp_path / "daemon.log", ("-4",)) as daemon:
        lab.client.knock(SERVER6, *RIGHT)
        lab.client.knock(SERVER, *RIGHT)  # queued behind the IPv6 knocks
        log = daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert Lab.CLIENT_V6 not in log
        assert not lab.client.tcp_reachable(SERVER6, 22)
        assert lab.client.tcp_reachable(SERVER, 22)
    assert json.loads((state / "stats.json").read_text())["ipv6_ignored"] == 3


def test_logfile_flag_writes_the_log_there(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    log = tmp_path / "logs" / "knocknft.log"
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "stderr.log", ("-g", str(log))):
        lab.client.knock(SERVER, *RIGHT)
        text = wait_for_log(log, f"{A}: ssh: OPEN SESAME")
    assert READY in text
    assert text.startswith("["), "file lines carry a timestamp"


def test_lookup_does_not_delay_or_break_knocks(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """198.18.x names resolve nowhere: lines keep the bare address, and the door opens at once."""
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log", ("-l",)) as daemon:
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME", timeout=1.5)
        assert lab.client.tcp_reachable(SERVER, 22)
        lab.client.knock(SERVER6, *RIGHT)
        daemon.wait_for(f"{Lab.CLIENT_V6}: ssh: OPEN SESAME", timeout=1.5)
