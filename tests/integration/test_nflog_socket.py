"""The NFLOG socket against the real kernel: binding, a busy group, unbinding, reading knocks."""

from __future__ import annotations

import select

import pytest

from knocklab.lab import Lab, run_in_netns
from knocknft.netlink.nflog import NflogGroupBusy, NflogSocket
from knocknft.netlink.packet import KnockPacket
from tests.scenarios import SCENARIOS


def bind(lab: Lab, group: int) -> NflogSocket:
    sock = run_in_netns(lab.server.netns, lambda: NflogSocket(group))
    assert isinstance(sock, NflogSocket)
    return sock


def test_busy_group_is_a_clear_error_and_close_releases_it(lab: Lab) -> None:
    first = bind(lab, 7)
    with pytest.raises(NflogGroupBusy):
        bind(lab, 7)
    first.close()
    bind(lab, 7).close()


def test_reads_knocks_from_the_kernel(lab: Lab) -> None:
    lab.server.run("nft", "-f", str(SCENARIOS / "basic" / "expected.nft"))
    sock = bind(lab, 7)
    try:
        lab.client.knock(Lab.SERVER_V4, "7000", "9000/udp")
        lab.client.knock(Lab.SERVER_V6, "8000")
        packets: list[KnockPacket] = []
        while len(packets) < 3 and select.select([sock], [], [], 2.0)[0]:
            packets += sock.read_batch()
        seen = [(str(p.source), str(p.destination), p.protocol, p.dport) for p in packets]
        assert seen == [
            (Lab.CLIENT_V4, Lab.SERVER_V4, "tcp", 7000),
            (Lab.CLIENT_V4, Lab.SERVER_V4, "udp", 9000),
            (Lab.CLIENT_V6, Lab.SERVER_V6, "tcp", 8000),
        ]
        assert packets[0].tcp_flags == 0x02 and packets[0].ifindex > 0
        assert sock.counters.lost == 0 and sock.counters.balanced()
    finally:
        sock.close()
