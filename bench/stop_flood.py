"""A stop-command flood: spoofed sources complete a door's sequence (a door with a stop command,
so each completion schedules a stop), then one real knocker knocks; how long until it is in,
and how long the daemon takes to honour SIGTERM afterwards.

    sudo PYTHONPATH=. .venv/bin/python bench/stop_flood.py [--completions 6000] [--rate 1000]

In a lab of its own (network namespaces joined by veth pairs, 198.18.0.0/15 only); the flood is
bounded in count and time. To measure other code, put its tree first: PYTHONPATH=OTHER:. .
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import time
from pathlib import Path

from knocklab.lab import Lab
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
    open_for: 5m
    start_command: 'true'
    stop_command: 'true'
    cmd_timeout: 5m
"""


def run(completed: int, rate: int, knock_after: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Lab("stflood") as lab:
        tmp_path = Path(tmp)
        cfg = write_config(tmp_path, CONFIG.format(state=tmp_path / "state"))
        daemon = RunningDaemon(lab, cfg, tmp_path / "daemon.log", verbose=False)
        try:
            packets = spoofed_sequences(SERVER, [(port, "tcp") for port in PORTS], completed)
            done = threading.Event()
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
                        )
                    )
                finally:
                    sock.close()
                    done.set()

            flooder = threading.Thread(target=send)
            flooder.start()
            time.sleep(knock_after)
            knocked = time.monotonic()
            lab.client.knock(SERVER, *(str(p) for p in PORTS))
            daemon.wait_for(f"{CLIENT}: ssh: OPEN SESAME", timeout=120)
            in_after = time.monotonic() - knocked
            flooder.join()
            stopping = time.monotonic()
            daemon.stop(signal.SIGTERM, timeout=120)
            stopped_after = time.monotonic() - stopping
        finally:
            daemon.stop(signal.SIGKILL)
        return {
            "completions": completed,
            "rate": rate,
            "knock_after_s": knock_after,
            "flood_sent": sent[0][0] if sent else 0,
            "flood_seconds": round(sent[0][1], 2) if sent else 0,
            "legit_in_s": round(in_after, 3),
            "sigterm_s": round(stopped_after, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--completions", type=int, default=6000)
    parser.add_argument("--rate", type=int, default=1000, help="completions per second")
    parser.add_argument("--knock-after", type=float, default=3.0, help="seconds into the flood")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        print(json.dumps(run(args.completions, args.rate, args.knock_after)), flush=True)


if __name__ == "__main__":
    main()
