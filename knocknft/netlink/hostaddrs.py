"""This host's addresses from the kernel (RTM_GETADDR), kept up to date off the packet loop.

`HostAddressWatcher` dumps the addresses once at start, then a thread of its own waits for the
kernel's address news (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR) and dumps them again when an
address comes or goes, and every REFRESH_INTERVAL in case news was lost. Each dump becomes a new
frozen `HostAddresses` (knocknft.core.sources) that replaces the old one in a single assignment:
the loop reads `view` without a lock and never waits for the kernel.

`parse_addresses` and `host_addresses` are pure; the socket work is the watcher's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import select
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import (
    RTM_GETADDR,
    RTM_NEWADDR,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
)

from knocknft.config import IPAddress
from knocknft.core.sources import HostAddresses, refusal
from knocknft.netlink.base import NLMSG_HDRLEN, NLMSGHDR, iter_attrs, iter_messages

log = logging.getLogger("knocknft")

# include/uapi/linux/if_addr.h: struct ifaddrmsg and the attributes read here (pyroute2 names
# them only inside its message class's nla_map).
IFADDRMSG: Final = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_BROADCAST: Final = 4
# A look now and then, for news the socket lost (its buffer overran).
REFRESH_INTERVAL = 30.0


@dataclass(frozen=True)
class InterfaceAddress:
    """One address of an interface: the host's own, its prefix length, its broadcast if any."""

    local: IPAddress
    prefixlen: int
    broadcast: IPAddress | None


def parse_addresses(data: bytes) -> Iterator[InterfaceAddress]:
    """The RTM_NEWADDR messages in a netlink buffer, as addresses."""
    for offset, length, kind, _ in iter_messages(data):
        if kind != RTM_NEWADDR or length < NLMSG_HDRLEN + IFADDRMSG.size:
            continue
        family, prefixlen, _, _, _ = IFADDRMSG.unpack_from(data, offset + NLMSG_HDRLEN)
        start = offset + NLMSG_HDRLEN + IFADDRMSG.size
        fields = dict(iter_attrs(data, start, offset + length))
        # IFA_LOCAL is the host's own where there is a peer (IFA_ADDRESS is then the peer's).
        local = fields.get(IFA_LOCAL, fields.get(IFA_ADDRESS))
        if local is None or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        broadcast = fields.get(IFA_BROADCAST)
        yield InterfaceAddress(
            ipaddress.ip_address(local),
            prefixlen,
            None if broadcast is None else ipaddress.ip_address(broadcast),
        )


def host_addresses(addresses: Iterable[InterfaceAddress]) -> HostAddresses:
    """The view `refusal` reads: own addresses, directed broadcasts, and the network addresses
    of attached IPv4 subnets wider than /31 (a /31 or /32 has no network or broadcast address)."""
    own: set[IPAddress] = set()
    broadcasts: set[IPAddress] = set()
    networks: set[IPAddress] = set()
    for a in addresses:
        own.add(a.local)
        if a.local.version != 4 or a.prefixlen >= 31:
            continue
        net = ipaddress.ip_network(f"{a.local}/{a.prefixlen}", strict=False)
        networks.add(net.network_address)
        broadcasts.add(net.broadcast_address)
        if a.broadcast is not None:
            broadcasts.add(a.broadcast)
    return HostAddresses(frozenset(own), frozenset(broadcasts), frozenset(networks))


def dump_addresses() -> HostAddresses:
    """Ask the kernel for every address of this network namespace (one RTM_GETADDR dump)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        request = NLMSGHDR.pack(
            NLMSG_HDRLEN + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        sock.send(request + body)
        found: list[InterfaceAddress] = []
        while True:
            data = sock.recv(1 << 16)
            found += parse_addresses(data)
            kinds = {kind for _, _, kind, _ in iter_messages(data)}
            if kinds & {NLMSG_DONE, NLMSG_ERROR} or not data:
                return host_addresses(found)


class HostAddressWatcher:
    """The host's addresses, current: `view`, and `refusal` of a source against it."""

    def __init__(self, interval: float = REFRESH_INTERVAL) -> None:
        self.view = dump_addresses()
        self._interval = interval
        self._news = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._news.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self._stop_read, self._stop_write = socket.socketpair()
        self._thread = threading.Thread(target=self._watch, name="host-addresses", daemon=True)
        self._thread.start()

    def refusal(self, address: IPAddress) -> str | None:
        return refusal(address, self.view)

    def _watch(self) -> None:
        while True:
            ready = select.select([self._news, self._stop_read], [], [], self._interval)[0]
            if self._stop_read in ready:
                return
            if self._news in ready:
                # What changed does not matter: look again. An overrun neither: the dump sees all.
                with contextlib.suppress(OSError):
                    self._news.recv(1 << 16)
            try:
                self.view = dump_addresses()
            except OSError as exc:
                log.warning("cannot read this host's addresses (%s); keeping the last known", exc)

    def close(self) -> None:
        self._stop_write.send(b"x")
        self._thread.join(timeout=2.0)
        for sock in (self._news, self._stop_read, self._stop_write):
            sock.close()
