"""options.knock_reply against the real kernel: `reject` answers knocks as closed ports do, so a
blocking connect (telnet, ssh) fails at once and still counts as one knock; the answers are
rate-limited for all sources together; `drop` (the default) stays silent.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import config_text, running, write_config

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A, A6 = Lab.CLIENT_V4, Lab.CLIENT_V6
REJECT = "options:\n  knock_reply: reject\n"
# knocknft.core.ruleset's reply limit, for every source together.
RATE, BURST = 20, 20
FLOOD = 200  # connects to a knock port at once: ten times the burst


def blocking_connect(lab: Lab, server: str, port: int, timeout: float = 3.0) -> float:
    """Seconds until a blocking connect, as telnet makes it, is refused; fails otherwise."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = lab.client.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionRefusedError):
            sock.connect((server, port))
        return time.monotonic() - started
    finally:
        sock.close()


def udp_refused(lab: Lab, server: str, port: int) -> bool:
    """Whether a datagram to server:port brings back ICMP port unreachable (a connected UDP
    socket reports it as ECONNREFUSED on the next receive)."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = lab.client.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    try:
        sock.connect((server, port))
        sock.send(b"k")
        try:
            sock.recv(16)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
        return False
    finally:
        sock.close()


@pytest.mark.parametrize(("server", "source"), [(SERVER, A), (SERVER6, A6)])
def test_reject_refuses_a_blocking_connect_at_once_and_the_sequence_still_opens(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, server: str, source: str
) -> None:
    text = config_text(tmp_path / "state").replace("options:\n", REJECT)
    with running(lab, write_config(tmp_path, text), tmp_path / "daemon.log") as daemon:
        assert not lab.client.tcp_reachable(server, 22, source=source)
        # The course's recipe, with a blocking connect for each TCP step: refused at once,
        # so the kernel never retransmits the SYN and each connect is one knock.
        assert blocking_connect(lab, server, 7000) < 0.5
        assert udp_refused(lab, server, 9000), "a UDP knock gets ICMP port unreachable"
        assert blocking_connect(lab, server, 8000) < 0.5
        daemon.wait_for(f"{source}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(server, 22, source=source)
        log = daemon.log()
        assert "sequence broken" not in log and log.count(f"{source}: ssh: Stage 1") == 1


def test_drop_stays_silent(lab: Lab, tmp_path: Path) -> None:
    """The default: a knock port answers nothing, as before."""
    with running(lab, write_config(tmp_path, config_text(tmp_path / "state")), tmp_path / "d.log"):
        assert not lab.client.tcp_reachable(SERVER, 7000, timeout=0.5)
        assert not udp_refused(lab, SERVER, 9000)
        listing = lab.server.run("nft", "list", "table", "inet", "knocknft").stdout
        assert "knock_reply" not in listing and "reject" not in listing


def test_replies_are_rate_limited_for_all_sources_together(lab: Lab, tmp_path: Path) -> None:
    """A burst of connects gets at most the limit's worth of resets; the rest are dropped (and
    still logged: the daemon sees every one)."""
    text = config_text(tmp_path / "state").replace("options:\n", REJECT)
    with running(lab, write_config(tmp_path, text), tmp_path / "daemon.log", verbose=False):
        socks = []
        try:
            started = time.monotonic()
            for _ in range(FLOOD):
                sock = lab.client.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setblocking(False)
                assert sock.connect_ex((SERVER, 7000)) == errno.EINPROGRESS
            # Long enough for every answer to arrive, short of the first retransmission (1 s).
            time.sleep(0.5)
            elapsed = time.monotonic() - started
            _, done, _ = select.select([], socks, [], 0)
            refused = sum(
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED for s in done
            )
        finally:
            for sock in socks:
                sock.close()  # no more SYNs: the flood stops here
        assert refused >= BURST // 2, "the limit lets replies through"
        assert refused <= BURST + RATE * elapsed + 1, f"{refused} replies in {elapsed:.2f}s"
        listing = lab.server.run("nft", "list", "chain", "inet", "knocknft", "knock_reply").stdout
        assert f"counter packets {FLOOD - refused} " in listing, listing
