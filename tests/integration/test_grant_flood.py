"""Who gets in under abuse, against the real kernel: a flood of completed sequences from
spoofed sources does not keep a knocker out, and completions from sources that are never
clients (broadcast, network, reserved, unspecified, link-local, IPv4-mapped loopback, the
server's own) open nothing and run nothing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from knocklab.lab import Lab, Listener
from knocklab.packets import (
    raw_socket,
    send_paced,
    send_spoofed,
    spoofed_sequence,
    spoofed_sequences,
)
from tests.integration.support import (
    COMMANDS,
    RIGHT,
    config_text,
    running,
    wait_reachable,
    write_config,
)

STEPS = [(7000, "tcp"), (9000, "udp"), (8000, "tcp")]
# A completed sequence per spoofed source: 20,000 grants, 60,000 packets in at most 12 s.
FLOOD_SOURCES = 20_000
FLOOD_RATE = 6_000
FLOOD_SECONDS = 12.0


def test_a_knocker_gets_in_during_a_flood_of_spoofed_completions(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    client = str(lab.client.add_address("198.18.0.10"))
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state, open_for="60s", seq_timeout="5s"))
    packets = spoofed_sequences(Lab.SERVER_V4, STEPS, FLOOD_SOURCES)
    stop = threading.Event()
    sent: list[int] = []

    def flood() -> None:
        sock = raw_socket(lab.client, 4)
        try:
            sent.append(
                send_paced(
                    sock, Lab.SERVER_V4, packets, FLOOD_RATE, max_seconds=FLOOD_SECONDS, stop=stop
                )[0]
            )
        finally:
            sock.close()

    with running(lab, cfg, tmp_path / "daemon.log", verbose=False) as daemon:
        sender = threading.Thread(target=flood)
        sender.start()
        try:
            time.sleep(2.0)  # thousands of forged grants in, and more coming
            got_in = False
            for _ in range(3):  # as a person would: knock again when the door stays shut
                lab.client.knock(Lab.SERVER_V4, *RIGHT, source=client)
                if wait_reachable(lab, client, time.monotonic() + 3.0):
                    got_in = True
                    break
            assert sender.is_alive(), "the knocker's try happened during the flood"
            assert got_in, daemon.log()[-2000:]
        finally:
            stop.set()
            sender.join()
        listed = daemon.lab.server.run("nft", "-j", "list", "set", "inet", "knocknft", "allow4")
    elements = json.loads(listed.stdout)["nftables"][1]["set"].get("elem", [])
    addresses = {e["elem"]["val"]["concat"][0] for e in elements}
    assert client in addresses
    assert len(addresses) > 1000, "the flood's grants went in too"
    stats = json.loads((state / "stats.json").read_text())
    assert stats["opens"] > 1000
    # The OPEN lines of a flood are rate-limited like knock lines (the audit log keeps them).
    log = (tmp_path / "daemon.log").read_text()
    assert log.count("OPEN SESAME") < stats["opens"] / 2


ODD_SOURCES = [
    "198.18.0.255",  # the link's directed broadcast
    "198.18.0.0",  # its network address
    "240.0.0.1",  # reserved
    "169.254.0.9",  # link-local
    Lab.SERVER_V4,  # the server's own
    "::",
    "::ffff:127.0.0.1",
    "fe80::1",
    Lab.SERVER_V6,
]


def test_completions_from_odd_sources_open_nothing_and_run_nothing(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    # Let forged sources past the server's routing checks (they are martians to it otherwise),
    # so that the daemon is what judges them.
    for key, value in (
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
        ("net.ipv4.conf.all.accept_local", "1"),
        ("net.ipv4.conf.eth0.accept_local", "1"),
        ("net.ipv4.conf.all.route_localnet", "1"),
    ):
        lab.server.run("sysctl", "-qw", f"{key}={value}")
    out = tmp_path / "commands.out"
    state = tmp_path / "state"
    extra = COMMANDS.format(out=out)
    cfg = write_config(tmp_path, config_text(state, extra, open_for="60s", seq_timeout="5s"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        # The client learns the server's link address first: forged packets queued behind
        # neighbour discovery are otherwise dropped.
        lab.client.tcp_reachable(Lab.SERVER_V6, 22, timeout=0.5)
        for source in ODD_SOURCES:
            target = Lab.SERVER_V6 if ":" in source else Lab.SERVER_V4
            send_spoofed(lab.client, target, spoofed_sequence(source, target, STEPS))
        # A normal source still gets in, and its knock comes after all of theirs.
        lab.client.knock(Lab.SERVER_V4, *RIGHT, source=Lab.CLIENT_V4)
        daemon.wait_for(f"{Lab.CLIENT_V4}: ssh: OPEN SESAME", timeout=5)
        assert lab.client.tcp_reachable(Lab.SERVER_V4, 22, source=Lab.CLIENT_V4)
        listed = daemon.lab.server.run("nft", "list", "table", "inet", "knocknft").stdout
        log = daemon.log()
    time.sleep(0.5)  # the start command runs off the loop
    assert out.read_text().split("\n")[0] == f"start {Lab.CLIENT_V4}"
    assert out.read_text().count("start") == 1
    # Each odd source reached the daemon (the sysctls above let it) and was refused; IPv4 in
    # IPv6 is shown as IPv4.
    refused = [line for line in log.splitlines() if "never granted, no command run" in line]
    shown = [s.replace("::ffff:", "") for s in ODD_SOURCES]
    assert [line.split(": ")[1] for line in refused] == shown, log
    for source in shown:
        assert f"{source} . tcp . 22" not in listed
        assert f"{source}: ssh: OPEN SESAME" not in log
    stats = json.loads((state / "stats.json").read_text())
    assert stats["odd_addresses_refused"] == len(ODD_SOURCES)
