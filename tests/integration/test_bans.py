"""Banning doors against the real kernel: the knocker of a `deny_for` door is dropped by the
kernel (from the protected services, or with `deny: host` from everything) until its element
expires; a bystander and always_allow are unaffected; `status` shows the ban, `close` lifts it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    RIGHT,
    RunningDaemon,
    Server,
    config_text,
    running,
    write_config,
)

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A, A6 = Lab.CLIENT_V4, Lab.CLIENT_V6
BYSTANDER = "198.18.0.3"
TRUSTED = "198.18.0.4"
BAN = ("1220", "1221")  # door `banned`: long enough to outlast any test
BRIEF = ("1230", "1231")  # door `brief`: a ban to watch expire
BRIEF_SECONDS = 2
WEB = 8080  # a port no door protects


@contextmanager
def banning(lab: Lab, tmp_path: Path, deny: str) -> Iterator[tuple[Server, RunningDaemon]]:
    """The daemon with a real door and two banning doors, and two more clients: a bystander and
    an always_allow address."""
    for address in (BYSTANDER, TRUSTED):
        lab.client.add_address(address)
    cfg = ban_config(tmp_path, deny)
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        yield Server(lab, cfg), daemon


def ban_config(tmp_path: Path, deny: str) -> Path:
    text = config_text(tmp_path / "state", open_for="30s").replace(
        "options:\n", f"options:\n  always_allow: [{TRUSTED}/32]\n"
    )
    text += f"""\
  banned:
    sequence: [1220/tcp, 1221/tcp]
    deny_for: 1h
    deny: {deny}
  brief:
    sequence: [1230/tcp, 1231/tcp]
    deny_for: {BRIEF_SECONDS}s
    deny: {deny}
"""
    return write_config(tmp_path, text)


@pytest.fixture
def web(lab: Lab) -> Iterator[Listener]:
    listener = Listener(lab.server, WEB)
    yield listener
    listener.close()


def reaches(lab: Lab, port: int, source: str, server: str = SERVER) -> bool:
    return lab.client.tcp_reachable(server, port, timeout=2.0, source=source)


def blocked(lab: Lab, port: int, source: str, server: str = SERVER) -> bool:
    """No connection within half a second: a dropped SYN is retried only after a second."""
    return not lab.client.tcp_reachable(server, port, timeout=0.5, source=source)


def bans_of(server: Server) -> list[dict[str, Any]]:
    bans: list[dict[str, Any]] = server.status_report()["bans"]
    return bans


def test_a_ban_drops_the_knocker_from_the_services_until_lifted_or_expired(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, web: Listener
) -> None:
    with banning(lab, tmp_path, "services") as (server, daemon):
        for source in (A, BYSTANDER):
            lab.client.knock(SERVER, *RIGHT, source=source)
            daemon.wait_for(f"{source}: ssh: OPEN SESAME")
        assert reaches(lab, 22, A) and reaches(lab, 22, BYSTANDER)

        lab.client.knock(SERVER, *BAN, source=A)
        daemon.wait_for(f"{A}: banned: banned from the protected services for 3600s")
        assert blocked(lab, 22, A), "a ban beats the grant the knocker holds"
        assert reaches(lab, WEB, A), "deny: services leaves the rest of the host alone"
        assert reaches(lab, 22, BYSTANDER), "a bystander is unaffected"
        (ban,) = bans_of(server)
        assert ban["timeout"] == 3600
        assert (ban["address"], ban["door"], ban["deny"]) == (A, "banned", "services")
        assert 3500 < ban["expires_in"] <= 3600

        # always_allow is never denied, even when it knocks the banning door itself.
        lab.client.knock(SERVER, *BAN, source=TRUSTED)
        daemon.wait_for(f"{TRUSTED}: banned: banned from")
        assert reaches(lab, 22, TRUSTED)

        out = server.knocknft("close", A).stdout
        assert f"lifted the ban on {A} (door banned)" in out
        assert f"closed 22/tcp for {A}" in out
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME", count=2)
        assert reaches(lab, 22, A), "a lifted ban lets the knocker in as anyone"

        lab.client.knock(SERVER, *BRIEF, source=BYSTANDER)
        daemon.wait_for(f"{BYSTANDER}: brief: banned from")
        assert blocked(lab, 22, BYSTANDER)
        time.sleep(BRIEF_SECONDS + 0.2)
        assert reaches(lab, 22, BYSTANDER), "the ban expires by itself, the grant is still there"
        assert [b["address"] for b in bans_of(server)] == [TRUSTED], "gone from status too"


def test_deny_host_drops_every_packet_of_the_knocker_both_families(
    lab: Lab, tmp_path: Path, web: Listener
) -> None:
    with banning(lab, tmp_path, "host") as (server, daemon):
        assert reaches(lab, WEB, A) and reaches(lab, WEB, A6, SERVER6)
        for source, address in ((A, SERVER), (A6, SERVER6), (TRUSTED, SERVER)):
            lab.client.knock(address, *BAN, source=source)
            daemon.wait_for(f"{source}: banned: banned from this host")
        assert blocked(lab, WEB, A)
        assert blocked(lab, WEB, A6, SERVER6)
        assert reaches(lab, WEB, BYSTANDER), "a bystander is unaffected"
        assert reaches(lab, WEB, TRUSTED), "always_allow is never denied"
        # The banned knocker's knocks are dropped before the daemon hears them.
        lab.client.knock(SERVER, *RIGHT, source=A)
        time.sleep(0.3)
        assert f"{A}: ssh: Stage 1" not in daemon.log()
        assert {(b["address"], b["deny"]) for b in bans_of(server)} == {
            (A, "host"),
            (A6, "host"),
            (TRUSTED, "host"),
        }
        text = server.knocknft("status", check=False).stdout  # exit 4: no daemon runs
        assert "BANNED" in text and A6 in text
        server.knocknft("close", A6)
        assert reaches(lab, WEB, A6, SERVER6), "close lifts the ban"
        assert blocked(lab, WEB, A), "and only that address's"


@pytest.mark.parametrize(
    "removal",
    [("flush", "table", "inet", "knocknft"), ("delete", "table", "inet", "knocknft")],
    ids=["flush-table", "delete-table"],
)
def test_a_ban_outlives_our_table_flushed_or_deleted_behind_our_back(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, removal: tuple[str, ...]
) -> None:
    """A ban that vanished with the table (or whose rules did) would let the knocker in."""
    stranger = "198.18.0.5"
    lab.client.add_address(stranger)
    with banning(lab, tmp_path, "services") as (server, daemon):
        for source in (A, BYSTANDER):
            lab.client.knock(SERVER, *RIGHT, source=source)
            daemon.wait_for(f"{source}: ssh: OPEN SESAME")
            lab.client.knock(SERVER, *BAN, source=source)
            daemon.wait_for(f"{source}: banned: banned from the protected services")
        server.knocknft("close", BYSTANDER)  # lifted: it must stay lifted
        lab.client.knock(SERVER, *RIGHT, source=BYSTANDER)
        daemon.wait_for(f"{BYSTANDER}: ssh: OPEN SESAME", count=2)
        assert blocked(lab, 22, A) and reaches(lab, 22, BYSTANDER)

        server.nft(*removal)
        daemon.wait_for("restored", timeout=2)
        assert blocked(lab, 22, A), "the banned knocker is still dropped"
        assert blocked(lab, 22, stranger), "the gate is back for strangers"
        assert reaches(lab, 22, BYSTANDER), "a lifted ban is not put back, the grant is"
        (ban,) = bans_of(server)
        assert (ban["address"], ban["door"]) == (A, "banned")
        assert 3500 < ban["expires_in"] <= 3600, "with the time it had left"
