"""A lab of network namespaces: a server and a client joined by a veth pair, for the tests, the
demo and the benchmarks. Addresses come only from 198.18.0.0/15 and 2001:db8::/32; nothing is
created in, or sent to, the host's own namespace, and everything is deleted on exit, also on error.

Sockets can be opened inside a namespace from this process (`Host.socket`), so probes and knock
floods need no subprocess per packet. Daemons run inside a namespace as knocklab.daemons'
`LabDaemon`s; spoofed packets and floods are knocklab.packets'.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from knocklab.packets import tcp_segment
from knocknft.client.knock import Target, knock_once
from knocknft.config import parse_port_spec

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
# Each hand-made segment from a source port of its own: the daemon takes a segment with the source
# port and sequence number of the knock it last counted for a retransmission, not a knock.
_SOURCE_PORTS = itertools.cycle(range(40000, 60000))
# Files `ip netns exec NAME` bind-mounts over /etc's (hosts, resolv.conf): a namespace's own.
NETNS_ETC = Path("/etc/netns")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_netns(name: str, func: object) -> object:
    """Call `func()` on a thread that has entered namespace `name`; other threads stay put."""
    result: list[object] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append(func())  # type: ignore[operator]
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


@dataclass
class Host:
    """One namespace of the lab, with its addresses on the shared link."""

    netns: str
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address
    ifname: str = "eth0"

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(*args),
            check=check,
            timeout=timeout,
            input=input,
            capture_output=True,
            text=True,
        )

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cmd(*args), text=True, **kwargs)  # type: ignore[call-overload,no-any-return]

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket that lives in this namespace."""
        sock = run_in_netns(self.netns, lambda: socket.socket(family, kind, proto))
        assert isinstance(sock, socket.socket)
        return sock

    def write_etc(self, name: str, text: str) -> Path:
        """/etc/NAME as programs run in this namespace see it (/etc/netns/NETNS/NAME): written
        in place, so a process already running sees the change (its bind mount holds the
        inode). The lab removes it with the namespace."""
        path = NETNS_ETC / self.netns / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as file:
            file.write(text)
        return path

    def add_address(self, address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """Another address on this host's link interface (e.g. a second client)."""
        addr = ipaddress.ip_address(address)
        prefix = 24 if addr.version == 4 else 64
        extra = ["nodad"] if addr.version == 6 else []
        _ip("-n", self.netns, "addr", "add", f"{addr}/{prefix}", "dev", self.ifname, *extra)
        return addr

    def knock(
        self, address: str, *steps: str, source: str | None = None, delay: float = 0.0
    ) -> None:
        """Knock from this host exactly as the `knock` client does (one SYN / one datagram)."""
        target = Target(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        for index, step in enumerate(steps):
            if index and delay:
                time.sleep(delay)
            knock_once(target, parse_port_spec(step), source, self.socket)

    def send_tcp(self, address: str, port: int, flags: int, source: str) -> None:
        """One hand-made TCP segment with the given flags (e.g. SYN+ACK), via a raw socket: a
        knock of its own, never a retransmission of the one before."""
        v6 = ":" in address
        sock = self.socket(
            socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP
        )
        try:
            segment = tcp_segment(source, address, next(_SOURCE_PORTS), port, flags)
            sock.sendto(segment, (address, 0))
        finally:
            sock.close()

    def tcp_reachable(
        self, address: str, port: int, timeout: float = 1.0, source: str | None = None
    ) -> bool:
        """Whether a TCP connection from this host to address:port completes within timeout."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = self.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            if source:
                sock.bind((source, 0))
            sock.connect((address, port))
            return True
        except (TimeoutError, ConnectionRefusedError, OSError):
            return False
        finally:
            sock.close()


class Listener:
    """A TCP server on both families that accepts and closes: the 'protected service'.

    With `echo`, it keeps each connection open instead and sends back what it reads, for tests
    of what happens to an established session."""

    def __init__(self, host: Host, port: int, echo: bool = False) -> None:
        self._sock = host.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self._sock.bind(("::", port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._echo = echo
        self.accepted = 0
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if not self._echo:
                conn.close()
                continue
            thread = threading.Thread(target=self._echo_on, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo_on(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._sock.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unique_name(tag: str) -> str:
    # Short (ip netns names become /run/netns files) and unique per process and call.
    return f"kn-{tag[:8]}-{os.getpid()}-{secrets.token_hex(3)}"


class Lab:
    """Server and client namespaces joined by veth; a context manager that always cleans up."""

    SERVER_V4 = "198.18.0.1"
    CLIENT_V4 = "198.18.0.2"
    SERVER_V6 = "2001:db8::1"
    CLIENT_V6 = "2001:db8::2"

    def __init__(self, tag: str = "lab") -> None:
        base = unique_name(tag)
        self.server = Host(
            f"{base}-s",
            ipaddress.IPv4Address(self.SERVER_V4),
            ipaddress.IPv6Address(self.SERVER_V6),
        )
        self.client = Host(
            f"{base}-c",
            ipaddress.IPv4Address(self.CLIENT_V4),
            ipaddress.IPv6Address(self.CLIENT_V6),
        )
        self._created: list[str] = []

    def __enter__(self) -> Lab:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _create(self) -> None:
        for host in (self.server, self.client):
            _ip("netns", "add", host.netns)
            self._created.append(host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
        # Both ends are made inside the namespaces: the host's interfaces are never touched.
        _ip(
            "-n",
            self.server.netns,
            "link",
            "add",
            self.server.ifname,
            "type",
            "veth",
            "peer",
            "name",
            self.client.ifname,
            "netns",
            self.client.netns,
        )
        for host in (self.server, self.client):
            _ip("-n", host.netns, "addr", "add", f"{host.v4}/24", "dev", host.ifname)
            _ip("-n", host.netns, "addr", "add", f"{host.v6}/64", "dev", host.ifname, "nodad")
            _ip("-n", host.netns, "link", "set", host.ifname, "up")
        self._wait_link()

    def _wait_link(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.client.run("ip", "-6", "route", "get", str(self.server.v6), check=False)
            if out.returncode == 0 and self.client.ifname in out.stdout:
                return
            time.sleep(0.05)

    def close(self) -> None:
        for name in reversed(self._created):
            for attempt in range(20):
                result = subprocess.run(
                    ["ip", "netns", "del", name], check=False, capture_output=True, text=True
                )
                if result.returncode == 0 or not (NETNS_DIR / name).exists():
                    break
                # A process still inside keeps the namespace busy for a moment after it exits.
                time.sleep(0.05 * (attempt + 1))
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self._created.clear()


def can_use_namespaces() -> str | None:
    """Why the lab cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nft)"
    for tool in ("ip", "nft"):
        if not any(
            (Path(d) / tool).exists()
            for d in [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin"]
        ):
            return f"{tool} is not installed"
    try:
        import nftables  # noqa: F401
    except ImportError:
        return "the nftables Python binding is missing (python3-nftables)"
    return None
