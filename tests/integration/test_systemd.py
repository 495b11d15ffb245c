"""What the systemd units rely on, against the real kernel in namespaces, with no systemd running:
the guard brings the closed table back after `nft flush ruleset`, and keeps the services shut
when the daemon cannot start (knockd issue #51).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knocknft.lab import Lab, Listener
from tests.integration.conftest import BIN, EXAMPLE_CONFIG, Server, write_config
from tests.integration.daemon_fixture import running
from tests.integration.test_daemon import RIGHT, config_text

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4
CAP_NET_ADMIN = 12


@pytest.fixture
def listener(lab: Lab) -> Iterator[Listener]:
    the_listener = Listener(lab.server, 22)
    yield the_listener
    the_listener.close()


def test_guard_brings_the_closed_table_back_after_a_flush(
    lab: Lab, tmp_path: Path, listener: Listener
) -> None:
    server = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    server.knocknft("apply")
    server.knocknft("open", A, "--door", "ssh", "--for", "5m")
    assert lab.client.tcp_reachable(SERVER, 22)

    # The table is up: the guard reloads it and the grant survives.
    out = server.knocknft("guard").stdout
    assert "table inet knocknft reloaded, 1 open grant(s) kept" in out
    assert lab.client.tcp_reachable(SERVER, 22)

    # The whole ruleset flushed (nftables.service does this): the service is open to anyone.
    server.nft("flush", "ruleset")
    assert lab.client.tcp_reachable(SERVER, 22, source=str(lab.client.add_address("198.18.0.9")))
    assert "table inet knocknft installed" in server.knocknft("guard").stdout
    assert not lab.client.tcp_reachable(SERVER, 22), "closed again; the grant went with the flush"
    assert server.status() == []


def test_the_services_stay_shut_when_the_daemon_cannot_start(
    lab: Lab, tmp_path: Path, listener: Listener
) -> None:
    """knockd issue #51, the other way round: a boot where the daemon fails to start."""
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state))
    with running(lab, cfg, tmp_path / "daemon.log"):
        pass  # the daemon's start kept its table
    # A reboot: an empty ruleset. The guard runs before the network and the daemon.
    lab.server.run("nft", "flush", "ruleset")
    server = Server(lab, cfg, state)
    server.knocknft("guard")
    cfg.write_text(cfg.read_text().replace("open_for: 3s", "open_for: 3 seconds"))
    failed = lab.server.run(str(BIN / "knocknft"), "run", "-c", str(cfg), check=False)
    assert failed.returncode == 2, failed.stderr  # RestartPreventExitStatus=2: no restart loop
    assert not lab.client.tcp_reachable(SERVER, 22)
    lab.client.knock(SERVER, *RIGHT)
    assert not lab.client.tcp_reachable(SERVER, 22), "no daemon: knocking cannot open it"
