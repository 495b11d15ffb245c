"""Benchmark: NFLOG messages decoded per second, lean decoder against pyroute2's.

Builds a long stream of netlink buffers from the real messages saved under
``tests/data/nflog`` (sequence numbers rewritten so the stream has no gaps) and
decodes it with :class:`knocknft.netlink.nflog_decoder.NflogDecoder` and with pyroute2's
generic parser (:class:`knocknft.netlink.nflog_messages.MarshalNflog`), one after the other in
the same process. pyroute2 is only asked to parse, not to pick attributes out
or decode the IP packet, so its figure flatters it.

Run: ``python bench/nflog_decode.py [--messages N] [--per-buffer K] [--repeat R]``
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from knocknft.netlink.base import iter_messages  # noqa: E402
from knocknft.netlink.nflog_decoder import NflogDecoder  # noqa: E402
from knocknft.netlink.nflog_messages import (  # noqa: E402
    NFULA_PAYLOAD,
    NFULA_SEQ,
    NFULNL_PACKET_TYPE,
    MarshalNflog,
)

DATA = REPO / "tests" / "data" / "nflog"


def saved_messages() -> list[bytes]:
    """Every NFULNL_MSG_PACKET message in the saved captures, each on its own."""
    messages = []
    for path in sorted(DATA.glob("*.hex")):
        for line in path.read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            buffer = bytes.fromhex(line)
            for offset, length, kind, _ in iter_messages(buffer):
                if kind == NFULNL_PACKET_TYPE:
                    messages.append(buffer[offset : offset + length])
    return messages


def attr_offset(message: bytes, wanted: int) -> int:
    """Where the value of attribute ``wanted`` sits in ``message``, or -1."""
    attr = 20
    while attr + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, attr)
        if length < 4:
            break
        if kind & 0x3FFF == wanted:
            return attr + 4
        attr += (length + 3) & ~3
    return -1


def build_stream(
    templates: list[bytes], count: int, per_buffer: int, *, spoof: bool = False
) -> list[bytes]:
    """``count`` messages cycling through ``templates``, numbered without gaps.

    With ``spoof`` every message gets its own source address, as in a flood
    with forged sources, so no address comes from the decoder's cache.
    """
    seqs = [attr_offset(t, NFULA_SEQ) for t in templates]
    payloads = [attr_offset(t, NFULA_PAYLOAD) for t in templates]
    buffers = []
    chunk = bytearray()
    for seq in range(count):
        index = seq % len(templates)
        message = bytearray(templates[index])
        if seqs[index] >= 0:
            struct.pack_into("!I", message, seqs[index], seq)
        if spoof and payloads[index] >= 0:
            ip = payloads[index]
            # The last four bytes of the source: 12-16 in IPv4, 20-24 in IPv6.
            where = ip + 12 if message[ip] >> 4 == 4 else ip + 20
            struct.pack_into("!I", message, where, 0x0A000000 + seq)
        chunk += message
        if (seq + 1) % per_buffer == 0:
            buffers.append(bytes(chunk))
            chunk = bytearray()
    if chunk:
        buffers.append(bytes(chunk))
    return buffers


def timed(run: Callable[[], int]) -> tuple[float, int]:
    """CPU seconds one run took, and how many messages it handled.

    CPU time rather than wall time: on a shared machine it leaves out the time
    other processes held the core, and the target is "per core" anyway.
    """
    start = time.process_time()
    handled = run()
    return time.process_time() - start, handled


def main() -> None:
    parser = argparse.ArgumentParser(description="NFLOG decode benchmark")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--pyroute2-messages", type=int, default=5_000)
    parser.add_argument("--per-buffer", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    templates = saved_messages()
    stream = build_stream(templates, args.messages, args.per_buffer)
    single = build_stream(templates, args.messages, 1)
    spoofed = build_stream(templates, args.messages, args.per_buffer, spoof=True)
    small = build_stream(templates, args.pyroute2_messages, args.per_buffer)

    def lean(buffers: list[bytes]) -> Callable[[], int]:
        def run() -> int:
            decoder = NflogDecoder(next_seq=0)
            decode = decoder.decode
            for buffer in buffers:
                decode(buffer, 0.0)
            counters = decoder.counters
            assert counters.balanced() and counters.lost == 0, counters
            return counters.messages

        return run

    def generic() -> int:
        marshal = MarshalNflog()
        return sum(
            1
            for buffer in small
            for msg in marshal.parse(buffer)
            if msg["header"]["type"] == NFULNL_PACKET_TYPE
        )

    runs: dict[str, Callable[[], int]] = {
        f"lean decoder, {args.per_buffer} per buffer": lean(stream),
        "lean decoder, 1 per buffer": lean(single),
        "lean decoder, every source new": lean(spoofed),
        "pyroute2 generic, parse only": generic,
    }
    best = dict.fromkeys(runs, float("inf"))
    counts = dict.fromkeys(runs, 0)
    # Interleaved rounds, best of each: a noisy neighbour then slows all alike.
    for _ in range(args.repeat):
        for name, run in runs.items():
            seconds, counts[name] = timed(run)
            best[name] = min(best[name], seconds)

    print(f"python {sys.version.split()[0]}, {len(templates)} saved messages as templates")
    rates = {name: counts[name] / best[name] for name in runs}
    for name, rate in rates.items():
        print(f"{name:34} {rate:>10,.0f} msgs/s  ({counts[name]:,} messages a run)")
    lean_rate = rates[f"lean decoder, {args.per_buffer} per buffer"]
    print(
        f"{'speed-up over pyroute2':34} {lean_rate / rates['pyroute2 generic, parse only']:>10.1f}x"
    )


if __name__ == "__main__":
    main()
