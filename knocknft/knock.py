"""The `knock` client, with knockd's command line:
`knock [-u] [-d ms] [-4|-6] [-v] host port[:proto]...`.

A TCP knock is exactly one SYN: a non-blocking connect() and an immediate close(), so the kernel
never retransmits it (a blocking connect does, after 1 s and 3 s, and a repeated SYN breaks a
sequence). A UDP knock is one datagram with a one-byte payload. The host is resolved once.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knocknft import __version__
from knocknft.config import Invalid, PortSpec, parse_port_spec


@dataclass(frozen=True)
class Target:
    family: int
    address: str


def resolve(host: str, family: int) -> Target:
    """The first address of `host` in `family` (AF_UNSPEC: whatever the resolver prefers)."""
    infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address for {host}")
    fam, _, _, _, sockaddr = infos[0]
    return Target(fam, str(sockaddr[0]))


SocketFactory = Callable[[int, int], socket.socket]


def knock_once(
    target: Target,
    step: PortSpec,
    source: str | None = None,
    make_socket: SocketFactory = socket.socket,
) -> None:
    """Send one knock: one SYN for TCP, one datagram for UDP (optionally from `source`)."""
    kind = socket.SOCK_DGRAM if step.protocol == "udp" else socket.SOCK_STREAM
    sock = make_socket(target.family, kind)
    try:
        if source:
            sock.bind((source, 0))
        if step.protocol == "udp":
            sock.sendto(b"\0", (target.address, step.port))
            return
        sock.setblocking(False)
        # EINPROGRESS is the expected answer: the SYN is on its way and we do not wait for it.
        sock.connect_ex((target.address, step.port))
    finally:
        sock.close()


def knock(
    target: Target, steps: Sequence[PortSpec], delay_ms: int = 0, verbose: bool = False
) -> None:
    for index, step in enumerate(steps):
        if verbose:
            host = f"[{target.address}]" if ":" in target.address else target.address
            print(f"hitting {step.protocol} {host}:{step.port}", flush=True)
        knock_once(target, step)
        if delay_ms and index < len(steps) - 1:
            time.sleep(delay_ms / 1000)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knock",
        description=(
            "Send a port-knock sequence to HOST, as knockd's knock does. Each PORT is "
            "PORT[:PROTO] (or PORT/PROTO), PROTO tcp or udp, tcp by default. A TCP knock is a "
            "single SYN; a UDP knock is a single one-byte datagram."
        ),
        epilog="Example: knock -v 198.18.0.1 7000 9000:udp 8000",
    )
    parser.add_argument("-u", "--udp", action="store_true", help="make every knock UDP")
    parser.add_argument(
        "-d",
        "--delay",
        type=int,
        default=0,
        metavar="MS",
        help="wait MS milliseconds between knocks",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", "--ipv4", action="store_true", help="use IPv4 only")
    family.add_argument("-6", "--ipv6", action="store_true", help="use IPv6 only")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each knock as it is sent"
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"knock (knocknft) {__version__}"
    )
    parser.add_argument("host", help="the host to knock on (name or address)")
    parser.add_argument("ports", nargs="+", metavar="PORT[:PROTO]", help="the sequence, in order")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        steps = [parse_port_spec(p) for p in args.ports]
    except Invalid as exc:
        parser.error(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    if args.udp:
        steps = [PortSpec(s.port, "udp") for s in steps]
    if args.delay < 0:
        parser.error("--delay must be 0 or more milliseconds")
    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else socket.AF_UNSPEC
    try:
        target = resolve(args.host, family)
        knock(target, steps, args.delay, args.verbose)
    except OSError as exc:
        print(f"knock: {args.host}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
