"""options.knock_rate_limit against the real kernel: a noisy source's knocks beyond its burst
are dropped before NFLOG, so the daemon never sees them, while another knocker gets in as ever.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from knocklab.lab import Lab, Listener
from tests.integration.support import RIGHT, config_text, running, write_config

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A = Lab.CLIENT_V4
NOISY, NOISY6 = "198.18.0.3", "2001:db8::3"
BURST = 20
NOISE = 300  # knocks per noisy source, sent as fast as a socket goes: far beyond the limit
LIMIT = f"  knock_rate_limit: 10/second\n  knock_rate_burst: {BURST}\n"


def noise(lab: Lab, source: str, destination: str) -> None:
    """NOISE datagrams to a knock port (the second step: no attempt, just work for the daemon)."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    sock = lab.client.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        for _ in range(NOISE):
            sock.sendto(b"k", (destination, 9000))
    finally:
        sock.close()


def dropped_by_limit(lab: Lab) -> int:
    """The packets the rate rules' counters saw and dropped, both families."""
    listing = lab.server.run("nft", "list", "chain", "inet", "knocknft", "input").stdout
    counts = re.findall(r"@knock_rate[46] .*? counter packets (\d+) .*drop", listing)
    assert len(counts) == 2, listing
    return sum(map(int, counts))


def test_a_noisy_source_is_dropped_before_nflog_and_a_knocker_is_not(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    lab.client.add_address(NOISY)
    lab.client.add_address(NOISY6)
    state = tmp_path / "state"
    text = config_text(state).replace("options:\n", "options:\n" + LIMIT)
    cfg = write_config(tmp_path, text)
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        noise(lab, NOISY, SERVER)
        noise(lab, NOISY6, SERVER6)
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22, source=A), "the knocker is unaffected"
        dropped = dropped_by_limit(lab)
    stats = json.loads((state / "stats.json").read_text())
    sent = 2 * NOISE + len(RIGHT)
    logged = stats["nflog_messages"]
    assert stats["nflog_lost"] == 0
    assert logged + dropped == sent, "every knock was either logged or dropped by the limit"
    # Each noisy source got its burst through (and a few refills), no more: the daemon saw
    # a small part of the noise.
    assert 2 * BURST + len(RIGHT) <= logged < sent // 4
    assert stats["opens"] == 1
