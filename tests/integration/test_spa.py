"""`knocknft run` serving an fwknop door to Debian's real fwknop client, in namespaces: the port
opens for the address inside the packet only and closes after open_for, with the door's start
and stop commands; a wrong HMAC key, junk and a replay open nothing and are counted, in
stats.json, the metrics and `status --stats`; a reload adds the first SPA door and keeps the
replay cache; a damaged replay file keeps SPA shut (fail closed) while knock doors work; a flood
of spoofed junk is judged and counted, packet for packet, while the client still gets in.

The broader interop matrix (stale timestamps, REQUIRE_SOURCE_ADDRESS, ports outside OPEN_PORTS,
every digest, a replay after a restart, fwknopd side by side) is test_spa_interop.py's.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.fwknop import (
    SPA_PORT,
    FwknopKeys,
    build_spa,
    fwknop_argv,
    send_payload,
    send_spa,
)
from knocklab.lab import Lab, Listener
from knocklab.packets import SPOOFED_V4, BackgroundFlood, spoofed_packet
from tests.integration.support import (
    NEEDS_FWKNOP,
    OTHER_V4,
    RunningDaemon,
    running,
    scrape,
    wait_reachable,
    wait_stats,
    write_config,
)

pytestmark = NEEDS_FWKNOP

KEYS = FwknopKeys.random()
METRICS = "198.18.0.1:9101"


def spa_config(state: Path, out: Path, keys: FwknopKeys = KEYS) -> str:
    return f"""\
options:
  state_dir: {state}
  interfaces: [eth0]
  knock_reply: reject
  metrics: {METRICS}
doors:
  ssh-fwknop:
{keys.door_yaml()}    open: [22/tcp]
    open_for: 3s
    start_command: echo start %IP% >> {out}
    stop_command: echo stop %IP% >> {out}
    cmd_timeout: 3s
"""


@pytest.fixture
def served(lab: Lab, tmp_path: Path) -> Iterator[tuple[RunningDaemon, Path]]:
    """The daemon on the fwknop door, a listener on 22/tcp, and a second client address."""
    state = tmp_path / "state"
    out = tmp_path / "commands.txt"
    listener = Listener(lab.server, 22)
    lab.client.add_address(OTHER_V4)
    config = write_config(tmp_path, spa_config(state, out))
    try:
        with running(lab, config, tmp_path / "daemon.log", ("-D",)) as daemon:
            daemon.wait_for("SPA: udp port 62201 read from NFLOG group 8")
            yield daemon, out
    finally:
        listener.close()


def reachable(lab: Lab, source: str = Lab.CLIENT_V4) -> bool:
    return lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5, source=source)


def test_the_clients_packet_opens_the_port_for_its_address_only_then_it_closes(
    lab: Lab, served: tuple[RunningDaemon, Path]
) -> None:
    daemon, out = served
    assert not reachable(lab)
    send_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
    assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
    assert not reachable(lab, OTHER_V4), "the grant is for the address inside the packet only"
    log = daemon.wait_for("granted 22/tcp for 3s")
    assert (
        "198.18.0.2: ssh-fwknop: SPA request accepted (key ssh-fwknop, fwknop, sent from "
        "198.18.0.2)" in log
    )
    assert KEYS.hmac_key_base64 not in log and KEYS.key_base64 not in log
    time.sleep(3.5)
    assert not reachable(lab), "the port closes after open_for"
    deadline = time.monotonic() + 5
    while "stop" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    assert out.read_text() == "start 198.18.0.2\nstop 198.18.0.2\n"
    stats = wait_stats(daemon, spa_accepted=1)
    assert stats["grants"] == 1 and stats["spa_rejected_bad_auth"] == 0


def test_a_wrong_hmac_key_junk_and_a_replay_open_nothing_and_are_counted(
    lab: Lab, served: tuple[RunningDaemon, Path]
) -> None:
    daemon, _ = served
    wrong = FwknopKeys(KEYS.key_base64, FwknopKeys.random().hmac_key_base64)
    send_spa(lab.client, fwknop_argv(wrong, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
    send_payload(lab.client, Lab.SERVER_V4, os.urandom(200))
    daemon.wait_for("SPA packet refused: bad_auth")
    daemon.wait_for("SPA packet refused: malformed")
    assert not reachable(lab)
    captured = build_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
    send_payload(lab.client, Lab.SERVER_V4, captured)
    assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
    send_payload(lab.client, Lab.SERVER_V4, captured, source=OTHER_V4)
    daemon.wait_for("198.18.0.3: SPA packet refused: replay")
    assert not reachable(lab, OTHER_V4)
    wanted = {
        "spa_accepted": 1,
        "spa_rejected_bad_auth": 1,
        "spa_rejected_malformed": 1,
        "spa_rejected_replay": 1,
    }
    wait_stats(daemon, **wanted)
    metrics = scrape(lab, METRICS)
    assert metrics.value("knocknft_spa_rejected_bad_auth_total") == 1
    assert metrics.value("knocknft_spa_rejected_replay_total") == 1
    assert metrics.value("knocknft_spa_accepted_total") == 1


def test_a_reload_adds_the_first_spa_door_and_keeps_the_replay_cache_after(
    lab: Lab, tmp_path: Path
) -> None:
    state, out = tmp_path / "state", tmp_path / "commands.txt"
    with_spa = spa_config(state, out)
    knock_only = with_spa[: with_spa.index("  ssh-fwknop:")] + (
        "  ssh:\n    sequence: [7000, 8000]\n    open: [22/tcp]\n    open_for: 3s\n"
    )
    config = write_config(tmp_path, knock_only)
    listener = Listener(lab.server, 22)
    try:
        with running(lab, config, tmp_path / "daemon.log", ("-D",)) as daemon:
            assert "SPA:" not in daemon.log()
            config.write_text(with_spa)
            daemon.send(signal.SIGHUP)
            daemon.wait_for("SPA: udp port 62201 read from NFLOG group 8")
            captured = build_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
            send_payload(lab.client, Lab.SERVER_V4, captured)
            assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
            config.write_text(with_spa.replace("open_for: 3s", "open_for: 4s"))
            daemon.send(signal.SIGHUP)
            daemon.wait_for("reloaded: 1 door(s)", count=2)
            send_payload(lab.client, Lab.SERVER_V4, captured)
            daemon.wait_for("198.18.0.2: SPA packet refused: replay")
    finally:
        listener.close()


def test_a_damaged_replay_file_keeps_spa_shut_and_knock_doors_open(
    lab: Lab, tmp_path: Path
) -> None:
    state, out = tmp_path / "state", tmp_path / "commands.txt"
    state.mkdir(mode=0o700)
    (state / "spa-replay.json").write_text('{"window": 120, "digests": [["not hex", 1]]}')
    text = spa_config(state, out) + (
        "  ssh:\n    sequence: [7000, 8000]\n    open: [22/tcp]\n    open_for: 3s\n"
    )
    config = write_config(tmp_path, text)
    listener = Listener(lab.server, 22)
    try:
        with running(lab, config, tmp_path / "daemon.log", ("-D",)) as daemon:
            daemon.wait_for("cannot be trusted")
            send_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
            daemon.wait_for("SPA packet refused: replay (ssh-fwknop: replay file damaged at start)")
            assert not reachable(lab)
            assert [p.name for p in state.glob("spa-replay.json.damaged-*")] != []
            lab.client.knock(Lab.SERVER_V4, "7000", "8000")
            assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
    finally:
        listener.close()


FLOOD_RATE = 3000  # junk packets per second, for at most FLOOD_SECONDS
FLOOD_SECONDS = 6.0


def test_a_junk_flood_is_judged_and_counted_while_the_client_still_gets_in(
    lab: Lab, served: tuple[RunningDaemon, Path]
) -> None:
    """Behaviour, not speed: spoofed junk that passes the length and character checks, each
    packet judged by its HMAC; the real client's packet in the middle of it opens the port."""
    daemon, _ = served
    junk = [
        spoofed_packet(
            str(SPOOFED_V4 + i),
            Lab.SERVER_V4,
            SPA_PORT,
            "udp",
            base64.b64encode(os.urandom(150)).rstrip(b"="),
        )
        for i in range(2000)
    ]
    with BackgroundFlood(lab.client, Lab.SERVER_V4, junk, FLOOD_RATE, FLOOD_SECONDS) as flood:
        send_spa(lab.client, fwknop_argv(KEYS, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
        assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()[-2000:]
    assert flood.sent > 0
    deadline = time.monotonic() + 12
    while True:
        stats = wait_stats(daemon, spa_accepted=1)
        judged = stats["spa_rejected_bad_auth"] + stats["spa_packets_lost"]
        if judged == flood.sent or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert judged == flood.sent, stats
    assert stats["spa_rejected_malformed"] == 0
