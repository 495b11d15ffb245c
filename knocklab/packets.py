"""Hand-made packets for the lab: single TCP segments with chosen flags, spoofed SYNs from a
large range of sources and UDP datagrams from any source, sent paced and bounded from a raw
socket, also from a process of its own while the caller goes on (BackgroundFlood). The tests'
flood, the daemon benchmark and the peer benchmark all build and send them here.

Spoofed sources stay in the test ranges and off the addresses the lab gives real hosts:
- IPv4: 198.18.64.0 to 198.19.255.255 (114688 sources, more than the engine's default cap of
  65536 attempts, so a flood can overfill it); 198.18.0.0/18 is left to real addresses (the lab's
  link is 198.18.0.0/24, and the benchmarks give knockers 198.18.1.0 upwards);
- IPv6: 2001:db8:1:: upwards (as many as any run needs).
"""

from __future__ import annotations

import ipaddress
import itertools
import multiprocessing
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Protocol

SPOOFED_V4 = ipaddress.IPv4Address("198.18.64.0")
SPOOFED_V4_COUNT = 114688  # to 198.19.255.255, the end of 198.18.0.0/15
SPOOFED_V6 = ipaddress.IPv6Address("2001:db8:1::")
SPOOFED_V6_COUNT = 1 << 80

SYN = 0x02
SOURCE_PORT = 40000


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _words(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _tcp_header(sport: int, dport: int, flags: int) -> bytes:
    """20 bytes of TCP header, checksum zero."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def _pseudo_header(
    source: bytes, destination: bytes, length: int, protocol: int = socket.IPPROTO_TCP
) -> bytes:
    """What the TCP (or UDP) checksum covers besides the segment (RFC 793, RFC 8200 8.1)."""
    if len(destination) == 4:
        return source + destination + struct.pack("!BBH", 0, protocol, length)
    return source + destination + struct.pack("!I3xB", length, protocol)


def _ip_header(source: bytes, destination: bytes, protocol: int, length: int) -> bytes:
    """The IP header before a `length`-byte segment, for an IPPROTO_RAW socket."""
    if len(destination) == 4:
        # The kernel fills in the IPv4 header's id and checksum (IPPROTO_RAW).
        return struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, protocol, 0, source, destination
        )
    return struct.pack("!IHBB16s16s", 6 << 28, length, protocol, 64, source, destination)


def _with_checksum(pseudo: bytes, segment: bytes, at: int) -> bytes:
    """`segment` with the checksum over `pseudo` + `segment` written at offset `at`."""
    checksum = ~_fold(_words(pseudo + segment)) & 0xFFFF or 0xFFFF  # UDP's 0 means "none"
    return segment[:at] + struct.pack("!H", checksum) + segment[at + 2 :]


def tcp_segment(source: str, destination: str, sport: int, dport: int, flags: int) -> bytes:
    """A 20-byte TCP header with a valid checksum (the kernel adds the IP header)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    header = _tcp_header(sport, dport, flags)
    return _with_checksum(_pseudo_header(src.packed, dst.packed, len(header)), header, 16)


@dataclass
class SpoofedSyns:
    """SYNs to destination:dport, the i-th from the i-th spoofed source of its family, IP header
    included (for an IPPROTO_RAW socket): as first-step knocks, each one starts an attempt, the
    engine's costly case. Built from a template with the TCP checksum updated for the source
    only, so a sender can make them as fast as it sends them."""

    family: int  # 4 or 6
    destination: str
    dport: int
    count: int = field(init=False)

    def __post_init__(self) -> None:
        dst = ipaddress.ip_address(self.destination).packed
        tcp = _tcp_header(SOURCE_PORT, self.dport, SYN)
        if self.family == 4:
            self._base, self.count, self._source_at = int(SPOOFED_V4), SPOOFED_V4_COUNT, 12
        else:
            self._base, self.count, self._source_at = int(SPOOFED_V6), SPOOFED_V6_COUNT, 8
        self._width = len(dst)
        ip = _ip_header(bytes(self._width), dst, socket.IPPROTO_TCP, len(tcp))
        self._template = bytearray(ip + tcp)
        self._checksum_at = len(ip) + 16
        # The sum over everything but the source, which packet() adds for each one.
        self._fixed = _words(_pseudo_header(bytes(self._width), dst, len(tcp)) + tcp)

    def source(self, index: int) -> str:
        return str(ipaddress.ip_address(self._base + index))

    def packet(self, index: int) -> bytes:
        if not 0 <= index < self.count:
            raise ValueError(f"only {self.count} spoofed IPv{self.family} sources")
        address = self._base + index
        total = self._fixed
        rest = address
        while rest:
            total += rest & 0xFFFF
            rest >>= 16
        packet = self._template
        packet[self._source_at : self._source_at + self._width] = address.to_bytes(
            self._width, "big"
        )
        struct.pack_into("!H", packet, self._checksum_at, ~_fold(total) & 0xFFFF)
        return bytes(packet)

    def packets(self, start: int = 0, count: int | None = None) -> Iterator[bytes]:
        """From the start-th source on, count of them (all the rest by default)."""
        end = self.count if count is None else start + count
        for index in range(start, end):
            yield self.packet(index)


def raw_socket(host: Host, family: int) -> socket.socket:
    """A socket in `host`'s namespace that sends whole IP packets (spoofed sources)."""
    return host.socket(
        socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW
    )


class Host(Protocol):
    """What sending needs of a lab host (knocklab.lab.Host): a socket in its namespace. A
    protocol, so the packet builders need nothing of the lab that uses them."""

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket: ...


class Flag(Protocol):
    def is_set(self) -> bool: ...


def send_paced(
    sock: socket.socket,
    destination: str,
    packets: Iterable[bytes],
    rate: float,
    *,
    max_seconds: float,
    stop: Flag | None = None,
) -> tuple[int, float]:
    """Send `packets` at `rate` per second (in bursts of a millisecond's worth), never for
    longer than `max_seconds`, and no more once `stop` is set; returns (sent, seconds taken).
    Build the packets beforehand: making them here would slow the sender, not the daemon."""
    target = (destination, 0)
    burst = max(1, int(rate // 1000))
    sent = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    iterator = iter(packets)
    while True:
        due = started + sent / rate
        now = time.perf_counter()
        if now >= deadline or (stop is not None and stop.is_set()):
            break
        if now < due:
            time.sleep(due - now)
        batch = [p for _, p in zip(range(burst), iterator, strict=False)]
        for packet in batch:
            sock.sendto(packet, target)
        sent += len(batch)
        if len(batch) < burst:
            break
    return sent, time.perf_counter() - started


def flood(
    host: Host,
    packets: Sequence[bytes],
    destination: str,
    rate: int,
    seconds: float,
    *,
    stop: Flag | None = None,
) -> tuple[int, float]:
    """Send IPv4 `packets` round-robin from `host` at `rate` per second; returns (sent, took).

    Bounded in count (rate * seconds) and in time (seconds, plus one to catch up), and ends early
    when `stop` is set: a flood always ends by itself."""
    sock = raw_socket(host, 4)
    try:
        again_and_again = itertools.islice(itertools.cycle(packets), int(rate * seconds))
        return send_paced(
            sock, destination, again_and_again, rate, max_seconds=seconds + 1.0, stop=stop
        )
    finally:
        sock.close()


def _flood(
    sock: socket.socket,
    destination: str,
    packets: list[bytes],
    rate: float,
    *,
    seconds: float,
    stop: Event,
    result: Queue[tuple[int, float]],
) -> None:
    forever = itertools.cycle(packets)
    result.put(send_paced(sock, destination, forever, rate, max_seconds=seconds, stop=stop))


class BackgroundFlood:
    """Whole IPv4 `packets` (spoofed ones, say), round-robin from `host` to `destination` at
    `rate`, in a process of its own, so that a legitimate client is not held up by it, for as
    long as the `with` block lasts and never longer than `seconds`. Afterwards `sent` and `rate`
    say what it sent."""

    def __init__(
        self, host: Host, destination: str, packets: list[bytes], rate: float, seconds: float
    ) -> None:
        self.seconds = seconds
        self._sock = raw_socket(host, 4)
        context = multiprocessing.get_context("fork")  # the child inherits socket and packets
        self._stop = context.Event()
        self._result: Queue[tuple[int, float]] = context.Queue()
        self._process = context.Process(
            target=_flood,
            args=(self._sock, destination, packets, rate),
            kwargs={"seconds": seconds, "stop": self._stop, "result": self._result},
        )
        self.sent, self.rate = 0, 0.0

    def __enter__(self) -> BackgroundFlood:
        self._process.start()
        time.sleep(1.0)  # the flood is in full swing before the first legitimate request
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        try:
            self.sent, took = self._result.get(timeout=self.seconds + 10)
            self.rate = self.sent / took
        finally:
            self._process.join(timeout=10)
            self._sock.close()


def _udp_header(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def spoofed_packet(
    source: str, destination: str, dport: int, protocol: str = "tcp", payload: bytes = b""
) -> bytes:
    """One whole IP packet (for an IPPROTO_RAW socket) from any source address, forged ones
    included: a TCP SYN, or a UDP datagram carrying `payload` (an SPA packet, say), to
    destination:dport, checksums right."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    number = socket.IPPROTO_TCP if protocol == "tcp" else socket.IPPROTO_UDP
    if payload and protocol == "tcp":
        raise ValueError("only a UDP datagram carries a payload here")
    segment = (
        _tcp_header(SOURCE_PORT, dport, SYN)
        if protocol == "tcp"
        else _udp_header(SOURCE_PORT, dport, payload)
    )
    pseudo = _pseudo_header(src.packed, dst.packed, len(segment), number)
    segment = _with_checksum(pseudo, segment, 16 if protocol == "tcp" else 6)
    return _ip_header(src.packed, dst.packed, number, len(segment)) + segment


def udp6_after_extensions(
    source: str, destination: str, dport: int, payload: bytes, *, extensions: bytes, first: int
) -> bytes:
    """One whole IPv6 packet (for an IPPROTO_RAW socket): a UDP datagram carrying `payload`
    after the extension headers `extensions` (the first of type `first`, the last naming UDP),
    checksums right: an SPA packet as a router that adds options would pass it on."""
    src, dst = ipaddress.IPv6Address(source), ipaddress.IPv6Address(destination)
    segment = _udp_header(SOURCE_PORT, dport, payload)
    segment = _with_checksum(_pseudo_header(src.packed, dst.packed, len(segment), 17), segment, 6)
    body = extensions + segment
    return _ip_header(src.packed, dst.packed, first, len(body)) + body


def spoofed_sequence(
    source: str, destination: str, steps: Sequence[tuple[int, str]]
) -> list[bytes]:
    """A whole knock sequence, (port, protocol) after (port, protocol), from one forged source."""
    return [spoofed_packet(source, destination, port, protocol) for port, protocol in steps]


def spoofed_sequences(
    destination: str, steps: Sequence[tuple[int, str]], count: int, start: int = 0
) -> list[bytes]:
    """`count` completed sequences, each from its own spoofed IPv4 source (from SPOOFED_V4 +
    `start` on), one source's steps after another's: a flood of completions, every one a grant."""
    if start + count > SPOOFED_V4_COUNT:
        raise ValueError(f"only {SPOOFED_V4_COUNT} spoofed IPv4 sources")
    packets: list[bytes] = []
    for index in range(start, start + count):
        packets += spoofed_sequence(str(SPOOFED_V4 + index), destination, steps)
    return packets


def send_spoofed(host: Host, destination: str, packets: Iterable[bytes]) -> None:
    """Send whole IP packets from `host` to `destination`, once each (odd sources, say)."""
    sock = raw_socket(host, ipaddress.ip_address(destination).version)
    try:
        for packet in packets:
            sock.sendto(packet, (destination, 0))
    finally:
        sock.close()
