"""Forwarded services against the real kernel: a port DNAT'd to a container behind the server.

The container is a third namespace, routed from the server over a second veth pair (the
server's end is `docker0`). Docker's rules (tests/data/firewalls/docker.rules, docker6.rules:
nat PREROUTING -> DOCKER -> DNAT of 8080 to the container's port 80, FORWARD policy drop with
DOCKER-USER) are loaded with iptables-restore inside the server namespace. Such a port never
reaches the input hook: knocknft gates it in prerouting, before the DNAT.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Host, Lab, Listener, unique_name
from tests.integration.support import (
    FIREWALLS,
    OTHER_V4,
    OTHER_V6,
    RIGHT,
    RunningDaemon,
    Server,
    connect,
    exchange,
    running,
    write_config,
)

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A, A6 = Lab.CLIENT_V4, Lab.CLIENT_V6
B, B6 = OTHER_V4, OTHER_V6
# The container, as docker.rules and docker6.rules know it, and the server's end of its link.
CONTAINER, CONTAINER6 = "198.19.0.2", "2001:db8:1::2"
BRIDGE, BRIDGE6 = "198.19.0.1", "2001:db8:1::1"
PUBLISHED = 8080  # -> the container's port 80, protected
OTHER_PUBLISHED = 8081  # -> the container's port 81, not protected: open to all, as Docker has it
UNPUBLISHED = 2222  # the container listens; Docker's FORWARD drops it


def config(state: Path, open_for: str, close_sessions: bool = False) -> str:
    return f"""\
options:
  state_dir: {state}
  interfaces: [eth0]
doors:
  web:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    seq_timeout: 2s
    tcpflags: syn,!ack
    open: [{PUBLISHED}/tcp]
    open_for: {open_for}
    close_sessions: {str(close_sessions).lower()}
"""


@pytest.fixture
def container(lab: Lab) -> Iterator[Host]:
    """The container namespace behind the server, with listeners on its ports 80, 81, 2222
    and 8080, deleted also when the test fails."""
    host = Host(
        unique_name("ctr"),
        ipaddress.IPv4Address(CONTAINER),
        ipaddress.IPv6Address(CONTAINER6),
    )
    listeners: list[Listener] = []
    subprocess.run(["ip", "netns", "add", host.netns], check=True)
    try:
        link(lab, host)
        listeners += [Listener(host, port, echo=True) for port in (80, 81, UNPUBLISHED, 8080)]
        wait_reachable(lab.client, CONTAINER6, 80)
        yield host
    finally:
        for listener in listeners:
            listener.close()
        subprocess.run(["ip", "netns", "del", host.netns], check=False)


def link(lab: Lab, host: Host) -> None:
    server = lab.server
    ip = ("ip", "-n")
    veth = ("type", "veth", "peer", "name", "eth0", "netns", host.netns)
    subprocess.run([*ip, server.netns, "link", "add", "docker0", *veth], check=True)
    for ns, dev, v4, v6 in (
        (server.netns, "docker0", BRIDGE, BRIDGE6),
        (host.netns, "eth0", CONTAINER, CONTAINER6),
    ):
        for command in (
            ["addr", "add", f"{v4}/24", "dev", dev],
            ["addr", "add", f"{v6}/64", "dev", dev, "nodad"],
            ["link", "set", dev, "up"],
            ["link", "set", "lo", "up"],
        ):
            subprocess.run([*ip, ns, *command], check=True)
    for command in (
        ["route", "add", "default", "via", BRIDGE],
        ["-6", "route", "add", "default", "via", BRIDGE6],
    ):
        subprocess.run([*ip, host.netns, *command], check=True)
    # The client reaches the container's network through the server, as a router's LAN would.
    for command in (
        ["route", "add", "198.19.0.0/24", "via", SERVER],
        ["-6", "route", "add", "2001:db8:1::/64", "via", SERVER6],
    ):
        subprocess.run([*ip, lab.client.netns, *command], check=True)
    for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
        server.run("sysctl", "-qw", key)


def wait_reachable(client: Host, address: str, port: int, timeout: float = 5.0) -> None:
    """IPv6 neighbour discovery on fresh links takes a moment."""
    deadline = time.monotonic() + timeout
    while not client.tcp_reachable(address, port, timeout=0.5):
        assert time.monotonic() < deadline, f"{address}:{port} never became reachable"


def load_docker(lab: Lab) -> None:
    lab.server.run("iptables-restore", str(FIREWALLS / "docker.rules"))
    lab.server.run("ip6tables-restore", str(FIREWALLS / "docker6.rules"))
    # A second published port, as `docker run -p 8081:81` adds it; knocknft does not protect it.
    for tool, target in (("iptables", f"{CONTAINER}:81"), ("ip6tables", f"[{CONTAINER6}]:81")):
        lab.server.run(
            *(tool, "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp"),
            *("--dport", str(OTHER_PUBLISHED), "-j", "DNAT", "--to-destination", target),
        )
        lab.server.run(
            *(tool, "-A", "DOCKER", "!", "-i", "docker0", "-o", "docker0", "-p", "tcp"),
            *("--dport", "81", "-j", "ACCEPT"),
        )


def knock_in(daemon: RunningDaemon, server: str, source: str) -> None:
    daemon.lab.client.knock(server, *RIGHT, source=source)
    daemon.wait_for(f"{source}: web: OPEN SESAME")


def test_a_published_port_opens_for_the_knocker_only_and_closes_again(
    lab: Lab, container: Host, tmp_path: Path
) -> None:
    client = lab.client
    client.add_address(B)
    client.add_address(B6)
    load_docker(lab)
    for address, source in ((SERVER, A), (SERVER, B), (SERVER6, A6), (SERVER6, B6)):
        assert client.tcp_reachable(address, PUBLISHED, source=source), "the problem: open to all"

    cfg = write_config(tmp_path, config(tmp_path / "state", open_for="4s"))
    server = Server(lab, cfg, tmp_path / "state")
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        for address, source in ((SERVER, A), (SERVER6, A6)):
            assert not client.tcp_reachable(address, PUBLISHED, source=source), "gated now"

        # Docker's FORWARD drops by policy what no rule it can judge accepts: the mark's accept
        # goes into DOCKER-USER, the chain Docker leaves to the admin.
        findings = server.doctor()["findings"]
        assert sorted(
            (f["table"], f["chain"], f["hook"], f["fix"].split()[:3]) for f in findings
        ) == [
            ("ip filter", "FORWARD", "forward", ["iptables", "-I", "DOCKER-USER"]),
            ("ip6 filter", "FORWARD", "forward", ["ip6tables", "-I", "DOCKER-USER"]),
        ]
        for finding in findings:
            lab.server.run(*shlex.split(finding["fix"]))
        assert server.doctor() == {"ok": True, "findings": []}

        knock_in(daemon, SERVER, A)
        assert client.tcp_reachable(SERVER, PUBLISHED, source=A), "the knocker is in"
        assert not client.tcp_reachable(SERVER, PUBLISHED, source=B), "only the knocker"
        assert status_sources(server) == [A]
        assert not client.tcp_reachable(CONTAINER, UNPUBLISHED, source=A), (
            "Docker's FORWARD still drops what it does not publish, knocker or not"
        )
        for source in (A, B):
            assert client.tcp_reachable(SERVER, OTHER_PUBLISHED, source=source), (
                "a port knocknft does not protect is Docker's to judge, as before"
            )
        assert wait_closed(client, SERVER, A), "the grant expires and the port is shut again"

        knock_in(daemon, SERVER6, A6)
        assert client.tcp_reachable(SERVER6, PUBLISHED, source=A6)
        assert not client.tcp_reachable(SERVER6, PUBLISHED, source=B6)
        assert client.tcp_reachable(SERVER6, OTHER_PUBLISHED, source=B6)
        assert wait_closed(client, SERVER6, A6)


def status_sources(server: Server) -> list[str]:
    return [grant["address"] for grant in server.status()]


def wait_closed(client: Host, address: str, source: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while client.tcp_reachable(address, PUBLISHED, source=source):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_traffic_routed_through_the_server_is_not_touched(
    lab: Lab, container: Host, tmp_path: Path
) -> None:
    """The container's own address is not this host's: its port 8080 is routed, not gated,
    even though knocknft protects 8080/tcp on the server."""
    server = Server(lab, write_config(tmp_path, config(tmp_path / "state", "1m")))
    server.knocknft("apply")
    listener = Listener(lab.server, PUBLISHED)
    try:
        assert not lab.client.tcp_reachable(SERVER, PUBLISHED), "the server's own port is gated"
        assert lab.client.tcp_reachable(CONTAINER, PUBLISHED)
        assert lab.client.tcp_reachable(CONTAINER6, PUBLISHED)
    finally:
        listener.close()


def test_close_sessions_ends_a_forwarded_connection(
    lab: Lab, container: Host, tmp_path: Path
) -> None:
    load_docker(lab)
    cfg = write_config(tmp_path, config(tmp_path / "state", "1h", close_sessions=True))
    server = Server(lab, cfg, tmp_path / "state")
    server.knocknft("apply")
    server.knocknft("open", A, "--door", "web", "--for", "2s")
    with connect(lab, PUBLISHED) as sock:  # through the DNAT to the container's echo
        time.sleep(2.5)
        started = time.monotonic()
        assert exchange(sock) == "ConnectionResetError", "the grant's end resets it"
        assert time.monotonic() - started < 1.5, "at once, not after a hang"
