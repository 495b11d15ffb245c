"""An attacker's packets at `knocknft run`'s SPA port, in namespaces: the same packet over IPv4
and IPv6 opens once; a request naming the server itself or loopback opens nothing; hostile
datagrams (lying UDP lengths, extension headers, oversize, empty, a bounded junk flood) never
stop the daemon, are each counted, and a key holder still gets in after them; a client key
revoked or expired by a reload opens nothing more."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from knocklab.fwknop import FwknopKeys, build_spa, fwknop_argv, send_payload, send_spa
from knocklab.lab import Lab, Listener
from knocklab.packets import send_spoofed, spoofed_packet, udp6_after_extensions
from knocknft.spa.keys import public_key_line
from knocknft.spa.signed import sign_request
from tests.integration.support import (
    NEEDS_FWKNOP,
    OTHER_V4,
    RunningDaemon,
    running,
    wait_reachable,
    wait_stats,
    write_config,
)

pytestmark = NEEDS_FWKNOP

KEYS = FwknopKeys.random()
SPA_PORT = 62201
JUNK_FLOOD = 2000


@pytest.fixture
def served(lab: Lab, tmp_path: Path) -> Iterator[RunningDaemon]:
    """The daemon on one fwknop door (22/tcp), a listener on 22, IPv6 heard too."""
    config = write_config(
        tmp_path,
        f"""\
options:
  state_dir: {tmp_path / "state"}
  interfaces: [eth0]
doors:
  ssh-fwknop:
{KEYS.door_yaml()}    open: [22/tcp]
    open_for: 5s
""",
    )
    listener = Listener(lab.server, 22)
    try:
        with running(lab, config, tmp_path / "daemon.log", ("-D",)) as daemon:
            daemon.wait_for("SPA: udp port 62201 read from NFLOG group 8")
            yield daemon
    finally:
        listener.close()


def reachable(lab: Lab) -> bool:
    return lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5)


def captured(lab: Lab, allow: str = Lab.CLIENT_V4) -> bytes:
    return build_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=allow))


def test_the_same_packet_over_ipv4_then_ipv6_opens_once(lab: Lab, served: RunningDaemon) -> None:
    packet = captured(lab)
    send_payload(lab.client, Lab.SERVER_V4, packet)
    assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), served.log()
    send_payload(lab.client, Lab.SERVER_V6, packet)
    served.wait_for("2001:db8::2: SPA packet refused: replay")
    wait_stats(served, spa_accepted=1, spa_rejected_replay=1)


def test_a_request_naming_the_server_or_loopback_opens_nothing_and_is_counted(
    lab: Lab, served: RunningDaemon
) -> None:
    for named in (Lab.SERVER_V4, "127.0.0.1"):
        send_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=named))
    log = served.wait_for("it names 127.0.0.1, a loopback address, never granted")
    assert "it names 198.18.0.1, this host's own address, never granted" in log
    assert "SPA request accepted" not in log
    wait_stats(served, spa_accepted=0, spa_rejected_not_allowed=2)


def _lying_udp_length(length: int) -> bytes:
    """An IPv4 UDP datagram to the SPA port whose UDP length field says `length`."""
    packet = bytearray(spoofed_packet(Lab.CLIENT_V4, Lab.SERVER_V4, SPA_PORT, "udp", b"A" * 160))
    struct.pack_into("!H", packet, 24, length)
    return bytes(packet)


def test_hostile_datagrams_never_stop_the_daemon_and_each_is_counted(
    lab: Lab, served: RunningDaemon
) -> None:
    # Two whole-datagram lies (a UDP length past the packet, one shorter than its header), and
    # a copy the kernel cuts short (a datagram past the SPA rule's snaplen): three drops.
    send_spoofed(lab.client, Lab.SERVER_V4, [_lying_udp_length(4000), _lying_udp_length(4)])
    send_payload(lab.client, Lab.SERVER_V4, b"A" * 3000)
    # Not SPA packets: empty, and longer than any client sends. Two malformed.
    send_payload(lab.client, Lab.SERVER_V4, b"")
    send_payload(lab.client, Lab.SERVER_V4, b"A" * 1600)
    # A client's real packet after hop-by-hop and destination options: walked over, accepted.
    options = struct.pack("!BB", 60, 0) + bytes([1, 4, 0, 0, 0, 0])  # next: destination opts
    options += struct.pack("!BB", 17, 0) + bytes([1, 4, 0, 0, 0, 0])  # next: UDP
    real = udp6_after_extensions(
        Lab.CLIENT_V6, Lab.SERVER_V6, SPA_PORT, captured(lab), extensions=options, first=0
    )
    send_spoofed(lab.client, Lab.SERVER_V6, [real])
    assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), served.log()
    wait_stats(served, spa_accepted=1, spa_packets_dropped=3, spa_rejected_malformed=2)
    # A bounded flood of SPA-shaped junk (base64, any length a client sends), then a key holder.
    lab.client.add_address(OTHER_V4)
    request = captured(lab, OTHER_V4)
    sock = lab.client.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(JUNK_FLOOD):
            junk = os.urandom(150).hex().encode()[: 140 + int.from_bytes(os.urandom(1)) % 160]
            sock.sendto(junk, (Lab.SERVER_V4, SPA_PORT))
    finally:
        sock.close()
    send_payload(lab.client, Lab.SERVER_V4, request)
    assert wait_reachable(lab, OTHER_V4, time.monotonic() + 3), "the key holder still gets in"
    stats = wait_stats(served, spa_accepted=2)
    assert served.proc.poll() is None, "the daemon still runs"
    # Every junk packet is counted somewhere: judged (hex is base64, and matches no key's
    # HMAC), or lost in the kernel's queue, which the NFLOG sequence numbers count.
    assert stats["spa_rejected_bad_auth"] + stats["spa_packets_lost"] == JUNK_FLOOD, stats


def _signed(key: Ed25519PrivateKey, address: str | None = None) -> bytes:
    named = ipaddress.ip_address(address) if address is not None else None
    return sign_request(key, "ssh-keys", named, 0, now=time.time(), nonce=os.urandom(16))


def test_a_key_revoked_or_expired_by_a_reload_opens_nothing_more(lab: Lab, tmp_path: Path) -> None:
    alice, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    def config_text(alice_extra: str = "", bob_extra: str = "") -> str:
        return f"""\
options:
  state_dir: {tmp_path / "state"}
  interfaces: [eth0]
doors:
  ssh-keys:
    clients:
      alice:
        public_key: "{public_key_line(alice)}"{alice_extra}
      bob:
        public_key: "{public_key_line(bob)}"{bob_extra}
    open: [22/tcp]
    open_for: 30s
"""

    config = write_config(tmp_path, config_text())
    listener = Listener(lab.server, 22)
    lab.client.add_address(OTHER_V4)
    try:
        with running(lab, config, tmp_path / "daemon.log", ("-D",)) as daemon:
            daemon.wait_for("SPA: udp port 62201 read from NFLOG group 8")
            send_payload(lab.client, Lab.SERVER_V4, _signed(alice))
            assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
            config.write_text(
                config_text("\n        revoked: true", f"\n        expires: {yesterday}")
            )
            daemon.send(signal.SIGHUP)
            daemon.wait_for("reloaded: 1 door(s)")
            for key in (alice, bob):
                send_payload(lab.client, Lab.SERVER_V4, _signed(key, OTHER_V4))
            daemon.wait_for("SPA packet refused: not_allowed", count=2)
            assert not lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5, source=OTHER_V4)
            wait_stats(daemon, spa_accepted=1, spa_rejected_not_allowed=2)
    finally:
        listener.close()
