"""The NFLOG sockets against the real kernel: binding, a busy group, unbinding, reading knocks,
and SPA packets read whole."""

from __future__ import annotations

import select

import pytest

from knocklab.fwknop import send_payload
from knocklab.lab import Lab, run_in_netns
from knocknft.netlink.nflog import NflogGroupBusy, NflogReader, NflogSocket, spa_socket
from knocknft.netlink.packet import KnockPacket
from knocknft.netlink.spa_nflog import SpaDatagram
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


def test_reads_spa_packets_whole_and_the_knock_group_sees_none(lab: Lab) -> None:
    lab.server.run("nft", "-f", str(SCENARIOS / "spa" / "expected.nft"))
    knocks = bind(lab, 7)
    spa = run_in_netns(lab.server.netns, lambda: spa_socket(8))
    assert isinstance(spa, NflogReader)
    try:
        # 1536 bytes: more than fwknop's largest packet, and more than the link's MTU: the
        # kernel reassembles the fragments before the rule sees the datagram.
        big = bytes(range(256)) * 6
        send_payload(lab.client, Lab.SERVER_V4, b"spa over IPv4")
        send_payload(lab.client, Lab.SERVER_V6, big)
        found: list[SpaDatagram] = []
        while len(found) < 2 and select.select([spa], [], [], 2.0)[0]:
            found += spa.read_batch()
        assert found == [
            SpaDatagram(lab.client.v4, b"spa over IPv4"),
            SpaDatagram(lab.client.v6, big),
        ]
        assert knocks.read_batch() == [], "SPA packets are not knocks"
    finally:
        spa.close()
        knocks.close()
