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
import select
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    BIN,
    DAEMON_CPU,
    KNOCKNFT_CONFIG,
    SENDER_CPUS,
    cpu_seconds,
    element_monitor,
    percentile,
    wait_new_element,
)

from knocknft.lab import SPOOFED_SOURCES, Lab, flood, rss_bytes, spoofed_syn

CONFIG = KNOCKNFT_CONFIG.format(seq_timeout=5)


def start_daemon(lab: Lab, workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    log_path = workdir / "daemon.log"
    # The log is shared by every daemon of a run: only what this one writes says it is ready.
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115 - the daemon owns it until it exits
    proc = subprocess.Popen(
        lab.server.cmd(
            "taskset",
            "-c",
            str(DAEMON_CPU),
            str(BIN / "knocknft"),
            "run",
            "-c",
            str(config),
            "--state-dir",
            str(workdir),
        ),
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 10
    while b"listening on NFLOG" not in log_path.read_bytes()[offset:]:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(log_path.read_text())
        time.sleep(0.05)
    return proc


def stop_daemon(proc: subprocess.Popen[bytes], workdir: Path) -> dict[str, float]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    stats: dict[str, float] = json.loads((workdir / "stats.json").read_text())
    return stats


def daemon_pid(proc: subprocess.Popen[bytes]) -> int:
    # `ip netns exec` and `taskset` exec the command, so the Popen pid is the daemon itself.
    return proc.pid


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
            while select.select([monitor], [], [], 0.005)[0]:
                monitor.recv(65536)
    finally:
        udp.close()
        monitor.close()
    return latencies


def first_step_flood(lab: Lab, rate: int, seconds: float) -> tuple[int, float]:
    """Spoofed first-step knocks (SYN to 7000/tcp), each from a new source until they wrap: the
    costly case, a new attempt each, and past the cap an eviction each."""
    packets = [spoofed_syn(i, Lab.SERVER_V4, 7000) for i in range(SPOOFED_SOURCES)]
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
        proc = start_daemon(lab, workdir)
        try:
            lat = measure_latency(lab, args.sequences)
        finally:
            stop_daemon(proc, workdir)
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
            proc = start_daemon(lab, workdir)
            pid = daemon_pid(proc)
            cpu_before = cpu_seconds(pid)
            idle = rss_bytes(pid)
            sent, took = first_step_flood(lab, rate, args.seconds)
            time.sleep(0.5)  # let the daemon drain its receive buffer
            cpu = cpu_seconds(pid) - cpu_before
            rss = rss_bytes(pid)
            stats = stop_daemon(proc, workdir)
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
