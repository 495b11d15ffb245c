"""knocknft against Debian's knockd (and fwknopd), side by side, in namespaces: what `make bench`
runs.

    sudo .venv/bin/python bench/peer_bench.py [--publish docs] [options]

Both daemons run on the same lab, one after the other, each pinned to a core of its own, with
equivalent configs (harness.KNOCKD_CONFIG and harness.KNOCKNFT_CONFIG): the door 7000/tcp,
9000/udp, 8000/tcp, and a grant that is an element in an nft set guarding port 22 (knocknft's
own; knockd's start command runs `nft add element`). The same traffic goes at both:

1. Latency: a knocker with an address of its own knocks the sequence; the time from sending the
   last knock to the kernel announcing the new set element (the nftables netlink multicast,
   read by this process, so both ends use one clock), and to a connection to port 22, made
   right after that announcement, being established.
2. Throughput: spoofed first-step knocks, each from a new source, at rates stepped up until two
   in a row lose knocks; a knock is lost when the daemon has not judged it once it has gone idle.
3. Memory: distinct spoofed sources left mid-sequence (first step only), up to 1M, fed in chunks
   the daemon is let to work off, so none is dropped; at each count its VmRSS and the CPU time
   one more knock costs it. 198.18.0.0/15 holds 131072 addresses, so past 114688 the sources
   are IPv6 (2001:db8:1::/48).
4. Flood: legitimate sequences, each from an address of its own, while spoofed first-step knocks
   flood the server; a sequence succeeds when its grant appears within --legit-timeout.
5. SPA: Debian's fwknopd against knocknft on one fwknop stanza (bench/spa_bench.py).

Each run writes bench/results/<time>.json, .md and two PNG plots; --publish DIR also writes
DIR/BENCHMARKS.md with the plots in DIR/bench/. Traffic stays inside the namespaces the run
creates, every load is bounded in count and time, and the namespaces are removed on exit.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import report
import spa_bench
from harness import (
    CONTENDERS,
    FIRST_PORT,
    PROTECTED_PORT,
    SENDER_CPUS,
    SEQUENCE,
    Contender,
    Timing,
    add_knockers,
    bench_lab,
    cpu_seconds,
    drain,
    element_monitor,
    machine,
    rate_search,
    rate_step,
    summary,
    tcp_from,
    time_grant,
    wait_idle,
    wait_new_element,
)

from knocklab.daemons import LabDaemon, rss_bytes
from knocklab.lab import Lab, Listener, run_in_netns
from knocklab.packets import BackgroundFlood, SpoofedSyns, raw_socket, send_paced
from knocknft import __version__
from knocknft.client.knock import Target, knock_once
from knocknft.config import parse_port_spec

REPO = Path(__file__).resolve().parents[1]
SERVER = Lab.SERVER_V4
Result = dict[str, Any]


@dataclass(frozen=True)
class Bench:
    """What every measurement works with: the lab, a scratch folder, the options, and the
    client's own addresses, for knockers whose grants are watched."""

    lab: Lab
    root: Path
    args: argparse.Namespace
    knockers: Sequence[str]


class Run:
    """One measurement's daemon, in a folder of its own (logs and counters start empty)."""

    def __init__(self, bench: Bench, contender: Contender, label: str, seq_timeout: int):
        self.contender = contender
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{contender.name}-{label}-", dir=bench.root))
        self.daemon: LabDaemon = contender.start(bench.lab, self.workdir, seq_timeout)

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def stop(self) -> tuple[int, int | None, dict[str, int]]:
        """Stop it; (knocks judged, knocks it knows it lost, its other counters)."""
        self.daemon.stop()
        c, d, w = self.contender, self.daemon, self.workdir
        return c.judged(d, w), c.lost(d, w), c.counters(d, w)


def _knock_all_but_last(source: str) -> tuple[Target, int]:
    """In the client's namespace: the sequence but its last knock; (target, last port)."""
    target = Target(socket.AF_INET, SERVER)
    *first, last = (parse_port_spec(step) for step in SEQUENCE)
    for step in first:
        knock_once(target, step, source)
    return target, last.port


# -- 1. latency -------------------------------------------------------------------------------


def _latency_loop(monitor: socket.socket, sources: Sequence[str], pause: float) -> list[Timing]:
    """Runs in the client's namespace. Per source: knock, time the grant, probe port 22."""
    timings: list[Timing] = []
    for source in sources:
        _, last_port = _knock_all_but_last(source)
        last = tcp_from(source)  # made before the clock starts
        knock = functools.partial(last.connect_ex, (SERVER, last_port))  # one SYN, as knock_once
        timings.append(time_grant(monitor, SERVER, source, knock))
        last.close()
        time.sleep(pause)
    return timings


def measure_latency(bench: Bench, contender: Contender) -> Result:
    """--warmup sequences go first and are not counted: a daemon's first grants pay one-time
    costs (code paths run for the first time, the first netlink batch), a server's rarely."""
    warmup, pause = bench.args.warmup, bench.args.pause
    sources = bench.knockers[: warmup + bench.args.sequences]
    run = Run(bench, contender, "latency", seq_timeout=5)
    monitor = element_monitor(bench.lab.server)
    try:
        outcome = run_in_netns(
            bench.lab.client.netns, lambda: _latency_loop(monitor, sources, pause)
        )
    finally:
        monitor.close()
        run.stop()
    timings = cast(list[Timing], outcome)[warmup:]
    element_ms = [e for e, _ in timings if e is not None]
    reachable_ms = [r for _, r in timings if r is not None]
    return {
        "sequences": len(timings),
        "warmup": warmup,
        "missed": len(timings) - len(element_ms),
        "unreachable": len(element_ms) - len(reachable_ms),
        "element_ms": summary(element_ms),
        "reachable_ms": summary(reachable_ms),
        "samples_element_ms": [round(x, 4) for x in element_ms],
        "samples_reachable_ms": [round(x, 4) for x in reachable_ms],
    }


# -- 2. throughput ----------------------------------------------------------------------------


def _rate_step(bench: Bench, contender: Contender, rate: int, packets: list[bytes]) -> Result:
    """One try at one rate, on a fresh daemon."""
    seconds = bench.args.rate_seconds
    run = Run(bench, contender, f"rate{rate}", seq_timeout=60)
    sock = raw_socket(bench.lab.client, 4)
    try:
        before = cpu_seconds(run.pid)
        sent, took = send_paced(sock, SERVER, packets, rate, max_seconds=2 * seconds + 1)
        idle = wait_idle(run.pid, bench.args.drain_timeout)
        cpu = cpu_seconds(run.pid) - before
    finally:
        sock.close()
        judged, lost, _ = run.stop()
    step = rate_step(rate, sent, took, judged=judged, idle=idle, cpu=cpu)
    return step | {"not_judged": sent - judged, "lost_reported": lost}


def measure_throughput(bench: Bench, contender: Contender) -> Result:
    """Rates stepped up until two in a row lose knocks. A rate that loses knocks is tried again
    (--tries): on a shared machine another program's burst can cost a daemon a few knocks, and
    the question is what the daemon can take, not whether the machine stayed quiet."""
    knocks = SpoofedSyns(4, SERVER, FIRST_PORT)

    def step(rate: int) -> Result:
        count = min(int(rate * bench.args.rate_seconds), knocks.count)
        return _rate_step(bench, contender, rate, list(knocks.packets(0, count)))

    steps, best = rate_search(bench.args.rates, bench.args.tries, step)
    return {
        "steps": steps,
        "max_lossless_rate": best["achieved_rate"] if best else 0,
        "cpu_s_per_100k_at_max": best["cpu_s_per_100k"] if best else None,
    }


# -- 3. memory --------------------------------------------------------------------------------

# Well within what knockd's pcap buffer holds (10k already overflowed it at times), so a chunk
# it works off is not dropped.
CHUNK = 5_000


def measure_memory(bench: Bench, contender: Contender) -> Result:
    probe, fill_rate, budget = bench.args.probe, bench.args.fill_rate, bench.args.memory_budget
    v4, v6 = SpoofedSyns(4, SERVER, FIRST_PORT), SpoofedSyns(6, Lab.SERVER_V6, FIRST_PORT)
    run = Run(bench, contender, "memory", seq_timeout=3600)
    socks = {4: raw_socket(bench.lab.client, 4), 6: raw_socket(bench.lab.client, 6)}
    deadline = time.monotonic() + budget
    sent = 0
    points: list[Result] = []
    skipped: list[Result] = []

    def feed(count: int, rate: float) -> bool:
        """The next `count` sources, in chunks, each worked off before the next is sent."""
        nonlocal sent
        while count:
            chunk = min(count, CHUNK)
            for family, destination, start, n in _split(sent, chunk, v4.count):
                packets = list((v4 if family == 4 else v6).packets(start, n))
                limit = 2 * n / rate + 1
                send_paced(socks[family], destination, packets, rate, max_seconds=limit)
            sent += chunk
            count -= chunk
            if not wait_idle(run.pid, max(0.0, deadline - time.monotonic())):
                return False
        return True

    try:
        for n in bench.args.sources:
            estimate = _fill_estimate(points, n)
            if estimate is not None and estimate > deadline - time.monotonic():
                skipped.append({"sources": n, "estimated_fill_s": round(estimate)})
                print(f"  {n} sources: skipped, filling would take ~{estimate:.0f} s", flush=True)
                continue
            started = time.monotonic()
            if not feed(n - sent, fill_rate):
                # Still working through what it was sent: its memory so far says something too.
                rss = rss_bytes(run.pid) // 1024
                skipped.append({"sources": n, "sent": sent, "budget_s": budget, "rss_kib": rss})
                print(f"  {n} sources: out of time, RSS {rss / 1024:.1f} MiB", flush=True)
                break
            fill_s = time.monotonic() - started
            rss = rss_bytes(run.pid) // 1024
            before = cpu_seconds(run.pid)
            feed(probe, min(fill_rate, 10_000))
            per_packet = (cpu_seconds(run.pid) - before) / probe
            points.append(
                {
                    "sources": n,
                    "ipv6_sources": max(0, n - v4.count),
                    "rss_kib": rss,
                    "per_packet_us": round(per_packet * 1e6, 2),
                    "fill_s": round(fill_s, 1),
                }
            )
            print(
                f"  {n} sources: RSS {rss / 1024:.1f} MiB, "
                f"{per_packet * 1e6:.1f} µs per further knock",
                flush=True,
            )
    finally:
        for sock in socks.values():
            sock.close()
        judged, lost, counters = run.stop()
    return {
        "points": points,
        "skipped": skipped,
        "sent": sent,
        "judged": judged,
        "lost_reported": lost,
        "counters": counters,
    }


def _split(start: int, count: int, v4_count: int) -> list[tuple[int, str, int, int]]:
    """Sources start..start+count as (family, destination, first index, how many): IPv4 while
    198.18.0.0/15 lasts, IPv6 after."""
    parts = []
    if start < v4_count:
        n = min(count, v4_count - start)
        parts.append((4, SERVER, start, n))
        start, count = start + n, count - n
    if count:
        parts.append((6, Lab.SERVER_V6, start - v4_count, count))
    return parts


def _fill_estimate(points: Sequence[Result], n: int) -> float | None:
    """Seconds to go from the last count measured to `n`, if the cost of one more knock keeps
    growing with the sources as it did between the last two counts (flat for knocknft, in
    proportion for knockd, which walks its whole attempt list per packet)."""
    if len(points) < 2:
        return None
    a, b = points[-2], points[-1]
    cost, last = b["per_packet_us"] / 1e6, b["sources"]
    ratio = max(b["per_packet_us"], 1e-3) / max(a["per_packet_us"], 1e-3)
    growth = min(max(math.log(ratio) / math.log(last / a["sources"]), 0.0), 2.0)
    return float(cost * last / (growth + 1) * ((n / last) ** (growth + 1) - 1))


# -- 4. flood ---------------------------------------------------------------------------------


def _legit_loop(monitor: socket.socket, sources: Sequence[str], timeout: float) -> list[float]:
    """Runs in the client's namespace: each source knocks once; the grant latencies seen."""
    seen_ms = []
    for source in sources:
        target, last_port = _knock_all_but_last(source)
        sent = time.perf_counter()
        knock_once(target, parse_port_spec(str(last_port)), source)
        seen = wait_new_element(monitor, timeout)
        if seen is not None:
            seen_ms.append((seen - sent) * 1000)
        drain(monitor)
        time.sleep(0.01)
    return seen_ms


def measure_flood(bench: Bench, contender: Contender) -> Result:
    lab, sources = bench.lab, bench.knockers[: bench.args.legit]
    rate, timeout = bench.args.flood_rate, bench.args.legit_timeout
    knocks = SpoofedSyns(4, SERVER, FIRST_PORT)
    packets = list(knocks.packets(0, knocks.count))
    run = Run(bench, contender, "flood", seq_timeout=5)
    monitor = element_monitor(lab.server)
    seconds = 1 + len(sources) * (timeout + 0.05) + 5
    flood = BackgroundFlood(lab.client, SERVER, packets, rate, seconds)
    try:
        with flood:
            opened = cast(
                list[float],
                run_in_netns(lab.client.netns, lambda: _legit_loop(monitor, sources, timeout)),
            )
    finally:
        monitor.close()
        judged, lost, counters = run.stop()
    print(f"  {len(opened)}/{len(sources)} opened, flood {flood.rate:.0f}/s")
    return {
        "legit": len(sources),
        "succeeded": len(opened),
        "success_rate": round(len(opened) / len(sources), 4),
        "grant_ms": summary(opened),
        "flood_target_rate": rate,
        "flood_sent": flood.sent,
        "flood_rate": round(flood.rate),
        "judged": judged,
        "lost_reported": lost,
        "counters": counters,
    }


# -- the run ----------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--contenders", default="knockd,knocknft", help="who runs, in this order")
    add("--sections", default="latency,throughput,memory,flood,spa", help="what is measured")
    add("--sequences", type=int, default=300, help="latency: sequences per daemon")
    add("--pause", type=float, default=0.005, help="latency: seconds between sequences")
    add("--warmup", type=int, default=10, help="latency: sequences first, not counted")
    add("--rates", type=int_list, default=int_list("2000,5000,10000,20000,50000,100000,150000"))
    add("--rate-seconds", type=float, default=1.0, help="throughput: length of a step")
    add("--tries", type=int, default=2, help="throughput: tries at a rate that loses knocks")
    add("--drain-timeout", type=float, default=20.0, help="throughput: wait for idle, s")
    add("--sources", type=int_list, default=int_list("1000,10000,100000,300000,1000000"))
    add("--probe", type=int, default=1000, help="memory: knocks timed at each count")
    add("--fill-rate", type=float, default=50_000, help="memory: knocks/s while filling")
    add("--memory-budget", type=float, default=200.0, help="memory: seconds per daemon")
    add("--flood-rate", type=float, default=50_000, help="flood: spoofed knocks/s")
    add("--legit", type=int, default=100, help="flood: legitimate sequences")
    add("--legit-timeout", type=float, default=0.5, help="flood: s for a grant to appear")
    spa_bench.add_arguments(parser)
    add("--results", type=Path, default=REPO / "bench" / "results", help="where runs go")
    add("--publish", type=Path, help="also write DIR/BENCHMARKS.md and DIR/bench/*.png")
    add("--note", default="", help="a line for the report, e.g. that the machine was busy")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report.check_plotting()  # fail now, not after minutes of measuring
    os.sched_setaffinity(0, SENDER_CPUS)
    contenders = [CONTENDERS[name] for name in args.contenders.split(",")]
    sections: list[str] = args.sections.split(",")
    started = datetime.now(UTC)
    results: Result = {
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["bench/peer_bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "note": args.note,
        "machine": machine(),
        "knocknft": __version__,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sections": {name: {} for name in sections},
    }
    measures: dict[str, Callable[[Bench, Contender], Result]] = {
        "latency": measure_latency,
        "throughput": measure_throughput,
        "memory": measure_memory,
        "flood": measure_flood,
    }
    with bench_lab("bench") as lab, tempfile.TemporaryDirectory() as tmp:
        wanted = (args.warmup + args.sequences, args.legit, args.spa_warmup + args.spa_requests)
        knockers = add_knockers(lab.client, max(*wanted, args.spa_legit))
        bench = Bench(lab, Path(tmp), args, knockers)
        listener = Listener(lab.server, PROTECTED_PORT)
        try:
            for section in sections:
                if section == "spa":  # fwknopd, not knockd, is the peer there
                    results["sections"]["spa"] = spa_bench.measure(lab, bench.root, args, knockers)
                    continue
                for contender in contenders:
                    print(f"{section}: {contender.name}", flush=True)
                    t0 = time.monotonic()
                    outcome = measures[section](bench, contender)
                    outcome["seconds"] = round(time.monotonic() - t0, 1)
                    results["sections"][section][contender.name] = outcome
        finally:
            listener.close()
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round((datetime.now(UTC) - started).total_seconds())
    results["targets"] = report.targets(results)
    report.write(results, args.results, args.publish, started.strftime("%Y-%m-%dT%H%M%SZ"))


if __name__ == "__main__":
    main()
