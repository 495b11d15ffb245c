"""A spoofed flood of first-step knocks against the real daemon: its memory stays bounded by the
attempt cap, and real knockers still get in while the flood goes on. Behaviour only: nothing
here asserts a speed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from knocklab.daemons import rss_bytes
from knocklab.lab import Lab, Listener
from knocklab.packets import SpoofedSyns, flood
from knocknft.config import DEFAULT_MAX_ATTEMPTS
from tests.integration.support import (
    REPO,
    RIGHT,
    RunningDaemon,
    config_text,
    running,
    scrape,
    write_config,
)

SERVER = Lab.SERVER_V4
# The promise of the README and docs/FLOODS.md, checked here: the daemon's resident memory at
# the default cap.
RSS_CAP_MIB = 96
FLOOD_RATE = 30_000
# The most the flood may last; it is stopped as soon as the knockers are through (a few s).
FLOOD_SECONDS = 20.0
METRICS = "127.0.0.1:9641"


def knock_until_open(daemon: RunningDaemon, client: str, tries: int = 3) -> int:
    """Knock as a person would: again when the door stays shut. Returns the tries it took.
    Three: a lost last knock leaves an attempt that the next try's first knock only breaks."""
    for attempt in range(1, tries + 1):
        daemon.lab.client.knock(SERVER, *RIGHT, source=client)
        with contextlib.suppress(AssertionError):
            daemon.wait_for(f"{client}: ssh: OPEN SESAME", timeout=3)
            return attempt
    raise AssertionError(f"{client} did not get in after {tries} knocks:\n{daemon.log()[-2000:]}")


def test_the_readme_and_the_floods_page_document_the_rss_cap_this_test_checks() -> None:
    for page in ("README.md", "docs/FLOODS.md"):
        text = (REPO / page).read_text()
        assert f"under {RSS_CAP_MIB} MiB at the default cap of {DEFAULT_MAX_ATTEMPTS}" in text, page


def test_a_spoofed_flood_is_bounded_and_real_knockers_still_get_in(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    clients = [str(lab.client.add_address(f"198.18.0.{10 + i}")) for i in range(10)]
    state = tmp_path / "state"
    # seq_timeout outlasts the test: attempts leave only by eviction, so the cap is what bounds.
    text = config_text(state, open_for="30s", seq_timeout="25s")
    cfg = write_config(tmp_path, text.replace("options:\n", f"options:\n  metrics: {METRICS}\n"))
    # More distinct sources than the cap, so the flood overfills it and evictions must happen.
    knocks = SpoofedSyns(4, SERVER, 7000)
    assert knocks.count > DEFAULT_MAX_ATTEMPTS
    packets = list(knocks.packets())
    stop = threading.Event()
    sent: list[int] = []
    with running(lab, cfg, tmp_path / "daemon.log", verbose=False) as daemon:
        assert b"knocknft" in Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes()
        sender = threading.Thread(
            target=lambda: sent.append(
                flood(lab.client, packets, SERVER, FLOOD_RATE, FLOOD_SECONDS, stop=stop)[0]
            )
        )
        sender.start()
        try:
            # Past the point where the cap is full, then each client knocks, amid the flood.
            time.sleep(3.0)
            knocked = [knock_until_open(daemon, client) for client in clients]
            for client in clients:
                assert lab.client.tcp_reachable(SERVER, 22, source=client)
            # The metrics thread answers too: the loop's work does not starve it.
            assert scrape(lab, METRICS).value("knocknft_attempts_cap") == DEFAULT_MAX_ATTEMPTS
            assert sender.is_alive(), "every knock and scrape above happened during the flood"
        finally:
            stop.set()
            sender.join()
        rss = rss_bytes(daemon.proc.pid)
    stats = json.loads((state / "stats.json").read_text())
    assert sent and stats["knocks"] > DEFAULT_MAX_ATTEMPTS
    assert stats["opens"] >= len(clients)
    if knocked != [1] * len(clients):
        # A knock is lost only where the kernel had to drop NFLOG messages (a daemon short of
        # CPU), and that is counted; the engine itself never loses a knocker to the flood.
        assert stats["nflog_lost"] > 0, knocked
    assert stats["attempts_cap"] == DEFAULT_MAX_ATTEMPTS
    assert stats["attempts_tracked"] <= stats["attempts_cap"]
    assert stats["evictions"] > 0
    assert rss < RSS_CAP_MIB << 20, f"RSS {rss / 2**20:.1f} MiB at the cap"
