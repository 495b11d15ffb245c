"""What the benchmarks share: the lab they run in, the daemons under test, and
the readings (the kernel's word that a grant is in effect, CPU time and memory from /proc).

Everything stays inside the namespaces of one `Lab`: addresses from 198.18.0.0/15 and
2001:db8::/32 only, spoofed sources included. The server routes both ranges back over the lab
link, so spoofed sources pass its reverse-path checks; knock ports are dropped on the server
under both daemons, so it never answers a spoofed source. Every send is bounded in count and
time.

Address plan (the lab's link is 198.18.0.0/24):
- knockers with real addresses on the client, whose grants are probed: 198.18.1.0 up (16128);
- spoofed sources: knocklab.packets' (IPv4 from 198.18.64.0 up, IPv6 from 2001:db8:1:: up).
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from knocklab.daemons import LabDaemon, start_knockd
from knocklab.lab import Host, Lab, run_in_netns
from knocknft.netlink.base import (
    NETLINK_NETFILTER,
    NFNL_SUBSYS_NFTABLES,
    NFNLGRP_NFTABLES,
    NFT_MSG_NEWSETELEM,
    iter_messages,
)

BIN = Path(sys.executable).parent
# The message types nf_tables announces a new set element and a new rule with: knocknft and
# knockd's start command grant with an element, fwknopd with an iptables(-nft) rule.
NEW_ELEMENT = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
NFT_MSG_NEWRULE = 6  # include/uapi/linux/netfilter/nf_tables.h
NEW_RULE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE

# On a machine with two cores or more, the daemon gets a core of its own and the sender (with
# the kernel work its packets cause: veth, nftables, NFLOG, pcap) the other: "one core" for the
# daemon, and the sender's work never billed to it.
DAEMON_CPU = (os.cpu_count() or 1) - 1
SENDER_CPUS = set(range(DAEMON_CPU)) or {0}

SEQUENCE = ("7000", "9000/udp", "8000")
FIRST_PORT = 7000
PROTECTED_PORT = 22

KNOCKERS_V4 = ipaddress.IPv4Address("198.18.1.0")
KNOCKERS_V4_COUNT = 63 * 256


@contextmanager
def bench_lab(tag: str) -> Iterator[Lab]:
    """A lab whose server routes all of 198.18.0.0/15 and 2001:db8::/32 over the link."""
    with Lab(tag) as lab:
        lab.server.run("ip", "route", "add", "198.18.0.0/15", "dev", lab.server.ifname)
        lab.server.run("ip", "-6", "route", "add", "2001:db8::/32", "dev", lab.server.ifname)
        yield lab


def add_knockers(host: Host, count: int) -> list[str]:
    """`count` more addresses on the client (one `ip -batch`), for knockers whose grant is then
    probed with real connections."""
    if count > KNOCKERS_V4_COUNT:
        raise ValueError(f"at most {KNOCKERS_V4_COUNT} knockers")
    addresses = [str(KNOCKERS_V4 + i) for i in range(count)]
    script = "".join(f"address add {a}/32 dev {host.ifname}\n" for a in addresses)
    host.run("ip", "-batch", "-", input=script)
    return addresses


# -- the daemons under test -------------------------------------------------------------------

KNOCKNFT_CONFIG = """\
options:
  interfaces: [eth0]
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    seq_timeout: {seq_timeout}s
    open: [22/tcp]
    open_for: 30s
"""

# knockd's equivalent: the same door, and a start command that grants as knocknft does, an
# element in a set of an nft table that guards port 22 and drops knocks (a firewall with a DROP
# policy drops them too; knockd sees them through pcap all the same). `nft add element` is the
# fastest grant a knockd command can make; the usual `iptables -A` is slower.
KNOCKD_CONFIG = """\
[options]
\tLogFile = {log}

[ssh]
\tsequence = 7000,9000:udp,8000
\tseq_timeout = {seq_timeout}
\tstart_command = nft add element inet knockbench allow4 {{ %IP% . tcp . 22 }}
\tstart_command_6 = nft add element inet knockbench allow6 {{ %IP% . tcp . 22 }}
"""

KNOCKD_TABLE = """\
table inet knockbench {
  set allow4 { type ipv4_addr . inet_proto . inet_service; flags timeout; timeout 30s; }
  set allow6 { type ipv6_addr . inet_proto . inet_service; flags timeout; timeout 30s; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iif "lo" accept
    ct state established,related accept
    meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 8000 } drop
    ip saddr . meta l4proto . th dport @allow4 accept
    ip6 saddr . meta l4proto . th dport @allow6 accept
    tcp dport 22 drop
  }
}
"""


def fresh_server(lab: Lab, ruleset: str = "") -> None:
    """The server's nftables as the next daemon expects them: nothing left of the previous one
    (its table would drop the knocks or guard port 22 on its own), then `ruleset`."""
    lab.server.run("nft", "-f", "-", input=f"flush ruleset\n{ruleset}")


class Contender(Protocol):
    """A daemon under test, started fresh (on a fresh ruleset) for each measurement."""

    name: str

    def start(self, lab: Lab, workdir: Path, seq_timeout: int) -> LabDaemon: ...

    def judged(self, daemon: LabDaemon, workdir: Path) -> int:
        """Knock packets it has judged; called once it has stopped."""
        ...

    def lost(self, daemon: LabDaemon, workdir: Path) -> int | None:
        """Knocks it knows it missed (None: it cannot tell); called once it has stopped."""
        ...

    def counters(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        """What else it counts of itself; called once it has stopped."""
        ...


class Knocknft:
    name = "knocknft"

    def start(self, lab: Lab, workdir: Path, seq_timeout: int) -> LabDaemon:
        config = workdir / "config.yaml"
        config.write_text(KNOCKNFT_CONFIG.format(seq_timeout=seq_timeout))
        fresh_server(lab)
        argv = [str(BIN / "knocknft"), "run", "-c", str(config), "--state-dir", str(workdir)]
        return LabDaemon(
            lab.server, argv, workdir / "knocknft.log", "listening on NFLOG", cpu=DAEMON_CPU
        )

    def _stats(self, workdir: Path) -> dict[str, float]:
        stats: dict[str, float] = json.loads((workdir / "stats.json").read_text())
        return stats

    def judged(self, daemon: LabDaemon, workdir: Path) -> int:
        return int(self._stats(workdir)["knocks"])

    def lost(self, daemon: LabDaemon, workdir: Path) -> int | None:
        return int(self._stats(workdir)["nflog_lost"])

    def counters(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        stats = self._stats(workdir)
        keys = ("knocks", "attempts_tracked", "attempts_cap", "evictions", "nflog_lost")
        return {key: int(stats[key]) for key in keys if key in stats}


class Knockd:
    name = "knockd"

    def start(self, lab: Lab, workdir: Path, seq_timeout: int) -> LabDaemon:
        fresh_server(lab, KNOCKD_TABLE)
        log = workdir / "knockd.log"
        config = workdir / "knockd.conf"
        config.write_text(KNOCKD_CONFIG.format(log=log, seq_timeout=seq_timeout))
        return start_knockd(lab.server, config, log, verbose=False, cpu=DAEMON_CPU)

    def judged(self, daemon: LabDaemon, workdir: Path) -> int:
        # Every knock the benchmarks send to knockd is its sender's first, on the first port:
        # each one it sees starts an attempt and logs exactly one "Stage 1".
        return daemon.log().count(": Stage 1")

    def lost(self, daemon: LabDaemon, workdir: Path) -> int | None:
        return None  # pcap's drop counter is not reported by knockd

    def counters(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        return {"stage_1_logged": self.judged(daemon, workdir)}


CONTENDERS: dict[str, Contender] = {"knockd": Knockd(), "knocknft": Knocknft()}


# -- readings ---------------------------------------------------------------------------------


def element_monitor(host: Host) -> socket.socket:
    """A netlink socket in `host`'s namespace that hears every nftables change (set elements
    included) as the kernel commits it."""

    def open_monitor() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        return sock

    sock = run_in_netns(host.netns, open_monitor)
    assert isinstance(sock, socket.socket)
    return sock


def has_new_element(data: bytes, kinds: Collection[int] = (NEW_ELEMENT,)) -> bool:
    return any(kind in kinds for _, _, kind, _ in iter_messages(data))


def wait_new_element(
    monitor: socket.socket, timeout: float = 2.0, kinds: Collection[int] = (NEW_ELEMENT,)
) -> float | None:
    """perf_counter() when the next new set element (or other message of `kinds`) is announced,
    None after `timeout`."""
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([monitor], [], [], left)[0]:
            return None
        data = monitor.recv(1 << 16)
        now = time.perf_counter()
        if has_new_element(data, kinds):
            return now


Timing = tuple[float | None, float | None]  # ms to the grant announced, to port 22 reachable


def tcp_from(source: str) -> socket.socket:
    """A non-blocking TCP socket bound to `source`, in the namespace of the calling thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


def time_grant(
    monitor: socket.socket,
    server: str,
    source: str,
    fire: Callable[[], object],
    *,
    timeout: float = 2.0,
    kinds: Collection[int] = (NEW_ELEMENT,),
) -> Timing:
    """Runs in the client's namespace: `fire()` the request that should grant `source` (its last
    knock, its SPA packet), and time the grant's announcement and then a connection from `source`
    to the server's port 22, made right after it, being established. The probe's socket exists
    before the clock starts: only the request and the grant are timed."""
    probe = tcp_from(source)
    try:
        sent = time.perf_counter()
        fire()
        seen = wait_new_element(monitor, timeout, kinds)
        reached = None
        if seen is not None:
            probe.connect_ex((server, PROTECTED_PORT))
            writable = select.select([], [probe], [], 0.5)[1]
            done = time.perf_counter()
            if writable and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                reached = (done - sent) * 1000
    finally:
        probe.close()
    drain(monitor)
    return (None if seen is None else (seen - sent) * 1000, reached)


def drain(monitor: socket.socket, quiet: float = 0.005) -> None:
    """Read what is queued, e.g. the delete/add pair of a refreshed grant."""
    while select.select([monitor], [], [], quiet)[0]:
        monitor.recv(1 << 16)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, all its threads, user and system, to the nanosecond: the
    kernel's per-process CPU clock (clock_getcpuclockid(3) encodes it as below). /proc's
    utime and stime count 10 ms ticks, too coarse to time a thousand knocks."""
    process_sched_clock = ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    return time.clock_gettime(process_sched_clock)


def wait_idle(pid: int, timeout: float, quiet: float = 0.3, busy: float = 0.0) -> bool:
    """Wait until the process has used no more than `busy` of a CPU for `quiet` seconds (it has
    worked off what was sent; fwknopd, which wakes every 100 ms with nothing to do, needs a
    share above 0); False if it was still busy after `timeout`."""
    deadline = time.monotonic() + timeout
    last, last_at = cpu_seconds(pid), time.monotonic()
    still_since = last_at
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now, now_at = cpu_seconds(pid), time.monotonic()
        if now - last > busy * (now_at - last_at):
            still_since = now_at
        elif now_at - still_since >= quiet:
            return True
        last, last_at = now, now_at
    return False


def rate_step(
    rate: int, sent: int, took: float, *, judged: int, idle: bool, cpu: float, label: str = ""
) -> dict[str, Any]:
    """One step of a rate search: `sent` packets in `took` s at `rate` asked, `judged` of them
    by the daemon, which went `idle` (or not) having used `cpu` s; printed as it goes."""
    step = {
        "target_rate": rate,
        "sent": sent,
        "achieved_rate": round(sent / took),
        "judged": judged,
        "drained": idle,
        "ok": idle and judged == sent,
        "cpu_s_per_100k": round(cpu / judged * 100_000, 3) if judged else None,
    }
    print(
        f"  {label}{step['achieved_rate']}/s: sent {sent}, judged {judged}"
        f"{'' if idle else ' (still busy)'}, {step['cpu_s_per_100k']} CPU s per 100k",
        flush=True,
    )
    return step


def rate_search(
    rates: Sequence[int], tries: int, step: Callable[[int], dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rates stepped up until two in a row lose packets, a lossy rate tried again up to `tries`
    times (on a shared machine another program's burst can cost a daemon a few packets, and the
    question is what the daemon can take); every step, and the fastest with nothing lost."""
    steps: list[dict[str, Any]] = []
    failed_in_a_row = 0
    for rate in rates:
        for attempt in range(1, tries + 1):
            result = step(rate) | {"try": attempt}
            steps.append(result)
            if result["ok"]:
                break
        failed_in_a_row = 0 if result["ok"] else failed_in_a_row + 1
        if failed_in_a_row == 2:
            break
    best = max((s for s in steps if s["ok"]), key=lambda s: s["achieved_rate"], default=None)
    return steps, best


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, p50, p99, max and mean of a measurement's values (the count alone of none)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(percentile(list(values), 50), 3),
        "p99": round(percentile(list(values), 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def machine() -> dict[str, object]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "daemon_cpu": DAEMON_CPU,
        "sender_cpus": sorted(SENDER_CPUS),
        "knockd": _package_version("knockd"),
        "fwknopd": _package_version("fwknop-server"),
    }


def _package_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            check=False,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "not installed"
