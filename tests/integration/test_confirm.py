"""`knocknft apply --confirm` against the real kernel: an unconfirmed change rolls itself back,
grants and all, even when the session that made it is gone; a confirmed one stays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from knocknft.admin.confirm import watcher_alive
from tests.integration.support import BIN, Server, kill_rollback_watcher, wait_for

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4

# Config A closes sessions, so the rollback also reloads a reject rule as nft lists it.
CONFIG = """\
options:
  state_dir: {state}
  interfaces: [eth0]
  always_allow: [198.51.100.0/24]
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [{services}]
    open_for: 1h
    close_sessions: {close}
"""


@pytest.fixture
def configs(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Config A (protects 22) and config B (protects 22 and 8080: it blocks the web server)."""
    state = tmp_path / "state"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(CONFIG.format(state=state, services="22/tcp", close="true"))
    b.write_text(CONFIG.format(state=state, services="22/tcp, 8080/tcp", close="false"))
    listeners = [Listener(lab.server, 22), Listener(lab.server, 8080)]
    yield a, b
    for listener in listeners:
        listener.close()
    kill_rollback_watcher(state)


def chain(server: Server) -> str:
    return server.nft("list", "chain", "inet", "knocknft", "input").stdout


def test_an_unconfirmed_apply_rolls_back_and_keeps_the_grants(
    lab: Lab, configs: tuple[Path, Path]
) -> None:
    a, b = configs
    server = Server(lab, a)
    server.knocknft("apply")
    server.knocknft("open", A, "--door", "ssh")
    before = chain(server)
    assert lab.client.tcp_reachable(SERVER, 8080)

    out = server.knocknft("apply", "--confirm", "3", "-c", str(b)).stdout
    assert "1 open grant(s) kept" in out
    assert "rolling back in 3s" in out and "unless `knocknft confirm` runs" in out
    assert not lab.client.tcp_reachable(SERVER, 8080), "config B blocks the web server"
    assert lab.client.tcp_reachable(SERVER, 22), "the grant survives the apply"
    refused = server.knocknft("apply", check=False)
    assert refused.returncode == 1 and "is pending" in refused.stderr

    wait_for("config A is back", lambda: chain(server) == before)
    assert lab.client.tcp_reachable(SERVER, 8080)
    assert lab.client.tcp_reachable(SERVER, 22), "the grant survives the rollback"
    assert [(g["address"], g["service"]) for g in server.status()] == [(A, "22/tcp")]
    log = (a.parent / "state" / "confirm.log").read_text()
    assert "not confirmed within 3s: table inet knocknft rolled back" in log
    late = server.knocknft("confirm", check=False)
    assert late.returncode == 1
    assert "nothing to confirm" in late.stderr and "rolled back" in late.stderr


def test_a_confirmed_apply_stays(lab: Lab, configs: tuple[Path, Path]) -> None:
    a, b = configs
    server = Server(lab, a)
    server.knocknft("apply")
    server.knocknft("apply", "--confirm", "2", "-c", str(b))
    marker = json.loads((a.parent / "state" / "confirm.json").read_text())
    out = server.knocknft("confirm").stdout
    assert out.startswith("confirmed: table inet knocknft stays as applied")
    wait_for("the watcher leaves", lambda: not watcher_alive(marker["watcher"]), timeout=3)
    time.sleep(1.5)  # past the deadline
    assert "8080" in chain(server)
    assert not lab.client.tcp_reachable(SERVER, 8080)
    again = server.knocknft("confirm", check=False)
    assert again.returncode == 1 and "nothing to confirm" in again.stderr


def test_confirm_with_nothing_pending_exits_1(lab: Lab, configs: tuple[Path, Path]) -> None:
    result = Server(lab, configs[0]).knocknft("confirm", check=False)
    assert result.returncode == 1
    assert (
        result.stderr == "knocknft: nothing to confirm: no `knocknft apply --confirm` is pending\n"
    )


def test_the_rollback_outlives_the_session_that_applied(
    lab: Lab, configs: tuple[Path, Path]
) -> None:
    """The SSH session dies right after the apply: its whole process group and session are
    killed. The watcher is in a session of its own and rolls back all the same."""
    a, b = configs
    server = Server(lab, a)
    server.knocknft("apply")
    session = subprocess.Popen(
        lab.server.cmd(
            "bash", "-c", f"{BIN / 'knocknft'} apply --confirm 2 -c {b}; echo exit $?; sleep 60"
        ),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert session.stdout is not None
        lines: list[str] = []
        for line in session.stdout:
            lines.append(line)
            if line.startswith("exit "):
                break
        assert lines[-1] == "exit 0\n", lines
    finally:
        os.killpg(session.pid, signal.SIGHUP)
        os.killpg(session.pid, signal.SIGKILL)
        session.wait()
    assert "8080" in chain(server)
    wait_for("config A is back", lambda: "8080" not in chain(server))


def test_with_no_table_before_the_rollback_deletes_ours(
    lab: Lab, configs: tuple[Path, Path]
) -> None:
    server = Server(lab, configs[1])
    out = server.knocknft("apply", "--confirm", "1").stdout
    assert "there was no table inet knocknft before, so the rollback DELETES it" in out
    wait_for("no table", lambda: "knocknft" not in server.nft("list", "tables").stdout)
