"""The daemon against the real kernel: real knocks cross a veth pair, NFLOG delivers them, the
engine judges them, and the protected port really opens (and closes again) for the knocker only.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    BIN,
    COMMANDS,
    RIGHT,
    RunningDaemon,
    config_text,
    running,
    write_config,
)

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A = Lab.CLIENT_V4
B = "198.18.0.3"


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path, ssh_listener: Listener) -> Iterator[RunningDaemon]:
    lab.client.add_address(B)
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as the_daemon:
        yield the_daemon


def test_knock_opens_for_that_client_only_and_closes_after_open_for(daemon: RunningDaemon) -> None:
    client = daemon.lab.client
    assert not client.tcp_reachable(SERVER, 22, source=A)
    client.knock(SERVER, *RIGHT, source=A)
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    assert client.tcp_reachable(SERVER, 22, source=A)
    assert not client.tcp_reachable(SERVER, 22, source=B), "only the knocker gets in"
    log = daemon.log()
    for line in (f"{A}: ssh: Stage 1", f"{A}: ssh: Stage 2", f"{A}: ssh: Stage 3"):
        assert line in log
    time.sleep(3.2)
    assert not client.tcp_reachable(SERVER, 22, source=A), "the grant expires by itself"


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("wrong order", ("7000", "8000", "9000/udp")),
        ("wrong protocol", ("7000", "9000/tcp", "8000")),
        ("wrong knock port in the middle", ("7000", "9000/udp", "9000/udp", "8000")),
        ("incomplete", ("7000", "9000/udp")),
    ],
)
def test_wrong_knocks_do_not_open(daemon: RunningDaemon, name: str, steps: tuple[str, ...]) -> None:
    client = daemon.lab.client
    client.knock(SERVER, *steps, source=A)
    daemon.wait_for(f"{A}: ssh: Stage 1")
    time.sleep(0.2)
    assert "OPEN SESAME" not in daemon.log()
    assert not client.tcp_reachable(SERVER, 22, source=A)


def test_a_port_in_no_door_does_not_reset(daemon: RunningDaemon) -> None:
    """As in knockd: only knock ports reach the daemon; other traffic cannot break a sequence."""
    client = daemon.lab.client
    client.knock(SERVER, "7000", "9000/udp", "7001", "8000", source=A)
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")


def test_too_slow_times_out(daemon: RunningDaemon) -> None:
    client = daemon.lab.client
    client.knock(SERVER, *RIGHT, source=A, delay=1.1)
    log = daemon.wait_for(f"{A}: ssh: sequence timeout (stage 2)", timeout=5)
    assert "OPEN SESAME" not in log
    assert not client.tcp_reachable(SERVER, 22, source=A)


def test_wrong_tcp_flags_are_ignored(daemon: RunningDaemon) -> None:
    """tcpflags syn,!ack: a SYN+ACK to a knock port neither advances nor breaks the sequence."""
    client = daemon.lab.client
    client.send_tcp(SERVER, 7000, 0x12, source=A)  # SYN+ACK on the first step: ignored
    time.sleep(0.2)
    assert "Stage 1" not in daemon.log()
    client.knock(SERVER, "7000", "9000/udp", source=A)
    client.send_tcp(SERVER, 8000, 0x12, source=A)  # ignored, does not reset
    client.knock(SERVER, "8000", source=A)
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    assert client.tcp_reachable(SERVER, 22, source=A)


def test_two_clients_interleaved_both_get_in(daemon: RunningDaemon) -> None:
    client = daemon.lab.client
    for step in RIGHT:
        client.knock(SERVER, step, source=A)
        client.knock(SERVER, step, source=B)
    daemon.wait_for(f"{B}: ssh: OPEN SESAME")
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    assert client.tcp_reachable(SERVER, 22, source=A)
    assert client.tcp_reachable(SERVER, 22, source=B)


def test_ipv6_knock(daemon: RunningDaemon) -> None:
    client = daemon.lab.client
    assert not client.tcp_reachable(SERVER6, 22)
    client.knock(SERVER6, *RIGHT)
    daemon.wait_for(f"{Lab.CLIENT_V6}: ssh: OPEN SESAME")
    assert client.tcp_reachable(SERVER6, 22)
    assert not client.tcp_reachable(SERVER, 22), "the IPv6 knock grants IPv6 only"


def test_bundled_knock_client_opens(daemon: RunningDaemon) -> None:
    client = daemon.lab.client
    out = client.run(str(BIN / "knock"), "-v", SERVER, "7000", "9000:udp", "8000").stdout
    assert out.splitlines() == [
        f"hitting tcp {SERVER}:7000",
        f"hitting udp {SERVER}:9000",
        f"hitting tcp {SERVER}:8000",
    ]
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    assert client.tcp_reachable(SERVER, 22)


def test_commands_run_with_the_knockers_address(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    out = tmp_path / "commands.out"
    cfg = write_config(tmp_path, config_text(tmp_path / "state", COMMANDS.format(out=out)))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        lab.client.knock(SERVER6, *RIGHT)
        daemon.wait_for("ssh: running command: echo start 2001:db8::2")
        daemon.wait_for(f"{Lab.CLIENT_V6}: ssh: command timeout", timeout=5)
        daemon.wait_for("ssh: running command: echo stop 2001:db8::2")
        daemon.wait_for("ssh: command exited 0", count=2)
    assert out.read_text() == "start 2001:db8::2\nstop 2001:db8::2\n"


def test_knocking_again_while_open_refreshes_without_rerunning_start(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    out = tmp_path / "commands.out"
    cfg = write_config(tmp_path, config_text(tmp_path / "state", COMMANDS.format(out=out)))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME", count=2)
        daemon.wait_for(f"{A}: ssh: still open")
        daemon.wait_for("ssh: command exited 0", count=2, timeout=6)
    assert out.read_text() == "start 198.18.0.2\nstop 198.18.0.2\n"


CLOSING_DOOR = """\
  closessh:
    sequence: [8000/tcp, 9000/udp, 7000/tcp]
    seq_timeout: 2s
    close: [22/tcp]
"""


def test_a_closing_door_shuts_the_knockers_grant_before_it_expires(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """knockd's openSSH/closeSSH pair, natively: the second door revokes what the first granted."""
    lab.client.add_address(B)
    cfg = write_config(tmp_path, config_text(tmp_path / "state", CLOSING_DOOR, open_for="1h"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        for source in (A, B):
            lab.client.knock(SERVER, *RIGHT, source=source)
            daemon.wait_for(f"{source}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22, source=A)
        lab.client.knock(SERVER, "8000", "9000/udp", "7000", source=A)
        daemon.wait_for(f"{A}: closessh: closed 22/tcp")
        assert not lab.client.tcp_reachable(SERVER, 22, source=A)
        assert lab.client.tcp_reachable(SERVER, 22, source=B), "only the closer's grant goes"


def test_sighup_with_a_bad_config_keeps_the_daemon_running(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        cfg.write_text(cfg.read_text().replace("8000/tcp]", "70000/tcp]"))
        daemon.send(signal.SIGHUP)
        log = daemon.wait_for("reload failed, still running the previous config")
        assert "70000" in log
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22)
        # A good config is then taken: the new sequence works.
        cfg.write_text(
            config_text(tmp_path / "state").replace(
                "[7000/tcp, 9000/udp, 8000/tcp]", "[6000/udp, 6100/tcp, 6200/udp]"
            )
        )
        daemon.send(signal.SIGHUP)
        daemon.wait_for("reloaded: 1 door(s)")
        lab.client.knock(SERVER6, "6000/udp", "6100", "6200/udp")
        daemon.wait_for(f"{Lab.CLIENT_V6}: ssh: OPEN SESAME")
        assert daemon.proc.poll() is None


def test_a_reload_that_moves_the_nflog_group_keeps_knocks_coming(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    # The socket stays bound to the group it started on; were the table to log to the new one,
    # the daemon would go deaf until restarted.
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        cfg.write_text(cfg.read_text().replace("options:\n", "options:\n  nflog_group: 9\n"))
        daemon.send(signal.SIGHUP)
        daemon.wait_for("options.nflog_group changed: it takes effect when the daemon restarts")
        daemon.wait_for("reloaded: 1 door(s)")
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22)


def test_sigkill_and_restart_keeps_grants_and_runs_overdue_stops_once(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    out = tmp_path / "commands.out"
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state, COMMANDS.format(out=out), open_for="1m"))
    first = RunningDaemon(lab, cfg, tmp_path / "daemon.log")
    try:
        lab.client.knock(SERVER, *RIGHT)
        first.wait_for("ssh: command exited 0")
        journal = (state / "pending-stops.jsonl").read_text().splitlines()
        # (door, address, due) only: the command comes from the config when it falls due.
        assert [json.loads(line)[::2] for line in journal] == [["S", A]]
    finally:
        first.stop(signal.SIGKILL)
    time.sleep(2.2)  # the stop command falls due while no daemon runs
    assert lab.client.tcp_reachable(SERVER, 22), "the grant outlives the daemon"
    with running(lab, cfg, tmp_path / "daemon2.log") as second:
        second.wait_for("command timeout (overdue from before a restart)")
        second.wait_for("ssh: command exited 0")
        assert "open grant(s) kept" in second.log() and "1 open grant(s) kept" in second.log()
        assert lab.client.tcp_reachable(SERVER, 22)
    with running(lab, cfg, tmp_path / "daemon3.log") as third:
        time.sleep(0.3)
        assert "overdue" not in third.log()
    assert out.read_text() == f"start {A}\nstop {A}\n", "the stop command ran exactly once"


def test_a_knockd_conf_runs_unchanged(lab: Lab, tmp_path: Path, ssh_listener: Listener) -> None:
    """`knocknft run -c knockd.conf`: knockd's commands are the effect; knocks are still dropped."""
    out = tmp_path / "commands.out"
    conf = tmp_path / "knockd.conf"
    conf.write_text(
        "[options]\n\tInterface = eth0\n\n[openSSH]\n\tsequence = 7000,8000:udp,9000\n"
        "\tseq_timeout = 5\n\ttcpflags = syn\n"
        f"\tcommand = echo open %IP% >> {out}\n"
    )
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = lab.server.popen(
            str(BIN / "knocknft"),
            "run",
            "-c",
            str(conf),
            "--state-dir",
            str(tmp_path / "state"),
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 10
        while "listening on NFLOG group" not in log_path.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
        lab.client.knock(SERVER, "7000", "8000/udp", "9000")
        deadline = time.monotonic() + 5
        while not out.exists() or "open" not in out.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert out.read_text() == f"open {A}\n"
        text = log_path.read_text()
        assert f"{A}: openSSH: OPEN SESAME" in text and "granted" not in text
        rules = lab.server.run("nft", "list", "table", "inet", "knocknft").stdout
        assert "tcp . 7000" in rules and "log group 7" in rules
        assert "elements" not in rules, "no native grant from a knockd.conf"
        assert "protected" not in rules, "knockd's own commands decide what opens"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
