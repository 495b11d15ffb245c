"""Capture real nfnetlink_log messages for the decoder tests.

Run as root from anywhere: ``python tests/data/nflog/capture.py [--out DIR]``.

It builds a throwaway lab - two network namespaces ``kn-helper-<random>-s``
(server) and ``-c`` (client) joined by a veth pair, addresses from
198.18.0.0/15 and 2001:db8::/32 only - loads an nftables table that logs knock
ports to NFLOG groups in the server namespace, binds
:class:`knocknft.netlink.nflog.NflogSocket` there, sends one scenario at a time from the
client, and writes what each ``recv()`` returned as hex to ``<case>.hex``: one
line per ``recv()`` buffer, ``#`` lines are comments. The host's own ruleset
and interfaces are never touched, and the namespaces are deleted on the way
out, failure included.

The same file runs in three roles: the orchestrator (default, host namespace),
``listen`` (inside the server namespace) and ``send CASE`` (inside the client
namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from knocknft.netlink.base import iter_messages  # noqa: E402
from knocknft.netlink.nflog import NflogSocket  # noqa: E402
from knocknft.netlink.nflog_messages import NFULNL_PACKET_TYPE  # noqa: E402

SERVER4 = "198.18.0.1"
CLIENT4 = "198.18.0.2"
SERVER6 = "2001:db8::1"
CLIENT6 = "2001:db8::2"
COPY_RANGE = 128

RULESET = """
table inet cap {
    chain pre {
        type filter hook prerouting priority 0; policy accept;
        # IPv4 reassembles before the input hook, so fragments are only seen here.
        ip frag-off & 0x1fff != 0 log group 7 snaplen 128 queue-threshold 1 drop
    }
    chain input {
        type filter hook input priority 0; policy accept;
        frag frag-off != 0 log group 7 snaplen 128 queue-threshold 1 drop
        icmp type echo-request log group 7 snaplen 128 queue-threshold 1 drop
        meta l4proto { tcp, udp } th dport 7100 log group 7 snaplen 30 queue-threshold 1 drop
        meta l4proto { tcp, udp } th dport 7200 log group 7 snaplen 1000 queue-threshold 1 drop
        meta l4proto { tcp, udp } th dport 7000-7999 log group 7 snaplen 128 queue-threshold 1 drop
        meta l4proto { tcp, udp } th dport 8000-8099 log group 8 snaplen 128 drop
        meta l4proto { tcp, udp } th dport 8100-8199 log group 9 snaplen 128 queue-threshold 1 drop
    }
}
"""

# Each case: (file name, group, what is sent, how many logged packets to wait for).
CASES: list[tuple[str, int, str, int]] = [
    ("ipv4_tcp_syn", 7, "TCP SYN 198.18.0.2 -> 198.18.0.1:7001", 1),
    ("ipv4_udp", 7, "UDP 198.18.0.2:40000 -> 198.18.0.1:7002, payload b'knock'", 1),
    ("ipv6_tcp", 7, "TCP SYN 2001:db8::2 -> [2001:db8::1]:7003", 1),
    ("ipv6_udp", 7, "UDP [2001:db8::2]:40001 -> [2001:db8::1]:7004", 1),
    (
        "ipv6_ext_headers",
        7,
        "UDP [2001:db8::2]:40002 -> [2001:db8::1]:7005 with hop-by-hop and destination options",
        1,
    ),
    (
        "ipv4_ip_options",
        7,
        "TCP SYN 198.18.0.2 -> 198.18.0.1:7006 with IP options (record route, IHL 7)",
        1,
    ),
    ("truncated", 7, "TCP SYN 198.18.0.2 -> 198.18.0.1:7100; the rule's snaplen is 30", 1),
    (
        "copy_range",
        7,
        "UDP 198.18.0.2:40003 -> 198.18.0.1:7200, 400-byte payload; snaplen 1000, copy range 128",
        1,
    ),
    ("ipv4_icmp", 7, "ICMP echo request 198.18.0.2 -> 198.18.0.1 (not a knock)", 1),
    (
        "ipv4_fragment",
        7,
        "UDP 198.18.0.2:40004 -> 198.18.0.1:7007, 2000-byte payload; second fragment, prerouting",
        1,
    ),
    (
        "ipv6_fragment",
        7,
        "UDP [2001:db8::2]:40005 -> [2001:db8::1]:7008, 3000-byte payload: three fragments",
        3,
    ),
    (
        "batch",
        8,
        "queue threshold 5: UDP v4 :8001, UDP v6 :8002, TCP SYN v4 :8003, TCP SYN v6 :8004, "
        "UDP v4 :8005 in one recv()",
        5,
    ),
    (
        "seq_gap",
        9,
        "receive buffer at its minimum: 30 UDP to 198.18.0.1:8101 unread, drained, then one "
        "UDP to :8102",
        0,
    ),
]

# --- client role -------------------------------------------------------------


def _tcp_syn(
    family: socket.AddressFamily, address: tuple[str, int], ip_options: bytes = b""
) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if ip_options:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, ip_options)
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        sock.connect(address)
    # One SYN is on the wire; closing in SYN-SENT sends nothing more, so no
    # retransmission leaks into the next case.
    time.sleep(0.05)
    sock.close()


def _udp(
    family: socket.AddressFamily,
    source: tuple[str, int],
    address: tuple[str, int],
    payload: bytes,
    setup: Callable[[socket.socket], None] | None = None,
) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(source)
        if setup is not None:
            setup(sock)
        sock.sendto(payload, address)


def _ext_headers(sock: socket.socket) -> None:
    # An 8-byte options header: next header and length (filled by the kernel),
    # then one PadN option covering the remaining 6 bytes.
    options = bytes([0, 0, 1, 4, 0, 0, 0, 0])
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, options)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, options)


def _ping() -> None:
    # ICMP echo request with a raw socket; the checksum covers the ICMP message.
    header = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"knocknft")
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[2:4] = (~total & 0xFFFF).to_bytes(2, "big")
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(bytes(header), (SERVER4, 0))


def send(case: str) -> None:  # noqa: C901, PLR0912 - a capture script: one branch per packet kind it can send
    v4, v6 = socket.AF_INET, socket.AF_INET6
    if case == "ipv4_tcp_syn":
        _tcp_syn(v4, (SERVER4, 7001))
    elif case == "ipv4_udp":
        _udp(v4, (CLIENT4, 40000), (SERVER4, 7002), b"knock")
    elif case == "ipv6_tcp":
        _tcp_syn(v6, (SERVER6, 7003))
    elif case == "ipv6_udp":
        _udp(v6, (CLIENT6, 40001), (SERVER6, 7004), b"knock")
    elif case == "ipv6_ext_headers":
        _udp(v6, (CLIENT6, 40002), (SERVER6, 7005), b"knock", _ext_headers)
    elif case == "ipv4_ip_options":
        # Record route with room for one address, then end of options: 8 bytes.
        _tcp_syn(v4, (SERVER4, 7006), bytes([7, 7, 4, 0, 0, 0, 0, 0]))
    elif case == "truncated":
        _tcp_syn(v4, (SERVER4, 7100))
    elif case == "copy_range":
        _udp(v4, (CLIENT4, 40003), (SERVER4, 7200), bytes(400))
    elif case == "ipv4_icmp":
        _ping()
    elif case == "ipv4_fragment":
        _udp(v4, (CLIENT4, 40004), (SERVER4, 7007), bytes(2000))
    elif case == "ipv6_fragment":
        _udp(v6, (CLIENT6, 40005), (SERVER6, 7008), bytes(3000))
    elif case == "batch":
        _udp(v4, (CLIENT4, 40006), (SERVER4, 8001), b"one")
        _udp(v6, (CLIENT6, 40007), (SERVER6, 8002), b"two")
        _tcp_syn(v4, (SERVER4, 8003))
        _tcp_syn(v6, (SERVER6, 8004))
        _udp(v4, (CLIENT4, 40008), (SERVER4, 8005), b"five")
    elif case == "warmup":
        # Port 9999 is not logged; the packets only make ARP and ND resolve.
        _udp(v4, (CLIENT4, 40300), (SERVER4, 9999), b"hello")
        _udp(v6, (CLIENT6, 40301), (SERVER6, 9999), b"hello")
        time.sleep(0.2)
    elif case == "seq_gap_flood":
        for port in range(40100, 40130):
            _udp(v4, (CLIENT4, port), (SERVER4, 8101), b"flood")
    elif case == "seq_gap_last":
        _udp(v4, (CLIENT4, 40200), (SERVER4, 8102), b"last")
    else:
        raise SystemExit(f"unknown case {case!r}")


# --- server role -------------------------------------------------------------


def _packet_messages(buffer: bytes) -> int:
    return sum(1 for _, _, kind, _ in iter_messages(buffer) if kind == NFULNL_PACKET_TYPE)


def _drain(sock: NflogSocket, idle: float) -> list[bytes]:
    buffers = []
    while select.select([sock], [], [], idle)[0]:
        buffer = sock.recv_buffer()
        if buffer is not None:
            buffers.append(buffer)
    return buffers


def listen(out: Path) -> None:  # noqa: C901 - a capture script: one branch per packet kind it reports
    """Serve the orchestrator's commands on stdin, one per line."""
    sockets = {
        7: NflogSocket(7, copy_range=COPY_RANGE),
        # Batches: the kernel holds messages until five are queued.
        8: NflogSocket(8, copy_range=COPY_RANGE, queue_threshold=5, flush_timeout=5.0),
        # The kernel raises a tiny SO_RCVBUF to its minimum (a few KiB): room
        # for a message or two, so a burst overflows and leaves a gap in NFULA_SEQ.
        9: NflogSocket(9, copy_range=COPY_RANGE, receive_buffer=1),
    }
    reply = sys.stdout
    captured: dict[str, list[bytes]] = {}
    groups: dict[str, int] = {}
    print("ready", file=reply, flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "start":
            name, group = args[0], int(args[1])
            stray = _drain(sockets[group], 0.2)
            captured[name], groups[name] = [], group
            # Leftovers of an earlier case would be saved with this one.
            status = "stray" if stray else "ok"
            print(f"{status} stray={sum(map(_packet_messages, stray))}", file=reply, flush=True)
        elif command == "read":
            name, wanted = args[0], int(args[1])
            sock = sockets[groups[name]]
            seen = 0
            deadline = time.monotonic() + 5
            while seen < wanted and time.monotonic() < deadline:
                if select.select([sock], [], [], 0.1)[0]:
                    buffer = sock.recv_buffer()
                    if buffer is not None:
                        captured[name].append(buffer)
                        seen += _packet_messages(buffer)
            status = "ok" if seen == wanted else "short"
            print(f"{status} seen={seen} wanted={wanted}", file=reply, flush=True)
        elif command == "drain":
            buffers = _drain(sockets[groups[args[0]]], 0.3)
            captured[args[0]].extend(buffers)
            print(f"ok seen={sum(map(_packet_messages, buffers))}", file=reply, flush=True)
        elif command == "save":
            name, header = args[0], bytes.fromhex(args[1]).decode()
            lines = [
                *(f"# {text}" for text in header.splitlines()),
                *(b.hex() for b in captured[name]),
            ]
            (out / f"{name}.hex").write_text("\n".join(lines) + "\n")
            print("ok", file=reply, flush=True)
        elif command == "quit":
            break
    for sock in sockets.values():
        sock.close()


# --- orchestrator --------------------------------------------------------------


def _run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True)


def _ask(listener: subprocess.Popen[str], command: str) -> str:
    stdin: IO[str] | None = listener.stdin
    stdout: IO[str] | None = listener.stdout
    assert stdin is not None and stdout is not None
    stdin.write(command + "\n")
    stdin.flush()
    answer = stdout.readline().strip()
    if not answer.startswith("ok"):
        raise RuntimeError(f"listener answered {answer!r} to {command!r}")
    return answer


def orchestrate(out: Path) -> None:
    tag = secrets.token_hex(3)
    server, client = f"kn-helper-{tag}-s", f"kn-helper-{tag}-c"
    python = [sys.executable, str(Path(__file__).resolve())]
    listener: subprocess.Popen[str] | None = None
    try:
        _run("ip", "netns", "add", server)
        _run("ip", "netns", "add", client)
        veth = f"ip link add kn0 netns {server} type veth peer name kn1 netns {client}"
        _run(*veth.split())
        for ns, dev, v4, v6 in (
            (server, "kn0", SERVER4, SERVER6),
            (client, "kn1", CLIENT4, CLIENT6),
        ):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "netns", "exec", server, "nft", "-f", "-", stdin=RULESET)
        # Resolve neighbours first, so no case waits on (or logs) discovery.
        _run("ip", "netns", "exec", client, *python, "send", "warmup")

        listener = subprocess.Popen(
            ["ip", "netns", "exec", server, *python, "listen", "--out", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != "ready":
            raise RuntimeError("the listener did not start")
        kernel = (
            f"kernel {platform.release()}, nft log statement, NflogSocket copy range {COPY_RANGE}"
        )
        for name, group, what, count in CASES:
            _ask(listener, f"start {name} {group}")
            if name == "seq_gap":
                _run("ip", "netns", "exec", client, *python, "send", "seq_gap_flood")
                drained = _ask(listener, f"drain {name}")
                _run("ip", "netns", "exec", client, *python, "send", "seq_gap_last")
                answer = _ask(listener, f"read {name} 1")
                print(f"{name}: drained {drained}, then {answer}")
            else:
                _run("ip", "netns", "exec", client, *python, "send", name)
                answer = _ask(listener, f"read {name} {count}")
                print(f"{name}: {answer}")
            header = (
                f"case: {name}\nsent: {what}\n{kernel}\nrecorded by tests/data/nflog/capture.py"
            )
            _ask(listener, f"save {name} {header.encode().hex()}")
        _ask_quit(listener)
        listener.wait(timeout=10)
        listener = None
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for ns in (server, client):
            subprocess.run(["ip", "netns", "delete", ns], check=False, stderr=subprocess.DEVNULL)


def _ask_quit(listener: subprocess.Popen[str]) -> None:
    assert listener.stdin is not None
    listener.stdin.write("quit\n")
    listener.stdin.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    listen_parser = sub.add_parser("listen")
    listen_parser.add_argument("--out", type=Path, default=HERE)
    send_parser = sub.add_parser("send")
    send_parser.add_argument("case")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if args.role == "listen":
        listen(args.out)
    elif args.role == "send":
        send(args.case)
    else:
        if os.geteuid() != 0:
            raise SystemExit("run as root: it creates network namespaces")
        args.out.mkdir(parents=True, exist_ok=True)
        orchestrate(args.out)


if __name__ == "__main__":
    main()
