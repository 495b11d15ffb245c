"""`knocknft status` tells whether the gate is really in place, against the real kernel: the
table, the daemon, the interfaces, a pending confirmation; with exit codes scripts test, JSON
also when the table is gone, sequences hidden unless asked, and --watch."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from knocklab.lab import Lab, Listener
from knocknft.admin.health import EXIT_GATE_DEGRADED, EXIT_GATE_DOWN
from tests.integration.support import BIN, Server, config_text, running, write_config

A = Lab.CLIENT_V4


def test_status_follows_the_gate_from_table_to_daemon_and_back(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    server = Server(lab, cfg, tmp_path / "state")

    report = server.status_report()  # nothing applied yet: JSON all the same
    assert report["health"]["exit"] == EXIT_GATE_DOWN and not report["health"]["table_loaded"]
    assert report["grants"] == [] and report["bans"] == []
    assert report["health"]["problems"][0].startswith("table inet knocknft is not loaded")

    server.knocknft("apply")
    text = server.knocknft("status", check=False)
    assert text.returncode == EXIT_GATE_DEGRADED
    assert "daemon: NOT RUNNING" in text.stdout and "interfaces: eth0 present" in text.stdout
    assert "ssh   3 knocks (hidden)  opens 22/tcp for 3s" in text.stdout
    assert "7000" not in text.stdout, "the sequence is the secret"
    shown = server.knocknft("status", "--show-sequences", check=False).stdout
    assert "7000/tcp,9000/udp,8000/tcp" in shown

    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        server.knocknft("open", A, "--for", "1m")
        text = server.knocknft("status")  # exit 0: the gate is in place
        assert f"daemon: running, pid {daemon.pid} (config {cfg}, NFLOG group 7)" in text.stdout
        assert "gate: in place" in text.stdout and A in text.stdout
        report = server.status_report()
        assert report["health"]["in_place"] and report["health"]["daemon"]["pid"] == daemon.pid
        assert [g["address"] for g in report["grants"]] == [A]

    server.nft("delete", "table", "inet", "knocknft")  # the daemon is gone: nobody restores it
    gone = server.knocknft("status", "--json", check=False)
    assert gone.returncode == EXIT_GATE_DOWN and "Traceback" not in gone.stderr
    health = json.loads(gone.stdout)["health"]
    assert (health["table_loaded"], health["daemon_running"]) == (False, False)


def test_a_vanished_interface_and_a_pending_confirmation_degrade_the_gate(
    lab: Lab, tmp_path: Path
) -> None:
    lab.server.run("ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p")
    text = config_text(tmp_path / "state").replace("[eth0]", "[eth0, vpn0]")
    server = Server(lab, write_config(tmp_path, text), tmp_path / "state")
    server.knocknft("apply", "--confirm", "5m")
    report = server.status_report()
    confirm = report["health"]["confirm"]
    assert confirm["pending"] and confirm["watcher_running"]
    assert 250 < confirm["rolls_back_in"] <= 300
    assert any("unless `knocknft confirm` runs" in p for p in report["health"]["problems"])
    server.knocknft("confirm")
    assert server.status_report()["health"]["confirm"] is None

    lab.server.run("ip", "link", "del", "vpn0")  # the VPN went down
    result = server.knocknft("status", check=False)
    assert result.returncode == EXIT_GATE_DEGRADED
    assert "interfaces: eth0 present, vpn0 MISSING" in result.stdout
    assert server.status_report()["health"]["interfaces_missing"] == ["vpn0"]


def test_watch_refreshes_until_ctrl_c_and_exits_cleanly(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    server = Server(lab, cfg, tmp_path / "state")
    server.knocknft("apply")
    watch = lab.server.popen(
        str(BIN / "knocknft"),
        "status",
        "--watch",
        "1",
        "--json",
        "-c",
        str(cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        server.knocknft("open", A, "--for", "1m")
        deadline = time.monotonic() + 10
        later = first
        while not later["grants"] and time.monotonic() < deadline:
            later = json.loads(watch.stdout.readline())  # one object per line, each refresh
        assert first["grants"] == [] and [g["address"] for g in later["grants"]] == [A]
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
