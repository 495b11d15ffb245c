"""What the running daemon tells about itself: `status --stats` from its stats.json, and the
Prometheus endpoint."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    BIN,
    COMMANDS,
    RIGHT,
    RunningDaemon,
    config_text,
    running,
    scrape,
    write_config,
)

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4


def status_stats(daemon: RunningDaemon) -> tuple[int, dict[str, Any]]:
    result = daemon.lab.server.run(
        str(BIN / "knocknft"), "status", "--stats", "--json", "-c", str(daemon.config), check=False
    )
    return result.returncode, json.loads(result.stdout)


def test_status_stats_knows_the_running_daemon_and_when_it_is_gone(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        code, status = status_stats(daemon)
        assert (code, status["state"]) == (0, "running"), status
        assert status["stats"]["pid"] == daemon.proc.pid
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    code, status = status_stats(daemon)
    assert (code, status["state"], status["running"]) == (1, "stopped", False)
    stats = status["stats"]
    assert (stats["knocks"], stats["stages"], stats["opens"]) == (3, 3, 1), "its last values"


# -- the Prometheus endpoint, bound and scraped inside the server namespace -----------------


def metrics_config(state: Path, listen: str) -> str:
    return config_text(state).replace("options:\n", f"options:\n  metrics: '{listen}'\n")


@pytest.mark.parametrize("listen", ["127.0.0.1:9641", "[::1]:9641"])
def test_metrics_endpoint_serves_the_counters(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, listen: str
) -> None:
    cfg = write_config(tmp_path, metrics_config(tmp_path / "state", listen))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        daemon.wait_for(f"metrics on http://{listen}/metrics")
        first = scrape(lab, listen)
        assert first.status == 200
        assert first.content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert "# HELP knocknft_knocks_total Knock packets judged by the engine." in first.body
        assert "# TYPE knocknft_knocks_total counter" in first.body
        assert "# TYPE knocknft_attempts_tracked gauge" in first.body
        assert first.value("knocknft_attempts_cap") == 65536
        assert first.value("knocknft_opens_total") == 0
        assert 'knocknft_info{version="' in first.body
        assert scrape(lab, listen, "/").status == 404
        if listen.startswith("["):
            return
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        # The loop publishes with stats.json, every 5 s.
        deadline = time.monotonic() + 7
        while scrape(lab, listen).value("knocknft_opens_total") != 1:
            assert time.monotonic() < deadline, "the open never reached /metrics"
            time.sleep(0.2)
        later = scrape(lab, listen)
        assert later.value("knocknft_knocks_total") == 3
        assert later.value("knocknft_grants_total") == 1


def test_a_metrics_port_in_use_stops_the_start_before_the_table(lab: Lab, tmp_path: Path) -> None:
    taken = lab.server.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 9641))
        taken.listen()
        cfg = write_config(tmp_path, metrics_config(tmp_path / "state", "127.0.0.1:9641"))
        result = lab.server.run(str(BIN / "knocknft"), "run", "-c", str(cfg), check=False)
    finally:
        taken.close()
    assert result.returncode == 1
    assert "options.metrics: cannot serve on 127.0.0.1:9641: Address already in use" in (
        result.stderr
    )
    assert "knocknft" not in lab.server.run("nft", "list", "tables").stdout


# -- the event log --------------------------------------------------------------------------


def test_event_log_records_the_open_its_grant_and_the_commands(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    events = tmp_path / "log" / "events.jsonl"
    out = tmp_path / "commands.out"
    text = config_text(tmp_path / "state", COMMANDS.format(out=out))
    cfg = write_config(tmp_path, text.replace("options:\n", f"options:\n  event_log: {events}\n"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        lab.client.knock(SERVER, "7000", "8000", source=A)  # broken: a knock, not an event
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for("ssh: command exited 0", count=2, timeout=6)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["open", "grant", "command", "command_timeout", "command"]
    assert lines[0]["source"] == A and lines[0]["door"] == "ssh"
    assert (lines[1]["service"], lines[1]["timeout"]) == ("22/tcp", 3)
    assert (lines[2]["command"], lines[2]["exit"]) == (f"echo start {A} >> {out}", 0)
    assert (lines[4]["command"], lines[4]["exit"]) == (f"echo stop {A} >> {out}", 0)
