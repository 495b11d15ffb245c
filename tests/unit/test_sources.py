"""Who may be granted: unicast addresses that are not this host's own, IPv4 in IPv6 as IPv4."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket

import pytest

from knocknft.config import parse_config
from knocknft.core.events import Opened
from knocknft.core.sources import as_shown, from_loopback, hears_loopback, refusal
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.base import NLMSG_HDRLEN, NLMSGHDR, attr
from knocknft.netlink.hostaddrs import (
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_LOCAL,
    IFADDRMSG,
    host_addresses,
    parse_addresses,
)
from tests.unit.fakes import RecordingRunner, loaded_nft

CONFIG = """\
doors:
  ssh:
    sequence: [7000/tcp, 8000/tcp, 9000/tcp]
    open: [22/tcp]
    open_for: 60s
    start_command: echo %IP%
"""


def ifaddr(family: int, prefixlen: int, *attrs: bytes) -> bytes:
    body = IFADDRMSG.pack(family, prefixlen, 0, 0, 2) + b"".join(attrs)
    return NLMSGHDR.pack(NLMSG_HDRLEN + len(body), 20, 0, 1, 0) + body  # RTM_NEWADDR


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# The lab's server: 198.18.0.1/24 on eth0, 2001:db8::1/64, and a point-to-point /31.
DUMP = (
    ifaddr(
        socket.AF_INET,
        24,
        attr(IFA_ADDRESS, ip("198.18.0.1").packed),
        attr(IFA_LOCAL, ip("198.18.0.1").packed),
        attr(IFA_BROADCAST, ip("198.18.0.255").packed),
    )
    + ifaddr(socket.AF_INET, 31, attr(IFA_LOCAL, ip("198.18.9.0").packed))
    + ifaddr(socket.AF_INET6, 64, attr(IFA_ADDRESS, ip("2001:db8::1").packed))
    + ifaddr(socket.AF_INET, 8, attr(IFA_LOCAL, ip("127.0.0.1").packed))
)
HOST = host_addresses(parse_addresses(DUMP))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("0.0.0.0", "an unspecified address"),
        ("0.1.2.3", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "a broadcast address"),
        ("198.18.0.255", "a broadcast address"),
        ("198.18.0.0", "a network address"),
        ("240.0.0.1", "a reserved address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:198.18.0.255", "a broadcast address"),
        ("::198.18.0.1", "this host's own address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("198.18.0.1", "this host's own address"),
        ("2001:db8::1", "this host's own address"),
        ("::ffff:198.18.0.1", "this host's own address"),
        # Unicast clients: a /31's two ends are hosts, and so are other subnets' .0 and .255.
        ("198.18.9.1", None),
        ("198.18.1.0", None),
        ("198.18.1.255", None),
        ("198.18.0.2", None),
        ("2001:db8::2", None),
        ("::ffff:198.18.0.2", None),
    ],
)
def test_only_unicast_sources_not_the_hosts_own_may_be_granted(
    source: str, reason: str | None
) -> None:
    assert refusal(ip(source), HOST) == reason


def test_the_kernels_address_dump_is_read_with_local_over_peer() -> None:
    assert ip("198.18.9.0") in HOST.own and ip("198.18.0.1") in HOST.own
    assert HOST.networks == {ip("198.18.0.0"), ip("127.0.0.0")}  # not the /31's
    assert HOST.broadcasts == {ip("198.18.0.255"), ip("127.255.255.255")}
    assert ip("2001:db8::1") in HOST.own


def test_ipv4_mapped_sources_are_shown_as_ipv4() -> None:
    assert as_shown(ip("::ffff:198.18.0.2")) == ip("198.18.0.2")
    assert as_shown(ip("::1")) == ip("::1")
    assert as_shown(ip("2001:db8::2")) == ip("2001:db8::2")


def test_an_odd_source_opens_nothing_runs_nothing_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config(CONFIG).config
    nft = loaded_nft(config)
    runner = RecordingRunner()
    daemon = Daemon(config, nft, runner, PendingStops(None), clock=lambda: 0.0)
    daemon.source_check = lambda address: refusal(address, HOST)
    door = config.doors[0]
    odd = ["198.18.0.255", "198.18.0.0", "240.0.0.1", "::", "::ffff:127.0.0.1", "fe80::1"]
    odd.append("198.18.0.1")
    with caplog.at_level(logging.INFO, logger="knocknft"):
        daemon.execute([Opened(ip(a), door, 0.0) for a in odd])
        assert nft.transactions == [] and runner.commands == []
        daemon.execute([Opened(ip("::ffff:198.18.0.2"), door, 0.0)])
    assert daemon.stats()["odd_addresses_refused"] == len(odd)
    assert "127.0.0.1: ssh: sequence completed from a loopback address" in caplog.text
    assert "198.18.0.2: ssh: OPEN SESAME" in caplog.text  # the mapped source, shown as IPv4
    assert len(runner.commands) == 1


def test_loopback_sources_are_the_host_itself_only_as_sent() -> None:
    assert from_loopback(ip("127.0.0.1")) and from_loopback(ip("127.9.9.9"))
    assert from_loopback(ip("::1"))
    assert not from_loopback(ip("::ffff:127.0.0.1")), "a mapped one may come in on any interface"
    assert not from_loopback(ip("198.18.0.1")) and not from_loopback(ip("::"))
    assert hears_loopback(("eth0", "lo")) and not hears_loopback(("eth0", "lo*", "lo0"))


@pytest.mark.parametrize(
    ("interfaces", "opens"), [(("lo",), True), ((), False), (("eth0",), False)]
)
def test_a_loopback_knock_opens_only_when_knocks_are_heard_on_loopback(
    interfaces: tuple[str, ...], opens: bool
) -> None:
    """`run -i lo` and `telnet localhost 7000`: the knocker is 127.0.0.1 or ::1, this host's own
    addresses, and that is the lab's intent; a mapped loopback source stays refused."""
    config = parse_config(CONFIG).config
    config = dataclasses.replace(
        config, options=dataclasses.replace(config.options, interfaces=interfaces)
    )
    runner = RecordingRunner()
    daemon = Daemon(config, loaded_nft(config), runner, PendingStops(None), clock=lambda: 0.0)
    daemon.source_check = lambda address: refusal(address, HOST)
    door = config.doors[0]
    daemon.execute([Opened(ip(a), door, 0.0) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1")])
    assert len(runner.commands) == (2 if opens else 0)
    assert daemon.stats()["odd_addresses_refused"] == (1 if opens else 3)
