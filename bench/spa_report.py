"""The "spa" section of the benchmark's page and its targets: fwknopd and knocknft side by side,
with the ratios between them. Pure: made from a run's results alone (bench/spa_bench.py's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Result = dict[str, Any]
NAMES = ("fwknopd", "knocknft")

METHOD = """\
5. **SPA**: Debian's fwknopd, then knocknft, serve the same fwknop stanza (Rijndael + HMAC-SHA256,
   22/tcp for 30 s, any source) on the same lab, each pinned to the daemon's CPU; both drop the
   SPA port in the firewall (fwknopd reads the packets through pcap before it) and keep 22/tcp
   shut for sources without a grant. The packets are made by Debian's fwknop client, each
   granting a knocker address of its own (`-a`). Latency is from sending the packet to the grant
   being announced on the nftables netlink group (knocknft's set element, fwknopd's iptables-nft
   rule) and to a connection to port 22, made right after, being established. Junk is random
   base64 as long as a real packet, each from its own spoofed source, so every packet costs its
   HMAC check; a rate is kept when the server judged every packet (knocknft's `spa_rejected`
   counters, fwknopd's log lines) once idle. The floods send such junk from a separate process
   while legitimate requests are timed as above. Each server keeps its files on the machine's
   disk, as deployed: knocknft writes its replay cache and fsyncs it before each grant (so that a
   restart cannot let the packet in again), fwknopd appends to its digest cache unsynced; the
   requests are timed once more with knocknft's state on tmpfs, to show what the disk costs.
"""

# What knocknft is held to: a legitimate request still opens, every time, during the junk flood.
TARGET_SUCCESS = 1.0


def _ratio(theirs: float | None, ours: float | None) -> str:
    if not theirs or not ours:
        return "-"
    return f"{theirs / ours:.1f}x"


def _ms(summary: Result) -> str:
    if not summary.get("count"):
        return "none"
    return f"{summary['p50']:.1f} / {summary['p99']:.1f} / {summary['max']:.1f}"


def _latency_ms(result: Result, key: str) -> str:
    return _ms(result["latency"][key])


def _row(label: str, data: Result, cell: Callable[[Result], str], ratio: str = "") -> str:
    cells = [cell(data[name]) if name in data else "-" for name in NAMES]
    return f"| {label} | {' | '.join(cells)} | {ratio} |"


def _p(data: Result, name: str, part: str, key: str, at: str) -> float | None:
    value = data.get(name, {}).get(part, {}).get(key, {}).get(at)
    return None if value is None else float(value)


def _floods(data: Result) -> list[int]:
    return sorted({f["flood_target_rate"] for r in data.values() for f in r.get("floods", [])})


def _flood_at(result: Result, rate: int) -> Result | None:
    return next((f for f in result.get("floods", []) if f["flood_target_rate"] == rate), None)


def section(data: Result) -> list[str]:
    """The page's lines for the section; the ratio column is fwknopd's value over knocknft's for
    times (how many times quicker knocknft is) and knocknft's over fwknopd's for rates."""
    lines = [
        "## 5. Single packet authorization: fwknopd against knocknft",
        "",
        f"| | {' | '.join(NAMES)} | ratio |",
        "|---" * (len(NAMES) + 2) + "|",
    ]
    for what, key in (("port 22 reachable", "reachable_ms"), ("grant announced", "grant_ms")):
        p50 = _ratio(*(_p(data, n, "latency", key, "p50") for n in NAMES))
        p99 = _ratio(*(_p(data, n, "latency", key, "p99") for n in NAMES))
        cell = functools.partial(_latency_ms, key=key)
        label = f"SPA packet to {what}, p50 / p99 / max (ms)"
        lines.append(_row(label, data, cell, f"p50 {p50}, p99 {p99}"))
    if any("latency_tmpfs" in r for r in data.values()):
        lines.append(
            _row(
                "port 22 reachable, state on tmpfs, p50 / p99 / max (ms)",
                data,
                lambda r: _ms(r["latency_tmpfs"]["reachable_ms"]) if "latency_tmpfs" in r else "-",
            )
        )
    lines.append(
        _row(
            "requests opened (no grant seen / port not reachable)",
            data,
            lambda r: (
                f"{r['latency']['opened']}/{r['latency']['requests']} "
                f"({r['latency']['missed']} / {r['latency']['unreachable']})"
            ),
        )
    )
    rates = [data[n]["junk"]["max_lossless_rate"] if n in data else None for n in NAMES]
    lines.append(
        _row(
            "**junk packets/s, none lost** (CPU s per 100k)",
            data,
            lambda r: (
                f"**{r['junk']['max_lossless_rate']}/s** ({r['junk']['cpu_s_per_100k_at_max']})"
            ),
            _ratio(rates[1], rates[0]),
        )
    )
    for rate in _floods(data):
        lines += _flood_rows(data, rate)
    lines += ["", *_junk_steps(data), ""]
    return lines


def _flood_rows(data: Result, rate: int) -> list[str]:
    def opened(r: Result) -> str:
        f = _flood_at(r, rate)
        return "-" if f is None else f"{f['opened']}/{f['legit']}"

    def latency(r: Result) -> str:
        f = _flood_at(r, rate)
        return "-" if f is None else _ms(f["reachable_ms"])

    def judged(r: Result) -> str:
        f = _flood_at(r, rate)
        return "-" if f is None else f"{f['junk_judged']}/{f['flood_sent']} at {f['flood_rate']}/s"

    p50s = [_flood_at(data[n], rate) if n in data else None for n in NAMES]
    ratio = _ratio(*(f["reachable_ms"].get("p50") if f else None for f in p50s))
    return [
        _row(f"during {rate} junk/s: requests opened", data, opened),
        _row(f"during {rate} junk/s: port 22 reachable (ms)", data, latency, f"p50 {ratio}"),
        _row(f"during {rate} junk/s: junk judged of sent", data, judged),
    ]


def _junk_steps(data: Result) -> list[str]:
    """Per junk rate asked: packets judged of those sent (the lossless try, if there was one)."""
    lines = [
        "Junk steps: packets judged of those sent, per rate asked.",
        "",
        f"| rate asked | {' | '.join(NAMES)} |",
        "|---" * (len(NAMES) + 1) + "|",
    ]
    rates = sorted({s["target_rate"] for r in data.values() for s in r["junk"]["steps"]})
    for rate in rates:
        cells = []
        for name in NAMES:
            tries = [s for s in data.get(name, {}).get("junk", {}).get("steps", [])]
            tries = [s for s in tries if s["target_rate"] == rate]
            if not tries:
                cells.append("-")
                continue
            step = next((s for s in tries if s["ok"]), tries[-1])
            mark = "" if step["ok"] else (" **lost**" if step["drained"] else " **still busy**")
            cells.append(f"{step['judged']}/{step['sent']} at {step['achieved_rate']}/s{mark}")
        lines.append(f"| {rate}/s | {' | '.join(cells)} |")
    return lines


def targets(data: Result) -> list[Result]:
    """knocknft's SPA targets, checked against the run: during every junk flood, each legitimate
    request opens, and no slower at the median than fwknopd without any flood."""
    ours, theirs = data.get("knocknft"), data.get("fwknopd")
    if not ours:
        return []
    rows = []
    for flood in ours.get("floods", []):
        rate = flood["flood_target_rate"]
        share = flood["opened"] / flood["legit"] if flood["legit"] else 0.0
        rows.append(
            {
                "target": f"SPA: every legitimate request opens during {rate} junk/s",
                "value": f"{flood['opened']}/{flood['legit']}",
                "met": share >= TARGET_SUCCESS,
            }
        )
        quiet = theirs["latency"]["reachable_ms"].get("p50") if theirs else None
        during = flood["reachable_ms"].get("p50")
        if quiet is not None:
            rows.append(
                {
                    "target": f"SPA: p50 during {rate} junk/s below fwknopd's with no flood",
                    "value": f"{during} ms against {quiet} ms",
                    "met": during is not None and during < quiet,
                }
            )
    return rows
