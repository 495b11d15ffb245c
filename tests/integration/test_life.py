"""The daemon's life cycle against the real kernel: one daemon per table (a second one changes
nothing), `apply` refused under a running daemon, reloads that change the table or fail in any way
keep the door working, slow metrics clients hold up no scrape, and one-time files fail closed.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    BIN,
    RIGHT,
    Server,
    config_text,
    running,
    scrape,
    write_config,
)

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4


def table_listing(lab: Lab, table: str = "knocknft") -> str:
    """The table as nft lists it, set elements left out (their timeouts tick)."""
    text = lab.server.run("nft", "-t", "list", "table", "inet", table).stdout
    return text


def second_run(lab: Lab, config: Path) -> subprocess.CompletedProcess[str]:
    return lab.server.run(str(BIN / "knocknft"), "run", "-c", str(config), check=False)


@pytest.mark.parametrize("group", ["7", "11"], ids=["same group", "other group"])
def test_a_second_daemon_for_the_table_changes_nothing(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, group: str
) -> None:
    first_cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    other = tmp_path / "other"
    other.mkdir()
    # Another config: no interfaces (so 22/tcp guarded everywhere), another sequence, the group.
    text = config_text(tmp_path / "state2").replace("[7000/tcp, 9000/udp, 8000/tcp]", "[1/tcp]")
    second_cfg = write_config(
        other, text.replace("options:\n", f"options:\n  nflog_group: {group}\n")
    )
    with running(lab, first_cfg, tmp_path / "daemon.log") as first:
        before = table_listing(lab)
        result = second_run(lab, second_cfg)
        assert result.returncode == 1, result.stdout + result.stderr
        assert (
            f"table inet knocknft is already run by knocknft daemon pid {first.pid} "
            f"(config {first_cfg}, NFLOG group 7)" in result.stderr
        )
        assert table_listing(lab) == before, "the second daemon touched nothing"
        assert not lab.client.tcp_reachable(SERVER, 22)
        lab.client.knock(SERVER, *RIGHT)
        first.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22), "the first daemon still opens"


def test_a_daemon_whose_group_is_taken_stops_before_the_table(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    # Same group, another table: the lock is free, the group is not: nothing may be loaded.
    first_cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    other = tmp_path / "other"
    other.mkdir()
    text = config_text(tmp_path / "state2").replace("options:\n", "options:\n  table: second\n")
    with running(lab, first_cfg, tmp_path / "daemon.log") as first:
        result = second_run(lab, write_config(other, text))
        assert result.returncode == 1 and "NFLOG group 7" in result.stderr, result.stderr
        assert "second" not in lab.server.run("nft", "list", "tables").stdout
        lab.client.knock(SERVER, *RIGHT)
        first.wait_for(f"{A}: ssh: OPEN SESAME")


def test_apply_is_refused_while_a_daemon_runs_the_table(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    server = Server(lab, cfg, tmp_path / "state")
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        before = table_listing(lab)
        result = server.knocknft("apply", check=False)
        assert result.returncode == 1
        assert f"already run by knocknft daemon pid {daemon.pid}" in result.stderr
        assert f"kill -HUP {daemon.pid}" in result.stderr
        assert table_listing(lab) == before
    assert server.knocknft("apply").returncode == 0, "with the daemon stopped, apply works"


def test_a_reload_that_changes_the_table_keeps_the_running_one(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        cfg.write_text(cfg.read_text().replace("options:\n", "options:\n  table: renamed\n"))
        daemon.send(signal.SIGHUP)
        daemon.wait_for("options.table changed: it takes effect when the daemon restarts")
        daemon.wait_for("reloaded: 1 door(s)")
        assert "renamed" not in lab.server.run("nft", "list", "tables").stdout
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22), "the grant went where the drop is"


@pytest.mark.parametrize(
    "bad",
    [
        b"doors:\n  x: " + b"[" * 20000 + b"]" * 20000 + b"\n",
        b"options:\n  nflog_group: 7\n\xff\xfe doors:\n",
        b"- " * 5000,
    ],
    ids=["nested deep", "not utf-8", "list of lists"],
)
def test_a_failed_reload_keeps_the_daemon_and_the_old_sequence(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, bad: bytes
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        cfg.write_bytes(bad)
        daemon.send(signal.SIGHUP)
        daemon.wait_for("still running the previous config")
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22)
        assert daemon.proc.poll() is None
        assert "Traceback" not in daemon.log()


def test_slow_metrics_clients_hold_up_no_scrape(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    listen = "127.0.0.1:9641"
    text = config_text(tmp_path / "state").replace(
        "options:\n", f"options:\n  metrics: '{listen}'\n"
    )
    cfg = write_config(tmp_path, text)
    with running(lab, cfg, tmp_path / "daemon.log"):
        slow: list[socket.socket] = []
        try:
            for _ in range(5):
                sock = lab.server.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.connect(("127.0.0.1", 9641))
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
                slow.append(sock)
            started = time.monotonic()
            deadline = started + 7  # past the 5 s per-request deadline
            while time.monotonic() < deadline:
                for sock in slow:  # a byte each, well within any per-read limit
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
                t0 = time.monotonic()
                assert scrape(lab, listen).status == 200
                assert time.monotonic() - t0 < 1.0, "a scrape waited for slow clients"
                time.sleep(0.5)
            # Each dribbler was cut off at its deadline, whatever it kept sending.
            for sock in slow:
                sock.settimeout(2)
                assert sock.recv(100) == b""
        finally:
            for sock in slow:
                sock.close()


def test_a_one_time_file_swapped_for_a_link_is_never_written_through(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    otp = tmp_path / "ssh.otp"
    otp.write_text("7000,9000:udp,8000\n7100,9100:udp,8100\n")
    otp.chmod(0o600)
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    text = config_text(tmp_path / "state").replace(
        "    sequence: [7000/tcp, 9000/udp, 8000/tcp]\n", f"    one_time_sequences: {otp}\n"
    )
    cfg = write_config(tmp_path, text)
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        otp.unlink()
        otp.symlink_to(target)
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for("ssh: cannot mark line 1")
        assert target.read_text() == "root:x:0:0\n"
        assert not lab.client.tcp_reachable(SERVER, 22), "no mark on disk, no grant"
        daemon.send(signal.SIGHUP)
        log = daemon.wait_for("still running the previous config")
        assert "root:x" not in log and "symbolic link" in log
        assert daemon.proc.poll() is None
