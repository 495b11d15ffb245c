"""close_sessions against the real kernel: when a grant ends, the client's open connection to the
service is reset (the client sees ECONNRESET, not a silent hang); without it, or from an
always_allow network, the connection lives on as conntrack's established traffic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import Server, connect, exchange, write_config

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4
ALLOWED = "198.18.0.3"

CONFIG = f"""\
options:
  interfaces: [eth0]
  always_allow: [{ALLOWED}]
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [22/tcp]
    open_for: 1h
    close_sessions: true
  web:
    sequence: [6001/udp, 6003/tcp, 6002/udp]
    open: [8080/tcp]
    open_for: 1h
"""


@pytest.fixture
def server(lab: Lab, tmp_path: Path) -> Iterator[Server]:
    lab.client.add_address(ALLOWED)
    echoes = [Listener(lab.server, 22, echo=True), Listener(lab.server, 8080, echo=True)]
    srv = Server(lab, write_config(tmp_path, CONFIG))
    srv.knocknft("apply")
    yield srv
    for echo in echoes:
        echo.close()


def test_an_expired_grant_resets_the_session_only_where_asked(server: Server) -> None:
    lab = server.lab
    server.knocknft("open", A, "--door", "ssh", "--for", "2s")
    server.knocknft("open", A, "--door", "web", "--for", "2s")
    ssh, web = connect(lab, 22), connect(lab, 8080)
    with ssh, web:
        time.sleep(2.5)
        started = time.monotonic()
        assert exchange(ssh) == "ConnectionResetError"
        assert time.monotonic() - started < 1.5, "the reset comes at once, not after a hang"
        assert exchange(web) == b"ping", "a door without close_sessions keeps the session"


def test_close_resets_the_session_but_not_always_allow_ones(server: Server) -> None:
    lab = server.lab
    server.knocknft("open", A, "--door", "ssh")
    granted = connect(lab, 22)
    allowed = connect(lab, 22, source=ALLOWED)  # no grant needed, none held
    with granted, allowed:
        server.knocknft("close", A)
        assert exchange(granted) == "ConnectionResetError"
        assert exchange(allowed) == b"ping"
        # Knocking again opens new connections as before.
        server.knocknft("open", A, "--door", "ssh")
        connect(lab, 22).close()
