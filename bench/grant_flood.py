"""A grant flood: spoofed sources complete a door's sequence, each completion a grant, enough of
them to fill the allowlist set (65,536 elements); meanwhile one real knocker knocks. How long
until its port opens (a TCP connection to 22 completes), capped at --patience.

    sudo PYTHONPATH=. .venv/bin/python bench/grant_flood.py [--completions 100000] [--rate 2500]

In a lab of its own (network namespaces joined by veth pairs, 198.18.0.0/15 only); the flood is
bounded in count and time. To measure other code, put its tree first: PYTHONPATH=OTHER:. (this
script uses only knocklab names that older trees have too).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

from knocklab.lab import Lab, Listener
from knocklab.packets import raw_socket, send_paced, spoofed_sequences
from tests.integration.support import RunningDaemon, write_config

SERVER, CLIENT = Lab.SERVER_V4, Lab.CLIENT_V4
PORTS = (7000, 8000, 9000)
CONFIG = """\
options:
  state_dir: {state}
  interfaces: [eth0]
doors:
  ssh:
    sequence: [7000/tcp, 8000/tcp, 9000/tcp]
    seq_timeout: 30s
    tcpflags: syn,!ack
    open: [22/tcp]
    open_for: 10m
"""


def set_size(lab: Lab) -> int:
    listing = lab.server.run("nft", "list", "set", "inet", "knocknft", "allow4", check=False).stdout
    return len(re.findall(r" \. tcp \. 22", listing))


def run(completed: int, rate: int, knock_after: float, patience: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, Lab("grflood") as lab:
        tmp_path = Path(tmp)
        cfg = write_config(tmp_path, CONFIG.format(state=tmp_path / "state"))
        listener = Listener(lab.server, 22)
        daemon = RunningDaemon(lab, cfg, tmp_path / "daemon.log", verbose=False)
        try:
            packets = spoofed_sequences(SERVER, [(port, "tcp") for port in PORTS], completed)
            stop = threading.Event()
            sent: list[tuple[int, float]] = []

            def send() -> None:
                sock = raw_socket(lab.client, 4)
                try:
                    sent.append(
                        send_paced(
                            sock,
                            SERVER,
                            packets,
                            rate * len(PORTS),
                            max_seconds=completed / rate + 5,
                            stop=stop,
                        )
                    )
                finally:
                    sock.close()

            flooder = threading.Thread(target=send)
            flooder.start()
            time.sleep(knock_after)
            in_set_before = set_size(lab)
            knocked = time.monotonic()
            in_after: float | None = None
            tries = 0
            while time.monotonic() - knocked < patience:
                if tries == 0 or time.monotonic() - knocked > 3 * tries:  # knock again every 3 s
                    lab.client.knock(SERVER, *(str(p) for p in PORTS))
                    tries += 1
                if lab.client.tcp_reachable(SERVER, 22, timeout=0.3):
                    in_after = time.monotonic() - knocked
                    break
                time.sleep(0.05)
            during = flooder.is_alive()
            stop.set()
            flooder.join()
            in_set_after = set_size(lab)
        finally:
            daemon.stop(signal.SIGTERM, timeout=60)
            listener.close()
        return {
            "completions": completed,
            "rate": rate,
            "knock_after_s": knock_after,
            "flood_sent": sent[0][0] if sent else 0,
            "set_when_knocked": in_set_before,
            "set_at_end": in_set_after,
            "legit_in_s": None if in_after is None else round(in_after, 3),
            "knocks": tries,
            "flood_still_running": during,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--completions", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2500, help="completions per second")
    parser.add_argument("--knock-after", type=float, default=30.0, help="seconds into the flood")
    parser.add_argument("--patience", type=float, default=30.0, help="give up after (seconds)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.runs):
        print(
            json.dumps(run(args.completions, args.rate, args.knock_after, args.patience)),
            flush=True,
        )


if __name__ == "__main__":
    main()
