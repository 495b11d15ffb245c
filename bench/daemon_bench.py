"""Benchmark of the running daemon, in namespaces: knock-to-grant latency and knock throughput.

    sudo .venv/bin/python bench/daemon_bench.py [--sequences 300] [--rates 50000,100000,150000]

1. Latency: the client knocks a full sequence; the time from sending the last knock to the
   kernel announcing the new set element (an nftables netlink multicast, read in the server
   namespace by this same process, so both ends use one clock). p50/p99/max over all sequences.
2. Throughput: spoofed first-step knocks (98304 sources from 198.19.0.0/16 and
   198.18.128.0/17, more than the attempt cap) are sent at fixed rates for a bounded time; the
   daemon's own counters (knocks judged, NFLOG sequence gaps) say whether it kept up, and /proc
   says how much CPU it used and its resident memory (VmRSS) with the attempt table full.

Traffic stays between the two namespaces this script creates (198.18.0.0/15 only), every
load is bounded in count and time, and the namespaces are removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from harness import (
    DAEMON_CPU,
    SENDER_CPUS,
    Knocknft,
    cpu_seconds,
    drain,
    element_monitor,
    percentile,
    wait_new_element,
)

from knocklab.daemons import LabDaemon, rss_bytes
from knocklab.lab import Lab
from knocklab.packets import SpoofedSyns, flood

KNOCKNFT = Knocknft()


def start_daemon(lab: Lab, workdir: Path) -> LabDaemon:
    """knocknft on a core of its own, in a folder of its own: its log alone says it is ready."""
    return KNOCKNFT.start(lab, Path(tempfile.mkdtemp(dir=workdir)), seq_timeout=5)


def stop_daemon(daemon: LabDaemon) -> dict[str, int]:
    """Stop it; its counters as it wrote them on the way out."""
    daemon.stop()
    return KNOCKNFT.counters(daemon, daemon.log_path.parent)


def measure_latency(lab: Lab, sequences: int) -> list[float]:
    monitor = element_monitor(lab.server)
    udp = lab.client.socket(socket.AF_INET, socket.SOCK_DGRAM)
    latencies: list[float] = []
    try:
        for i in range(sequences):
            source = f"198.18.0.{10 + i % 200}"
            lab.client.knock(Lab.SERVER_V4, "7000", "9000/udp", source=source)
            time.sleep(0.002)
            tcp = lab.client.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind((source, 0))
            tcp.setblocking(False)
            sent = time.perf_counter()
            tcp.connect_ex((Lab.SERVER_V4, 8000))
            tcp.close()
            seen = wait_new_element(monitor)
            if seen is not None:
                latencies.append((seen - sent) * 1000)
            # drain the delete/add pair of a refresh, so the next wait sees the next grant
            drain(monitor)
    finally:
        udp.close()
        monitor.close()
    return latencies


def first_step_flood(lab: Lab, rate: int, seconds: float) -> tuple[int, float]:
    """Spoofed first-step knocks (SYN to 7000/tcp), each from a new source until they wrap: the
    costly case, a new attempt each, and past the cap an eviction each."""
    packets = list(SpoofedSyns(4, Lab.SERVER_V4, 7000).packets())
    return flood(lab.client, packets, Lab.SERVER_V4, rate, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--rates", default="50000,100000,150000,200000")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": os.uname().release,
        "cpus": os.cpu_count(),
        "daemon_cpu": DAEMON_CPU,
        "sender_cpus": sorted(SENDER_CPUS),
    }
    os.sched_setaffinity(0, SENDER_CPUS)
    with Lab("bench") as lab, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for i in range(200):
            lab.client.add_address(f"198.18.0.{10 + i}")
        daemon = start_daemon(lab, workdir)
        try:
            lat = measure_latency(lab, args.sequences)
        finally:
            stop_daemon(daemon)
        results["latency_ms"] = {
            "sequences": args.sequences,
            "measured": len(lat),
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "max": max(lat),
            "mean": statistics.fmean(lat),
        }
        print(
            f"latency, last knock -> element in set, {len(lat)}/{args.sequences} sequences: "
            f"p50 {percentile(lat, 50):.3f} ms, p99 {percentile(lat, 99):.3f} ms, "
            f"max {max(lat):.3f} ms"
        )
        rows = []
        for rate in (int(r) for r in args.rates.split(",")):
            daemon = start_daemon(lab, workdir)
            pid = daemon.pid
            cpu_before = cpu_seconds(pid)
            idle = rss_bytes(pid)
            sent, took = first_step_flood(lab, rate, args.seconds)
            time.sleep(0.5)  # let the daemon drain its receive buffer
            cpu = cpu_seconds(pid) - cpu_before
            rss = rss_bytes(pid)
            stats = stop_daemon(daemon)
            row = {
                "target_rate": rate,
                "sent": sent,
                "achieved_rate": round(sent / took),
                "judged": int(stats["knocks"]),
                "nflog_lost": int(stats["nflog_lost"]),
                "cpu_s_per_100k": round(cpu / sent * 100_000, 3),
                "attempts_tracked": int(stats["attempts_tracked"]),
                "evictions": int(stats["evictions"]),
                "rss_idle_mib": round(idle / 2**20, 1),
                "rss_mib": round(rss / 2**20, 1),
            }
            rows.append(row)
            print(
                f"rate {row['achieved_rate']:>7}/s: sent {sent}, judged {row['judged']}, "
                f"lost {row['nflog_lost']}, daemon CPU {row['cpu_s_per_100k']} s per 100k knocks, "
                f"{row['attempts_tracked']} attempts tracked, {row['evictions']} evicted, "
                f"RSS {row['rss_mib']} MiB (idle {row['rss_idle_mib']} MiB)"
            )
        results["throughput"] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
