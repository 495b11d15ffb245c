"""Alongside the firewall a server already has, against the real kernel: a Debian-shaped
nftables.conf with policy drop, and ufw's chain layout loaded with iptables-restore inside the
server namespace (tests/data/firewalls). For each: a knock is granted and the service stays
shut; doctor names the chain; its fixes, run as they are, make doctor ok; then the knocker gets
in over IPv4 and IPv6, a source that never knocked does not, and a port knocknft does not
protect stays dropped by the admin's firewall.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    FIREWALLS,
    OTHER_V4,
    OTHER_V6,
    RIGHT,
    RunningDaemon,
    Server,
    config_text,
    running,
    write_config,
)

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A, A6 = Lab.CLIENT_V4, Lab.CLIENT_V6
B, B6 = OTHER_V4, OTHER_V6
UNPROTECTED = 2222  # listening, never named in the config: the admin's firewall drops it

LOADERS = {
    "debian": [["nft", "-f", str(FIREWALLS / "debian.nft")]],
    "ufw": [
        ["iptables-restore", str(FIREWALLS / "ufw.rules")],
        ["ip6tables-restore", str(FIREWALLS / "ufw6.rules")],
    ],
}


@pytest.fixture
def listeners(lab: Lab) -> Iterator[None]:
    opened = [Listener(lab.server, 22), Listener(lab.server, UNPROTECTED)]
    yield
    for listener in opened:
        listener.close()


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_doctor_finds_the_block_and_its_fix_lets_the_knocker_in_only(
    lab: Lab, tmp_path: Path, listeners: None, kind: str
) -> None:
    lab.client.add_address(B)
    lab.client.add_address(B6)
    for command in LOADERS[kind]:
        lab.server.run(*command)
    cfg = write_config(tmp_path, config_text(tmp_path / "state", open_for="60s"))
    server = Server(lab, cfg, tmp_path / "state")
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        assert "a grant does not open 22/tcp" in daemon.log(), "run warns at start"
        knock_in(daemon, SERVER, A)
        assert not lab.client.tcp_reachable(SERVER, 22, source=A), "granted, and still shut"

        report = server.doctor()
        assert report["ok"] is False
        findings = report["findings"]
        assert isinstance(findings, list) and findings
        for finding in findings:
            assert finding["hook"] == "input" and finding["priority"] == 0
            lab.server.run(*shlex.split(finding["fix"]))
        assert server.doctor() == {"ok": True, "findings": []}
        assert "warning" not in server.knocknft("status", check=False).stderr

        assert lab.client.tcp_reachable(SERVER, 22, source=A), "the knocker is in"
        assert not lab.client.tcp_reachable(SERVER, 22, source=B), "only the knocker"
        knock_in(daemon, SERVER6, A6)
        assert lab.client.tcp_reachable(SERVER6, 22, source=A6)
        assert not lab.client.tcp_reachable(SERVER6, 22, source=B6)
        for address, source in ((SERVER, A), (SERVER6, A6)):
            assert not lab.client.tcp_reachable(address, UNPROTECTED, source=source), (
                "the fix never opens what knocknft does not protect"
            )


def knock_in(daemon: RunningDaemon, server: str, source: str) -> None:
    daemon.lab.client.knock(server, *RIGHT, source=source)
    daemon.wait_for(f"{source}: ssh: OPEN SESAME")


def test_status_says_when_grants_are_not_effective(lab: Lab, tmp_path: Path) -> None:
    lab.server.run("nft", "-f", str(FIREWALLS / "debian.nft"))
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    server = Server(lab, cfg, tmp_path / "state")
    applied = server.knocknft("apply")
    assert "warning: table inet filter, chain input" in applied.stderr
    status = server.knocknft("status", "--json", check=False)
    assert json.loads(status.stdout)["effective"] is False
    assert "grants are not effective" in status.stderr
