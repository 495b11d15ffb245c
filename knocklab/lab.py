"""A lab of network namespaces: a server and a client joined by a veth pair, for the tests, the
demo and the benchmarks. Addresses come only from 198.18.0.0/15 and 2001:db8::/32; nothing is
created in, or sent to, the host's own namespace, and everything is deleted on exit, also on error.

Sockets can be opened inside a namespace from this process (`Host.socket`), so probes and knock
floods need no subprocess per packet. Daemons (knocknft's, and Debian's knockd to compare with) run
inside a namespace as `LabDaemon`s, stopped also when the caller fails half-way.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from knocknft.client.knock import Target, knock_once
from knocknft.config import parse_port_spec

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
# Debian's knockd, the daemon knocknft replaces: the peer the tests and benchmarks compare with.
KNOCKD = Path("/usr/sbin/knockd")


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
        """One hand-made TCP segment with the given flags (e.g. SYN+ACK), via a raw socket."""
        v6 = ":" in address
        sock = self.socket(
            socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP
        )
        try:
            segment = tcp_segment(source, address, 40000, port, flags)
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


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(source: str, destination: str, sport: int, dport: int, flags: int) -> bytes:
    """A 20-byte TCP header with a valid checksum (the kernel adds the IP header)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    header = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(header), socket.IPPROTO_TCP)
    checksum = _checksum(pseudo + header)
    return header[:16] + struct.pack("!H", checksum) + header[18:]


# Spoofed knockers: distinct sources inside 198.18.0.0/15 and away from the lab's own /24, more
# of them than the engine's default cap of 65536 attempts, so a flood can overfill it.
SPOOFED_NETWORKS = (
    ipaddress.IPv4Network("198.19.0.0/16"),
    ipaddress.IPv4Network("198.18.128.0/17"),
)
SPOOFED_SOURCES = sum(net.num_addresses for net in SPOOFED_NETWORKS)


def spoofed_source(index: int) -> ipaddress.IPv4Address:
    """The index-th spoofed source: 198.19.0.0 upwards, then 198.18.128.0 upwards, wrapping."""
    index %= SPOOFED_SOURCES
    for net in SPOOFED_NETWORKS:
        if index < net.num_addresses:
            return net[index]
        index -= net.num_addresses
    raise AssertionError("unreachable: index was reduced modulo SPOOFED_SOURCES")


def spoofed_syn(index: int, destination: str, port: int) -> bytes:
    """A SYN to destination:port from the index-th spoofed source, IPv4 header included, for a
    raw IPPROTO_RAW socket: a first-step knock from a new source is the engine's costly case."""
    source = str(spoofed_source(index))
    tcp = tcp_segment(source, destination, 40000, port, 0x02)
    src, dst = socket.inet_aton(source), socket.inet_aton(destination)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst)
    return header + tcp


def flood(
    host: Host,
    packets: Sequence[bytes],
    destination: str,
    rate: int,
    seconds: float,
    *,
    stop: threading.Event | None = None,
) -> tuple[int, float]:
    """Send `packets` round-robin from `host` at `rate` per second; returns (sent, took).

    Bounded in count (rate * seconds) and in time (seconds, plus one to catch up), and ends early
    when `stop` is set: a flood always ends by itself. Packets go out in bursts of a
    millisecond's worth, paced against the clock."""
    sock = host.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    target = (destination, 0)
    total = int(rate * seconds)
    burst = max(1, rate // 1000)
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds + 1.0
    try:
        while sent < total and not (stop is not None and stop.is_set()):
            due = started + sent / rate
            now = time.perf_counter()
            if now > deadline:
                break
            if now < due:
                time.sleep(due - now)
            for _ in range(min(burst, total - sent)):
                sock.sendto(packets[sent % len(packets)], target)
                sent += 1
    finally:
        sock.close()
    return sent, time.perf_counter() - started


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS): what a flood costs the daemon."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS in /proc/{pid}/status")


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
        self._created.clear()


def wait_for_log(
    path: Path,
    text: str,
    timeout: float = 5.0,
    count: int = 1,
    check: Callable[[], None] = lambda: None,
) -> str:
    """Poll a log file until `text` is in it `count` times; `check` raises if waiting is futile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text() if path.exists() else ""
        if log.count(text) >= count:
            return log
        check()
        time.sleep(0.02)
    log = path.read_text() if path.exists() else "(no log file)"
    raise AssertionError(f"{text!r} (x{count}) not in {path} after {timeout}s:\n{log}")


class LabDaemon:
    """A long-running program inside one of the lab's namespaces, its stdout and stderr appended
    to `log_path`. Ready once `ready` is logged; stopped with SIGTERM (SIGKILL if it lingers) by
    `stop` or on leaving a `with` block. A daemon that fails to get ready is stopped too: a
    process left behind would keep its namespace alive after the lab is deleted. `cpu` pins it
    to one CPU (the benchmarks give the daemon a core of its own); `env` is added to this
    process's environment; `name` is how failures call it (argv[0]'s name by default)."""

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        log_path: Path,
        ready: str,
        *,
        timeout: float = 10.0,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.host = host
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            host.cmd(*pinned, *argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        try:
            self.wait_for(ready, timeout=timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @property
    def pid(self) -> int:
        # `ip netns exec` (and `taskset`) exec the program: the Popen pid is the daemon itself.
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float = 5.0, count: int = 1) -> str:
        def alive() -> None:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")

        return wait_for_log(self.log_path, text, timeout, count, alive)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LabDaemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_knockd(
    host: Host, config: Path, log_path: Path, verbose: bool = True, cpu: int | None = None
) -> LabDaemon:
    """Debian's knockd on `host`'s lab interface. -v makes it log every stage and OPEN SESAME
    to stdout, flushed line by line, and "listening on IFACE..." once its pcap filter is set.
    Without -v, `config` must have `LogFile = log_path`: knockd logs "starting up, listening on
    IFACE" there instead, and every stage too (as it does in production)."""
    return LabDaemon(
        host,
        [str(KNOCKD), "-i", host.ifname, "-c", str(config), *(["-v"] if verbose else [])],
        log_path,
        f"listening on {host.ifname}",
        cpu=cpu,
    )


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
