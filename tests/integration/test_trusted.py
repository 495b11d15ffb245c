"""Trusted lists against the real kernel: a host name in always_allow, resolved through the
server namespace's own hosts file, lets that host in without knocking while another source stays
out; a changed hosts file and SIGHUP move the allowance; always_allow_file as knockd.trusted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    OTHER_V4,
    Server,
    config_text,
    running,
    wait_reachable,
    write_config,
)

# Any lookup the hosts file does not answer goes to the namespace's own loopback, nowhere else.
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
NAME = "trusted.example"


def _trusting(state: Path, always_allow: str) -> str:
    return config_text(state).replace(
        "  interfaces: [eth0]\n", f"  interfaces: [eth0]\n{always_allow}", 1
    )


def _reachable(lab: Lab, source: str) -> bool:
    return lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5, source=source)


def _resolving(lab: Lab, address: str) -> None:
    """A second client address, and the server's own resolver naming `address` NAME."""
    lab.client.add_address(OTHER_V4)
    lab.server.write_etc("resolv.conf", RESOLV_CONF)
    lab.server.write_etc("hosts", f"{address} {NAME}\n")


def test_a_host_name_lets_its_host_in_and_sighup_moves_it(
    lab: Lab, ssh_listener: Listener, tmp_path: Path
) -> None:
    _resolving(lab, Lab.CLIENT_V4)
    config = write_config(tmp_path, _trusting(tmp_path / "state", f"  always_allow: [{NAME}]\n"))
    with running(lab, config, tmp_path / "daemon.log") as daemon:
        assert _reachable(lab, Lab.CLIENT_V4), "the named host comes in without knocking"
        assert not _reachable(lab, OTHER_V4), "another source stays out"
        listed = lab.server.run("nft", "list", "set", "inet", "knocknft", "always_allow4").stdout
        assert f'{Lab.CLIENT_V4} comment "{NAME}"' in listed

        # The name moves to the other address: a reload resolves it anew, off the loop.
        lab.server.write_etc("hosts", f"{OTHER_V4} {NAME}\n")
        daemon.send(signal.SIGHUP)
        daemon.wait_for(f"always_allow: host names now let in: {NAME} {OTHER_V4}")
        assert wait_reachable(lab, OTHER_V4, time.monotonic() + 6)
        assert not _reachable(lab, Lab.CLIENT_V4), "its old address is out again"

        # The name stops resolving: its last address stays in, and the log says so.
        lab.server.write_etc("hosts", "")
        daemon.send(signal.SIGHUP)
        daemon.wait_for(f"always_allow: {NAME} no longer resolves; keeping {OTHER_V4}")
        assert _reachable(lab, OTHER_V4)


def test_apply_resolves_an_always_allow_file_once(
    lab: Lab, ssh_listener: Listener, tmp_path: Path
) -> None:
    _resolving(lab, OTHER_V4)
    trusted = tmp_path / "knockd.trusted"
    trusted.write_text(
        "# machines autorisées sans contrôle de\n# knocking sur le serveur ssh :\n\n"
        f"{NAME} # i.e. {NAME}\n198.18.1.0/24 #\n"
    )
    options = f"  always_allow_file: {trusted}\n"
    server = Server(lab, write_config(tmp_path, _trusting(tmp_path / "state", options)))
    server.knocknft("apply", "--state-dir", str(tmp_path / "state"))
    assert _reachable(lab, OTHER_V4), "the name in the file comes in without knocking"
    assert not _reachable(lab, Lab.CLIENT_V4)
    rules = server.nft("list", "chain", "inet", "knocknft", "input").stdout
    assert "198.18.1.0/24" in rules, "the file's network is allowed as a configured one is"

    trusted.write_text(trusted.read_text() + "not a name!\n")
    result = server.knocknft("check", check=False)
    assert result.returncode == 2
    assert f"error: {trusted}:6: always_allow_file: 'not a name!' is more than one entry" in (
        result.stderr
    )
