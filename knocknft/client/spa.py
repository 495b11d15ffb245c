"""knock's single packet authorization: one UDP datagram signed with the client's Ed25519 key
(knocknft.spa.signed), sent to a knocknft server's SPA port, instead of a knock sequence.

`knock --door ssh server.example.org` (or a profile with a `door:`) signs a request for door
ssh and sends it once. The packet names the address to grant: by default this host's own
address toward the server (the one the kernel sends from), so a copy resent from elsewhere
grants nothing new; `-a ADDR` names another (the public address behind NAT); `-s` asks for the
packet's source as the server sees it. Nothing answers: the server drops every SPA packet.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from knocknft.client.profiles import (
    DEFAULT_SPA_PORT,
    DEFAULT_THEN_WAIT_MS,
    SOURCE,
    Profile,
    SpaAddress,
    default_key_path,
    parse_door_name,
    parse_open_for,
    parse_spa_address,
    parse_spa_port,
)
from knocknft.config import Invalid, IPAddress, read_regular_file
from knocknft.errors import UsageError
from knocknft.spa.keys import MAX_KEY_FILE, load_private_key
from knocknft.spa.signed import NONCE_BYTES, sign_request

SPA_HELP = """\
single packet authorization (a knocknft door with clients:, see knocknft keygen):
  --door NAME, with HOST and no ports (or a profile with door:), sends one UDP packet signed
  with your Ed25519 key, asking HOST to open door NAME for your address. The key and the
  server's config come from knocknft keygen; the signature, a timestamp and a random nonce
  make a copy of the packet useless to anyone who sees it."""


@dataclass(frozen=True)
class SpaPlan:
    """What one SPA `knock` will send, decided (and its key read) before anything is sent."""

    host: str
    door: str
    key: Ed25519PrivateKey
    address: SpaAddress | None = None  # None: this host's own address toward HOST
    open_for: int = 0  # seconds; 0: the door's own
    port: int = DEFAULT_SPA_PORT
    family: int = socket.AF_UNSPEC
    verbose: bool = False
    command: tuple[str, ...] = ()
    then_wait: int = DEFAULT_THEN_WAIT_MS  # ms
    profile: str | None = None


def add_spa_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("single packet authorization (SPA)")
    group.add_argument(
        "--door", metavar="NAME", type=_arg(parse_door_name),
        help="send one signed SPA packet asking HOST to open door NAME, instead of knocking",
    )  # fmt: skip
    group.add_argument(
        "--spa-key", metavar="FILE", type=Path,
        help="the private key to sign with (default: the profile's key, else "
        "~/.config/knocknft/spa_ed25519, where knocknft keygen writes it)",
    )  # fmt: skip
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "-a", "--address", metavar="ADDR", type=_arg(parse_spa_address),
        help="the address to grant (e.g. your public address behind NAT; default: this "
        "host's own address toward HOST)",
    )  # fmt: skip
    where.add_argument(
        "-s", "--source-ip", dest="address", action="store_const", const=SOURCE,
        help="grant the address the packet comes from, as the server sees it",
    )  # fmt: skip
    group.add_argument(
        "-f", "--open-for", metavar="TIME", type=_arg(parse_open_for),
        help="ask for the door to stay open this long (30s, 5m, 1h), within what the "
        "door allows (its max_open_for); default: the door's open_for",
    )  # fmt: skip
    group.add_argument(
        "-p", "--spa-port", metavar="PORT", type=_arg(parse_spa_port),
        help=f"the server's SPA port, UDP (default: the profile's, else {DEFAULT_SPA_PORT})",
    )  # fmt: skip


def _arg(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A config parser as an argparse type: its message, and exit 2, on a bad value."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except Invalid as exc:
            raise argparse.ArgumentTypeError(
                f"{exc.message} ({exc.hint})" if exc.hint else exc.message
            ) from None

    convert.__name__ = parse.__name__.removeprefix("parse_").replace("_", " ")
    return convert


SPA_FLAGS = ("door", "spa_key", "address", "open_for", "spa_port")


def wants_spa(args: argparse.Namespace, profile: Profile | None) -> bool:
    """An SPA knock: the command line names SPA options, or the profile a door."""
    return any(getattr(args, flag) is not None for flag in SPA_FLAGS) or (
        profile is not None and profile.door is not None
    )


def make_spa_plan(
    args: argparse.Namespace,
    profile: Profile | None,
    command: tuple[str, ...],
    env: Mapping[str, str] = os.environ,
) -> SpaPlan:
    """The SPA plan of a parsed command line (and its profile); reads the key. Raises
    UsageError for options that belong to a knock sequence, or a key that cannot be used."""
    if args.ports:
        raise UsageError("SPA sends one packet: give HOST without ports (or drop --door)")
    if args.udp or args.delay is not None:
        raise UsageError("-u and -d are for knock sequences; SPA sends one signed UDP packet")
    door = args.door or (profile.door if profile else None)
    if door is None:
        raise UsageError("an SPA knock needs --door NAME: the door to open on HOST")
    key_path = args.spa_key or (profile.key if profile else None) or default_key_path(env)
    address = args.address if args.address is not None else (profile.address if profile else None)
    return SpaPlan(
        host=profile.host if profile else args.host,
        door=door,
        key=read_key(key_path),
        address=address,
        open_for=_given(args.open_for, profile.open_for if profile else None, 0),
        port=_given(args.spa_port, profile.spa_port if profile else None, DEFAULT_SPA_PORT),
        family=_given(args.family, profile.family if profile else None, socket.AF_UNSPEC),
        verbose=args.verbose,
        command=command,
        then_wait=_given(
            args.then_wait, profile.then_wait if profile else None, DEFAULT_THEN_WAIT_MS
        ),
        profile=profile.name if profile else None,
    )


def _given(flag: int | None, from_profile: int | None, default: int) -> int:
    if flag is not None:
        return flag
    return default if from_profile is None else from_profile


def read_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = read_regular_file(path, MAX_KEY_FILE)
    except OSError as exc:
        hint = " (write one with knocknft keygen)" if isinstance(exc, FileNotFoundError) else ""
        raise UsageError(f"cannot read the SPA key {path}: {exc.strerror or exc}{hint}") from None
    try:
        return load_private_key(data)
    except ValueError as exc:
        raise UsageError(f"the SPA key {path}: {exc}") from None


SocketFactory = Callable[[int, int], socket.socket]


def send_spa(
    plan: SpaPlan,
    family: int,
    address: str,
    make_socket: SocketFactory = socket.socket,
    clock: Callable[[], float] = time.time,
) -> bytes:
    """Sign the plan's request and send it to `address` (of `family`); the packet sent."""
    sock = make_socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect((address, plan.port))
        grant = _granted(plan.address, sock.getsockname()[0])
        packet = sign_request(
            plan.key, plan.door, grant, plan.open_for, now=clock(), nonce=os.urandom(NONCE_BYTES)
        )
        if plan.verbose:
            host = f"[{address}]" if ":" in address else address
            print(
                f"sending SPA for door {plan.door} ({grant or 'source'}) to udp {host}:{plan.port}",
                flush=True,
            )
        sock.send(packet)
        return packet
    finally:
        sock.close()


def _granted(address: SpaAddress | None, local: str) -> IPAddress | None:
    """The address the packet names: the one asked for, None for the packet's source, or by
    default the one this socket sends from (without an IPv6 scope: a link-local address is no
    use to the server anyway, and then the source says the same)."""
    if address == SOURCE:
        return None
    if address is not None:
        return address
    mine = ipaddress.ip_address(local.split("%", 1)[0])
    return None if mine.is_link_local else mine
