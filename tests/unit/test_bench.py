"""The benchmark's pure parts: the memory plan, the targets and the report.

The measurements themselves need root and namespaces and take minutes (`make bench`); what they
rest on is checked here, so that a run on a quiet machine is not the first to find a mistake.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import harness
import peer_bench
import report
import spa_bench
import spa_report

from knocklab.lab import Lab
from knocklab.packets import SPOOFED_V4_COUNT


def test_sources_past_the_ipv4_range_are_ipv6() -> None:
    v4 = SPOOFED_V4_COUNT
    assert peer_bench._split(0, 10, v4) == [(4, Lab.SERVER_V4, 0, 10)]
    assert peer_bench._split(v4 - 4, 10, v4) == [
        (4, Lab.SERVER_V4, v4 - 4, 4),
        (6, Lab.SERVER_V6, 0, 6),
    ]
    assert peer_bench._split(v4 + 5, 10, v4) == [(6, Lab.SERVER_V6, 5, 10)]


def point(sources: int, per_packet_us: float, rss_kib: int = 1024, ipv6: int = 0) -> dict[str, Any]:
    return {
        "sources": sources,
        "per_packet_us": per_packet_us,
        "rss_kib": rss_kib,
        "ipv6_sources": ipv6,
        "fill_s": 1.0,
    }


def test_fill_estimate_follows_how_the_cost_per_knock_grows() -> None:
    assert peer_bench._fill_estimate([point(1000, 20)], 10_000) is None
    # knockd: the cost per knock grows with the sources, so 10x more takes ~100x longer.
    walking = peer_bench._fill_estimate([point(1000, 20), point(10_000, 200)], 100_000)
    assert walking == pytest.approx(200e-6 * 10_000 / 2 * 99)
    # knocknft: flat, so the estimate is the knocks to send times their cost.
    flat = peer_bench._fill_estimate([point(1000, 20), point(10_000, 20)], 100_000)
    assert flat == pytest.approx(20e-6 * 90_000)


def results(rss_1m: int = 79_000, tracked: int = 65536) -> dict[str, Any]:
    latency = {
        "sequences": 3,
        "missed": 0,
        "unreachable": 0,
        "element_ms": harness.summary([0.4, 0.5, 1.5]),
        "reachable_ms": harness.summary([0.5, 0.6, 1.6]),
        "samples_element_ms": [0.4, 0.5, 1.5],
        "samples_reachable_ms": [0.5, 0.6, 1.6],
    }
    slow = latency | {"element_ms": harness.summary([30.0, 40.0, 50.0])}
    step = {
        "target_rate": 100_000,
        "sent": 100_000,
        "achieved_rate": 100_000,
        "judged": 100_000,
        "drained": True,
        "ok": True,
        "cpu_s_per_100k": 1.0,
        "try": 1,
    }
    memory = {
        "points": [
            point(100_000, 20, 70_000),
            point(300_000, 20, 78_000, 185_312),
            point(1_000_000, 20, rss_1m, 885_312),
        ],
        "skipped": [],
        "sent": 1_003_000,
        "judged": 1_003_000,
        "counters": {"attempts_cap": 65536, "attempts_tracked": tracked, "evictions": 1},
    }
    knockd_memory = memory | {
        "points": [point(10_000, 200, 6_000)],
        "skipped": [{"sources": 100_000, "sent": 100_000, "budget_s": 200, "rss_kib": 14_000}],
        "counters": {},
    }
    flood = {
        "legit": 100,
        "succeeded": 100,
        "success_rate": 1.0,
        "grant_ms": harness.summary([1.0]),
        "flood_rate": 50_000,
    }
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "command": "bench/peer_bench.py",
        "seconds": 300,
        "note": "",
        "machine": {
            "kernel": "6.1",
            "cpus": 2,
            "cpu_model": "test",
            "daemon_cpu": 1,
            "sender_cpus": [0],
            "knockd": "0.8",
            "load_average": [0.1, 0.1, 0.1],
        },
        "knocknft": "0.1.0",
        "options": {"flood_rate": 50_000, "legit_timeout": 0.5},
        "sections": {
            "latency": {"knockd": slow, "knocknft": latency},
            "throughput": {
                "knocknft": {
                    "steps": [step],
                    "max_lossless_rate": 100_000,
                    "cpu_s_per_100k_at_max": 1.0,
                },
                "knockd": {
                    "steps": [step | {"ok": False}],
                    "max_lossless_rate": 0,
                    "cpu_s_per_100k_at_max": None,
                },
            },
            "memory": {"knockd": knockd_memory, "knocknft": memory},
            "flood": {"knockd": flood | {"succeeded": 3, "success_rate": 0.03}, "knocknft": flood},
            "spa": {
                "fwknopd": spa(150.0, 1000, opened=4),
                "knocknft": spa(1.5, 50_000)
                | {"latency_tmpfs": {"reachable_ms": harness.summary([0.5, 0.5, 1.0])}},
            },
        },
    }


def spa(ms: float, rate: int, opened: int = 10) -> dict[str, Any]:
    """One server's spa results: latency `ms`, junk handled up to `rate`, `opened` of 10 requests
    during a flood of 10000 junk/s."""
    timings = harness.summary([ms, ms, 2 * ms])
    step: dict[str, Any] = {"target_rate": rate, "sent": 3 * rate, "achieved_rate": rate}
    step |= {"judged": 3 * rate, "drained": True, "ok": True, "cpu_s_per_100k": 1.0, "try": 1}
    flood: dict[str, Any] = {"legit": 10, "opened": opened, "missed": 10 - opened}
    flood |= {"unreachable": 0, "grant_ms": timings, "reachable_ms": timings}
    flood |= {"flood_target_rate": 10_000, "flood_sent": 30_000, "flood_rate": 10_000}
    flood |= {"junk_judged": 30_000}
    latency: dict[str, Any] = {"requests": 3, "warmup": 1, "opened": 3, "missed": 0}
    latency |= {"unreachable": 0, "grant_ms": timings, "reachable_ms": timings, "accepted": 4}
    junk: dict[str, Any] = {"packet_bytes": 204, "steps": [step], "max_lossless_rate": rate}
    junk |= {"cpu_s_per_100k_at_max": 1.0}
    return {"latency": latency, "junk": junk, "floods": [flood]}


def test_targets_are_checked_against_the_run() -> None:
    rows = {row["target"]: row for row in report.targets(results())}
    assert [row["met"] for row in rows.values()] == [True] * 7
    assert rows["p99 >= 10x better than knockd's"]["value"] == "33.3x"
    memory = rows["memory within the cap at 1M sources (<= 96 MiB)"]["value"]
    assert memory == "77.1 MiB, 65536 attempts tracked (cap 65536); +1% since 300,000 sources"


@pytest.mark.parametrize(
    ("rss_1m", "tracked"),
    [(99_000, 65536), (79_000, 70_000)],
    ids=["memory past the bound", "more attempts than the cap"],
)
def test_memory_target_fails_when_memory_is_not_bounded(rss_1m: int, tracked: int) -> None:
    memory = results(rss_1m, tracked)["sections"]["memory"]["knocknft"]
    assert not report._memory_target(memory)["met"]


def test_the_page_shows_both_daemons_side_by_side() -> None:
    page = report.markdown(results(), {"latency": "bench/latency.png"})
    assert "| element in the set, p50 / p99 / max | 40.00 / 50.00 / 50.00 | 0.50 /" in page
    assert "![Latency, last knock to element in the set](bench/latency.png)" in page
    assert "| 100,000 | 13.7 MiB, still working through them after the 200 s budget |" in page
    assert "| sequences opened within 0.5 s | 3/100 (3%) | 100/100 (100%) |" in page
    assert "## How it is measured" in page


def test_a_run_writes_json_page_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    report.check_plotting()
    report.write(results(), tmp_path / "results", tmp_path / "docs", "stamp")
    names = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert names == ["stamp-latency.png", "stamp-memory.png", "stamp.json", "stamp.md"]
    assert (tmp_path / "docs" / "bench" / "memory.png").stat().st_size > 1000
    assert "](bench/memory.png)" in (tmp_path / "docs" / "BENCHMARKS.md").read_text()


@pytest.mark.parametrize(
    ("achieved", "ok", "met"),
    [(99_993, True, True), (90_000, True, False), (100_000, False, False)],
    ids=["the pacing's rounding", "the sender fell short", "knocks lost"],
)
def test_the_rate_target_needs_the_rate_reached_and_nothing_lost(
    achieved: int, ok: bool, met: bool
) -> None:
    run = results()
    step = run["sections"]["throughput"]["knocknft"]["steps"][0]
    step.update(achieved_rate=achieved, ok=ok)
    rows = {row["target"]: row["met"] for row in report.targets(run)}
    assert rows[">= 100000 knock packets/s, none lost"] is met


def test_the_spa_section_sets_fwknopd_and_knocknft_side_by_side_with_ratios() -> None:
    page = report.markdown(results(), {})
    assert "## 5. Single packet authorization: fwknopd against knocknft" in page
    row = "| SPA packet to port 22 reachable, p50 / p99 / max (ms) | 150.0 / 300.0 / 300.0 | "
    assert row + "1.5 / 3.0 / 3.0 | p50 100.0x, p99 100.0x |" in page
    assert "| **1000/s** (1.0) | **50000/s** (1.0) | 50.0x |" in page
    assert "| during 10000 junk/s: requests opened | 4/10 | 10/10 |  |" in page
    assert (
        "| port 22 reachable, state on tmpfs, p50 / p99 / max (ms) | - | 0.5 / 1.0 / 1.0 |  |"
        in page
    )
    assert "| 1000/s | 3000/3000 at 1000/s | - |" in page
    assert "5. **SPA**" in page


def test_spa_targets_need_every_request_opened_during_the_flood() -> None:
    run = results()
    rows = {row["target"]: row for row in report.targets(run)}
    assert rows["SPA: every legitimate request opens during 10000 junk/s"]["met"]
    assert rows["SPA: p50 during 10000 junk/s below fwknopd's with no flood"]["met"]
    run["sections"]["spa"]["knocknft"]["floods"][0]["opened"] = 9
    rows = {row["target"]: row for row in report.targets(run)}
    assert not rows["SPA: every legitimate request opens during 10000 junk/s"]["met"]
    assert spa_report.targets({"fwknopd": spa(150.0, 1000)}) == []


def test_spa_junk_is_base64_as_long_as_a_real_packet_each_from_its_own_source() -> None:
    packets = spa_bench.junk_packets(3, 204)
    sources = {packet[12:16] for packet in packets}
    assert len(sources) == 3
    for packet in packets:
        assert packet[9] == 17  # UDP
        assert int.from_bytes(packet[22:24], "big") == 62201
        payload = packet[28:]
        assert len(payload) == 204
        assert set(payload) <= set(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        )
