"""Hostile bytes over the daemon's whole SPA path: kernel messages through the SPA decoder, the
real verifier and the service's counting. Never an exception; every datagram the decoder hands
on is counted exactly once (accepted, rejected by one reason, or unsaved), and every message
the decoder reads is a datagram or a counted drop."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knocknft.daemon.executor import Daemon
from knocknft.daemon.spa import SpaService
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.spa_nflog import SpaDatagram, SpaNflogDecoder
from knocknft.spa.request import Rejection
from knocknft.spa.signed import MAGIC
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.spa_nflog_support import message, udp4, udp6
from tests.unit.spa_support import saved, spa_config
from tests.unit.support import with_state_dir

VALID, MADE_AT = saved("sha256")


class Reader:
    counters = NflogCounters()

    def fileno(self) -> int:
        return 99

    def read_batch(self) -> list[SpaDatagram]:
        return []

    def close(self) -> None:
        pass


def service(base: Path) -> SpaService:
    """The SPA service of a daemon on an fwknop door, its state dir new under `base`."""
    state = base / "state"
    state.mkdir(mode=0o700)
    config = with_state_dir(spa_config(), state)
    daemon = Daemon(
        config, loaded_nft(config), RecordingRunner(), PendingStops(None), clock=lambda: MADE_AT
    )
    spa = SpaService(daemon, lambda group: Reader())
    spa.start()
    return spa


def mutated(data: bytes, at: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + junk + data[at + len(junk) :]


# Payloads: SPA-shaped (the valid packet, cut or changed; signed-looking), and any bytes.
payloads = st.one_of(
    st.just(VALID),
    st.tuples(st.integers(0, len(VALID)), st.binary(max_size=4)).map(lambda t: mutated(VALID, *t)),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.binary(max_size=200).map(lambda b: MAGIC + b),
    st.binary(max_size=1600),
)
# IP packets: a whole UDP datagram over IPv4 or IPv6 (extension headers too), any bytes, and
# whole datagrams cut short or with a header changed.
ipv6_extensions = st.lists(
    st.tuples(st.sampled_from([0, 43, 60, 44, 17, 6]), st.integers(0, 3)), max_size=10
).map(
    lambda hops: b"".join(
        struct.pack("!BB", hops[i + 1][0] if i + 1 < len(hops) else 17, length)
        + bytes(6 + 8 * length)
        for i, (_, length) in enumerate(hops)
    )
)
packets = st.one_of(
    payloads.map(udp4),
    st.tuples(payloads, ipv6_extensions).map(lambda t: udp6(t[0], t[1], 0 if t[1] else 17)),
    st.binary(max_size=120),
    st.tuples(payloads.map(udp4), st.integers(0, 60)).map(lambda t: t[0][: t[1]]),
    st.tuples(payloads.map(udp4), st.integers(0, 40), st.binary(min_size=1, max_size=2)).map(
        lambda t: mutated(t[0], t[1], t[2])
    ),
)
# Kernel messages: a packet message, without payload, and raw bytes.
buffers = st.lists(
    st.one_of(
        packets.map(message),
        st.just(message(None)),
        st.binary(max_size=64),
    ),
    max_size=6,
).map(b"".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(buffers, min_size=1, max_size=4))
def test_any_kernel_bytes_are_a_request_or_a_counted_refusal_never_an_exception(
    received: list[bytes],
) -> None:
    # A state dir per example: each starts with an empty replay file.
    with tempfile.TemporaryDirectory(prefix="knocknft-spa-fuzz-") as base:
        spa = service(Path(base))
        decoder = SpaNflogDecoder()
        handed = 0
        for buffer in received:
            datagrams = decoder.decode(buffer, 0.0)
            handed += len(datagrams)
            spa.handle(datagrams)
        counted = spa.accepted + sum(spa.rejected.values()) + spa.unsaved
        assert counted == handed
        assert decoder.counters.balanced()
        # The valid packet opens once at most, whatever came with it: the rest are replays.
        assert spa.accepted <= 1


def test_one_packet_over_ipv4_then_ipv6_after_extension_headers_opens_once(
    tmp_path: Path,
) -> None:
    spa = service(tmp_path)
    hop_by_hop = struct.pack("!BB", 60, 0) + bytes(6)
    destination = struct.pack("!BB", 17, 0) + bytes(6)
    buffer = message(udp4(VALID)) + message(udp6(VALID, hop_by_hop + destination, 0))
    datagrams = SpaNflogDecoder().decode(buffer, 0.0)
    assert len(datagrams) == 2
    spa.handle(datagrams)
    assert spa.accepted == 1 and spa.rejected[Rejection.REPLAY] == 1
