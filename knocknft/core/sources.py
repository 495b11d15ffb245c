"""Which knock sources may be granted: unicast addresses that are not this host's own.

Pure: a function of the address and a read-only view of the host's addresses
(`HostAddresses`, which knocknft.netlink.hostaddrs keeps up to date from the kernel).

A knock's source is whatever the sender wrote, so a forged completion from a broadcast, a
network address, a reserved or a loopback address, or from the host itself, would put that
address in the allowlist and run the door's commands with it (`%IP%` = 255.255.255.255, or the
server's own address). `refusal` names the class of every address that is never a client's;
`decide` asks it for each completed sequence, before any grant or command, so the check costs
nothing per knock. An IPv4-mapped or -compatible IPv6 address (`::ffff:127.0.0.1`) is judged,
and shown, as the IPv4 address it carries.

Loopback is the one exception, and only when the admin asks for knocks on it (`lo` among the
interfaces: the one-machine lab, `telnet localhost 7000`): a loopback source is then this host
knocking itself, which the kernel guarantees, as it lets a packet from 127.0.0.0/8 or ::1 in
only on the loopback interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from knocknft.config import IPAddress

_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")
LOOPBACK = "lo"


@dataclass(frozen=True)
class HostAddresses:
    """This host's own addresses, its interfaces' directed broadcasts, and the network addresses
    of its directly attached IPv4 subnets wider than /31 (where they name no host)."""

    own: frozenset[IPAddress] = frozenset()
    broadcasts: frozenset[IPAddress] = frozenset()
    networks: frozenset[IPAddress] = frozenset()


NO_HOST_ADDRESSES = HostAddresses()


def hears_loopback(interfaces: Iterable[str]) -> bool:
    """Whether knocks on loopback count, and the protected services are gated there too: only
    when options.interfaces (or `run -i`) names `lo` itself; by default loopback is left alone."""
    return LOOPBACK in interfaces


def from_loopback(address: IPAddress) -> bool:
    """A loopback source as sent (127.0.0.0/8 or ::1), not an IPv4-mapped one (which the kernel
    does not keep off other interfaces the same way)."""
    return address.is_loopback if address.version == 4 else address == _IPV6_LOOPBACK


def as_shown(address: IPAddress) -> IPAddress:
    """The address as it is judged and logged: an IPv4-mapped or -compatible IPv6 address is the
    IPv4 address it carries; any other is itself."""
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        if address in _COMPATIBLE and int(address) > 1:  # not :: nor ::1, which are their own
            return ipaddress.IPv4Address(int(address))
    return address


def refusal(address: IPAddress, host: HostAddresses = NO_HOST_ADDRESSES) -> str | None:  # noqa: PLR0911 - one return per class of address, in the order they are told apart
    """Why `address` may never be granted, or None for a unicast address not this host's."""
    address = as_shown(address)
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address == _LIMITED_BROADCAST or address in host.broadcasts:
        return "a broadcast address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.version == 4 and address.is_reserved:
        return "a reserved address"
    if address in host.networks:
        return "a network address"
    if address in host.own:
        return "this host's own address"
    return None
