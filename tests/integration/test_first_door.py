"""The README's "A first door", step by step against the real kernel: the table goes in on
probation (`apply --confirm`), the daemon runs under `timeout` before the knock is tried, and
whatever happens the admin is not locked out. Confirmed, the table stays; not confirmed, the
daemon stops by itself and then the rollback takes the table away, even after a hangup; and the
README's warning holds: a daemon still running puts back a table the rollback deletes."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    RIGHT,
    RunningDaemon,
    Server,
    config_text,
    kill_rollback_watcher,
    wait_for,
    write_config,
)

SERVER = Lab.SERVER_V4
# `timeout`'s exit status when it had to stop the command: the daemon did not outlive its time.
TIMED_OUT = 124


@pytest.fixture
def door(lab: Lab, tmp_path: Path) -> Iterator[Server]:
    """The first door's config (no always_allow, so only a knock lets the client in), with the
    protected service listening, and no table yet."""
    state = tmp_path / "state"
    listener = Listener(lab.server, 22)
    yield Server(lab, write_config(tmp_path, config_text(state, open_for="30s")))
    listener.close()
    kill_rollback_watcher(state)


def daemon_for(server: Server, tmp_path: Path, seconds: int | None) -> RunningDaemon:
    """`timeout SECONDS knocknft run`, as the README starts it (no timeout when None)."""
    prefix = ("timeout", str(seconds)) if seconds is not None else ()
    return RunningDaemon(server.lab, server.config, tmp_path / "daemon.log", prefix=prefix)


def table_loaded(server: Server) -> bool:
    return "inet knocknft" in server.nft("list", "tables").stdout


def test_a_knock_during_the_probation_gets_in_and_confirm_keeps_the_table(
    lab: Lab, door: Server, tmp_path: Path
) -> None:
    out = door.knocknft("apply", "--confirm", "30").stdout
    assert "rolling back in 30s" in out
    daemon = daemon_for(door, tmp_path, 25)
    try:
        assert not lab.client.tcp_reachable(SERVER, 22), "the table is in: no knock, no entry"
        lab.client.knock(SERVER, *RIGHT)
        daemon.wait_for("OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22, timeout=2), "the knock let the client in"
        assert door.knocknft("confirm").stdout.startswith("confirmed")
    finally:
        daemon.stop(signal.SIGINT)  # Ctrl-C, before systemd takes over
    assert table_loaded(door), "the confirmed table stays when the test daemon stops"
    assert [g["service"] for g in door.status()] == ["22/tcp"]


def test_unconfirmed_the_daemon_stops_then_the_rollback_removes_the_table(
    lab: Lab, door: Server, tmp_path: Path
) -> None:
    out = door.knocknft("apply", "--confirm", "5").stdout
    assert "there was no table inet knocknft before, so the rollback DELETES it" in out
    daemon = daemon_for(door, tmp_path, 3)
    # The admin's session hangs up: the daemon reloads, and `timeout` still stops it.
    daemon.send(signal.SIGHUP)
    assert daemon.proc.wait(timeout=6) == TIMED_OUT
    assert table_loaded(door), "the daemon stopped before the rollback"
    wait_for("the rollback deletes the table", lambda: not table_loaded(door), timeout=6)
    time.sleep(1.5)
    assert not table_loaded(door), "nothing puts it back"
    assert lab.client.tcp_reachable(SERVER, 22), "as if the apply had never been"
    daemon.stop()


def test_a_daemon_still_running_puts_back_the_table_the_rollback_deletes(
    lab: Lab, door: Server, tmp_path: Path
) -> None:
    door.knocknft("apply", "--confirm", "2")
    with daemon_for(door, tmp_path, None) as daemon:
        daemon.wait_for("vanished", timeout=8)
        assert table_loaded(door)
        assert not lab.client.tcp_reachable(SERVER, 22), "locked out but for a knock"
