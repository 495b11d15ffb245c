"""The daemon keeps its table: another tool's `nft flush ruleset` (or `delete table`) is undone
within a moment, the protected port is closed to strangers again, and the grants that were in
the flushed sets come back, the revoked ones not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    RIGHT,
    Server,
    config_text,
    connect,
    exchange,
    running,
    write_config,
)

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4  # knocks
B = "198.18.0.3"  # a stranger
C = "198.18.0.4"  # granted by hand, then revoked by hand
VANISHED = "table inet knocknft vanished (nft flush ruleset?); restored"


@pytest.mark.parametrize("removal", [("flush", "ruleset"), ("delete", "table", "inet", "knocknft")])
def test_a_removed_table_comes_back_with_its_grants(
    lab: Lab, tmp_path: Path, removal: tuple[str, ...]
) -> None:
    for address in (B, C):
        lab.client.add_address(address)
    listener = Listener(lab.server, 22, echo=True)
    # close_sessions: a knocker's session must outlive the flush too, so the grant must be back
    # no later than the rule that ends sessions without one.
    extra = "    close_sessions: true\n"
    cfg = write_config(tmp_path, config_text(tmp_path / "state", extra, open_for="1h"))
    cli = Server(lab, cfg)
    try:
        with running(lab, cfg, tmp_path / "daemon.log") as daemon:
            lab.client.knock(SERVER, *RIGHT, source=A)
            daemon.wait_for(f"{A}: ssh: OPEN SESAME")
            cli.knocknft("open", C, "--door", "ssh")
            cli.knocknft("close", C)
            session = connect(lab, 22)

            lab.server.run("nft", *removal)
            removed = time.monotonic()
            log = daemon.wait_for(VANISHED, timeout=2)
            assert time.monotonic() - removed < 1.0, "restored at once, not at the next poll"
            assert f"{VANISHED}, 1 grant(s) and 0 ban(s) put back" in log

            assert not lab.client.tcp_reachable(SERVER, 22, source=B), "strangers are out again"
            assert lab.client.tcp_reachable(SERVER, 22, source=A), "the knocker's grant is back"
            assert not lab.client.tcp_reachable(SERVER, 22, source=C), "a revoked one is not"
            with session:
                assert exchange(session) == b"ping", "the knocker's session lives on"
            (grant,) = cli.status()
            assert (grant["address"], grant["door"]) == (A, "ssh")
            assert 3500 < grant["expires_in"] <= 3600, "with the time it had left"
    finally:
        listener.close()
