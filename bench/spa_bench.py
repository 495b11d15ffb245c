"""The peer benchmark's "spa" section: Debian's fwknopd against knocknft, serving the same fwknop
stanza (Rijndael + HMAC-SHA256, 22/tcp for 30 s, any source) on the same lab, one after the
other, each pinned to the daemon's core, with packets made by Debian's fwknop client.

1. Latency: each request from a knocker address of its own (-a that address); the time from
   sending its SPA packet to the grant being announced by nftables (knocknft's set element,
   fwknopd's iptables-nft rule) and to a connection to port 22, made right after, established.
2. Junk: random SPA-sized packets (base64 characters, as long as a real one, so each one costs
   the HMAC check), each from its own spoofed source, at rates stepped up until two in a row
   lose packets; a packet is lost when the server has not judged it once it has gone idle
   (knocknft: its spa_rejected counters; fwknopd: its log's bad-HMAC lines).
3. Flood: legitimate requests, timed as in 1, while such junk floods the server at a fixed rate
   from a process of its own.

Both drop the SPA port in the firewall (fwknopd sees the packets through pcap before it) and
keep 22/tcp shut for sources without a grant: knocknft with its own table, fwknopd with an
iptables rule after its FWKNOP_INPUT chain.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from harness import (
    BIN,
    DAEMON_CPU,
    NEW_ELEMENT,
    NEW_RULE,
    Timing,
    cpu_seconds,
    element_monitor,
    fresh_server,
    rate_search,
    rate_step,
    summary,
    time_grant,
    wait_idle,
)

from knocklab.daemons import LabDaemon
from knocklab.fwknop import SPA_PORT, FwknopKeys, build_spa, fwknop_argv
from knocklab.fwknopd import Stanza, fwknopd_counts, start_fwknopd
from knocklab.lab import Lab, run_in_netns
from knocklab.packets import (
    SPOOFED_V4,
    SPOOFED_V4_COUNT,
    BackgroundFlood,
    raw_socket,
    send_paced,
    spoofed_packet,
)
from knocknft import __version__

Result = dict[str, Any]
SERVER = Lab.SERVER_V4
GRANTS = (NEW_ELEMENT, NEW_RULE)
OPEN_FOR = 30
TMPFS = Path("/dev/shm")
# The share of a CPU under which a server counts as idle: fwknopd polls pcap every 100 ms.
IDLE = 0.05


class SpaContender(Protocol):
    """An SPA server under test, started fresh (on a fresh ruleset) for each measurement."""

    name: str
    # Whether it writes a file to disk, synced, before each grant (knocknft its replay cache).
    syncs_before_granting: bool

    def start(self, lab: Lab, workdir: Path, stanza: Stanza) -> LabDaemon: ...

    def outcomes(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        """`accepted` and `rejected` (all reasons), once it has stopped."""
        ...


class Fwknopd:
    name = "fwknopd"
    syncs_before_granting = False  # it appends to its digest cache, unsynced

    def start(self, lab: Lab, workdir: Path, stanza: Stanza) -> LabDaemon:
        # A firewall with fwknopd: the SPA port and 22/tcp dropped, after the FWKNOP_INPUT chain
        # fwknopd puts first.
        fresh_server(lab)
        for proto, port in (("udp", SPA_PORT), ("tcp", 22)):
            drop = ["-p", proto, "--dport", str(port), "-j", "DROP"]
            lab.server.run("iptables", "-A", "INPUT", *drop)
        return start_fwknopd(lab.server, workdir, [stanza], cpu=DAEMON_CPU)

    def outcomes(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        counts = fwknopd_counts(daemon.log())
        refused = ("bad_auth", "stale", "replay", "no_source_address", "port_denied")
        return {"accepted": counts["accepted"], "rejected": sum(counts[k] for k in refused)}


KNOCKNFT_SPA_CONFIG = """\
options:
  interfaces: [eth0]
doors:
{door}"""


class Knocknft:
    name = "knocknft"
    syncs_before_granting = True  # state_dir/spa-replay.json, fsynced, then the grant

    def start(self, lab: Lab, workdir: Path, stanza: Stanza) -> LabDaemon:
        config = workdir / "config.yaml"
        config.write_text(KNOCKNFT_SPA_CONFIG.format(door=stanza.knocknft_door("ssh")))
        config.chmod(0o600)
        fresh_server(lab)
        argv = [str(BIN / "knocknft"), "run", "-c", str(config), "--state-dir", str(workdir)]
        # Ready once the knocks' reader is: the SPA reader's line comes before the table is in.
        ready = f"knocknft {__version__}: listening on NFLOG"
        return LabDaemon(lab.server, argv, workdir / "knocknft.log", ready, cpu=DAEMON_CPU)

    def outcomes(self, daemon: LabDaemon, workdir: Path) -> dict[str, int]:
        stats: dict[str, int] = json.loads((workdir / "stats.json").read_text())
        # Counted by reason: spa_rejected_bad_auth, spa_rejected_stale, ...
        rejected = sum(v for k, v in stats.items() if k.startswith("spa_rejected_"))
        return {"accepted": stats["spa_accepted"], "rejected": rejected}


SPA_CONTENDERS: dict[str, SpaContender] = {"fwknopd": Fwknopd(), "knocknft": Knocknft()}


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--spa-contenders", default="fwknopd,knocknft", help="spa: who runs, in this order")
    add("--spa-requests", type=int, default=100, help="spa: SPA requests timed per server")
    add("--spa-warmup", type=int, default=5, help="spa: requests first, not counted")
    add("--spa-pause", type=float, default=0.05, help="spa: seconds between requests")
    add(
        "--spa-rates",
        type=_int_list,
        default=_int_list("500,1000,1500,2000,3000,5000,10000,20000,50000,100000"),
        help="spa: junk packets/s, stepped up",
    )
    add("--spa-junk-seconds", type=float, default=3.0, help="spa: length of a junk step")
    add(
        "--spa-flood-rates",
        type=_int_list,
        default=_int_list("1000,10000"),
        help="spa: junk packets/s in each flood",
    )
    add("--spa-legit", type=int, default=30, help="spa: requests timed during the flood")
    add("--spa-timeout", type=float, default=2.0, help="spa: s for a grant to appear")


class Spa:
    """One contender's measurements, on the bench's lab; knockers are the client's addresses."""

    def __init__(
        self, lab: Lab, root: Path, args: argparse.Namespace, knockers: Sequence[str]
    ) -> None:
        self.lab, self.root, self.args, self.knockers = lab, root, args, knockers
        self.stanza = Stanza(FwknopKeys.random(), access_timeout=OPEN_FOR)

    def _run(
        self, contender: SpaContender, label: str, root: Path | None = None
    ) -> tuple[LabDaemon, Path]:
        prefix = f"{contender.name}-spa-{label}-"
        workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=root or self.root))
        return contender.start(self.lab, workdir, self.stanza), workdir

    def requests(self, sources: Sequence[str]) -> list[tuple[str, bytes]]:
        """An SPA packet per source, granting that source, made by the client beforehand (a
        packet is good for the stanza's 120 s window)."""
        keys = self.stanza.keys
        return [
            (source, build_spa(self.lab.client, fwknop_argv(keys, SERVER, allow=source)))
            for source in sources
        ]

    def _timed(self, requests: Sequence[tuple[str, bytes]]) -> list[Timing]:
        monitor = element_monitor(self.lab.server)
        timeout, pause = self.args.spa_timeout, self.args.spa_pause

        def loop() -> list[Timing]:
            timings = []
            for source, payload in requests:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.bind((source, 0))  # before the clock starts
                send = functools.partial(udp.sendto, payload, (SERVER, SPA_PORT))
                timings.append(
                    time_grant(monitor, SERVER, source, send, timeout=timeout, kinds=GRANTS)
                )
                udp.close()
                time.sleep(pause)
            return timings

        try:
            return cast(list[Timing], run_in_netns(self.lab.client.netns, loop))
        finally:
            monitor.close()

    def latency(self, contender: SpaContender, root: Path | None = None) -> Result:
        """Requests timed one after the other; the server's files in `root` (the bench's
        folder by default)."""
        warmup = self.args.spa_warmup
        requests = self.requests(self.knockers[: warmup + self.args.spa_requests])
        daemon, workdir = self._run(contender, "latency", root)
        try:
            timings = self._timed(requests)[warmup:]
        finally:
            daemon.stop()
        result = {"requests": len(timings), "warmup": warmup, **_timings(timings)}
        result["accepted"] = contender.outcomes(daemon, workdir)["accepted"]
        print(f"  latency: {result['reachable_ms']}", flush=True)
        return result

    def junk(self, contender: SpaContender) -> Result:
        """Rates stepped up until two in a row lose packets; a lossy rate is tried again."""
        length = len(self.requests(self.knockers[:1])[0][1])
        seconds = self.args.spa_junk_seconds
        most = int(max(self.args.spa_rates) * seconds)
        packets = junk_packets(most, length)
        steps, best = rate_search(
            self.args.spa_rates,
            self.args.tries,
            lambda rate: self._junk_step(contender, rate, packets[: int(rate * seconds)]),
        )
        return {
            "packet_bytes": length,
            "steps": steps,
            "max_lossless_rate": best["achieved_rate"] if best else 0,
            "cpu_s_per_100k_at_max": best["cpu_s_per_100k"] if best else None,
        }

    def _junk_step(self, contender: SpaContender, rate: int, packets: list[bytes]) -> Result:
        """One second of junk at `rate`, on a fresh server."""
        daemon, workdir = self._run(contender, f"junk{rate}")
        sock = raw_socket(self.lab.client, 4)
        try:
            before = cpu_seconds(daemon.pid)
            limit = 2 * len(packets) / rate + 1
            sent, took = send_paced(sock, SERVER, packets, rate, max_seconds=limit)
            idle = wait_idle(daemon.pid, self.args.drain_timeout, busy=IDLE)
            cpu = cpu_seconds(daemon.pid) - before
        finally:
            sock.close()
            daemon.stop()
        judged = contender.outcomes(daemon, workdir)["rejected"]
        return rate_step(rate, sent, took, judged=judged, idle=idle, cpu=cpu, label="junk ")

    def floods(self, contender: SpaContender) -> list[Result]:
        return [self.flood(contender, rate) for rate in self.args.spa_flood_rates]

    def flood(self, contender: SpaContender, rate: int) -> Result:
        count = self.args.spa_legit
        requests = self.requests(self.knockers[:count])
        # Enough distinct junk to cycle through: junk is never cached, so repeats cost the same.
        packets = junk_packets(min(int(rate), SPOOFED_V4_COUNT), len(requests[0][1]))
        seconds = 1 + count * (self.args.spa_timeout + self.args.spa_pause + 0.6) + 5
        daemon, workdir = self._run(contender, "flood")
        try:
            with BackgroundFlood(self.lab.client, SERVER, packets, rate, seconds) as flood:
                timings = self._timed(requests)
            wait_idle(daemon.pid, self.args.drain_timeout, busy=IDLE)
        finally:
            daemon.stop()
        outcomes = contender.outcomes(daemon, workdir)
        result = {
            "legit": count,
            **_timings(timings),
            "flood_target_rate": rate,
            "flood_sent": flood.sent,
            "flood_rate": round(flood.rate),
            "junk_judged": outcomes["rejected"],
        }
        print(
            f"  flood {result['flood_rate']}/s: {result['opened']}/{count} opened, "
            f"{result['reachable_ms']}, junk judged {result['junk_judged']}/{flood.sent}",
            flush=True,
        )
        return result


def junk_packets(count: int, length: int) -> list[bytes]:
    """`count` whole IPv4 packets to the server's SPA port, each from its own spoofed source,
    each with `length` random base64 characters: past fwknopd's length and character checks,
    so every one is judged by its HMAC, the costly way."""
    packets = []  # sources repeat past SPOOFED_V4_COUNT: junk is never cached, they cost the same
    for index in range(count):
        payload = base64.b64encode(secrets.token_bytes(length)).rstrip(b"=")[:length]
        source = str(SPOOFED_V4 + index % SPOOFED_V4_COUNT)
        packets.append(spoofed_packet(source, SERVER, SPA_PORT, "udp", payload))
    return packets


def _timings(timings: Sequence[Timing]) -> Result:
    granted = [g for g, _ in timings if g is not None]
    reached = [r for _, r in timings if r is not None]
    return {
        "opened": len(reached),
        "missed": len(timings) - len(granted),
        "unreachable": len(granted) - len(reached),
        "grant_ms": summary(granted),
        "reachable_ms": summary(reached),
    }


def measure(
    lab: Lab, root: Path, args: argparse.Namespace, knockers: Sequence[str]
) -> dict[str, Result]:
    """The section: per contender, its latency, junk and flood results."""
    spa = Spa(lab, root, args, knockers)
    parts: dict[str, Callable[[SpaContender], Any]] = {
        "latency": spa.latency,
        "junk": spa.junk,
        "floods": spa.floods,
    }
    results: dict[str, Result] = {}
    for name in args.spa_contenders.split(","):
        contender = SPA_CONTENDERS[name]
        print(f"spa: {name}", flush=True)
        started = time.monotonic()
        results[name] = {part: measure_part(contender) for part, measure_part in parts.items()}
        if contender.syncs_before_granting and TMPFS.is_dir():
            # What the disk costs it: the same requests with its state on tmpfs.
            with tempfile.TemporaryDirectory(dir=TMPFS) as tmpfs:
                results[name]["latency_tmpfs"] = spa.latency(contender, Path(tmpfs))
        results[name]["seconds"] = round(time.monotonic() - started, 1)
    return results
