"""`make demo`: knocknft end to end in two throwaway network namespaces.

A server namespace runs `knocknft run` with the example config and a listener on the protected
port (22); a client namespace, joined to it by a veth pair, knocks with the bundled `knock` and
tries to connect before, during and after its grant. Only 198.18.0.0/15 and 2001:db8::/32 are
used; the daemon is stopped and the namespaces are removed on exit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from knocklab.lab import Lab, Listener, can_use_namespaces

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIG = REPO / "config.example.yaml"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(lab: Lab, *args: str) -> None:
    print(f"$ knocknft {' '.join(args)}", flush=True)
    result = lab.server.run(str(BIN / "knocknft"), *args, "-c", str(CONFIG), check=False)
    print((result.stdout + result.stderr).rstrip(), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: knocknft {args[0]} failed with exit status {result.returncode}")


def probe(lab: Lab, address: str) -> None:
    started = time.monotonic()
    reachable = lab.client.tcp_reachable(address, 22, timeout=1.0)
    took = (time.monotonic() - started) * 1000
    verdict = "OPEN (connected)" if reachable else "CLOSED (no answer: dropped)"
    print(f"client -> {address} port 22/tcp: {verdict} [{took:.0f} ms]", flush=True)


def knock(lab: Lab, address: str) -> None:
    args = [str(BIN / "knock"), "-v", address, "7000", "9000:udp", "8000"]
    print(f"client$ knock -v {address} 7000 9000:udp 8000", flush=True)
    print(lab.client.run(*args).stdout.rstrip(), flush=True)


def main() -> None:
    why = can_use_namespaces()
    if why:
        raise SystemExit(f"demo: cannot run: {why}")
    open_for = 30  # config.example.yaml's open_for for door ssh
    with Lab("demo") as lab, tempfile.TemporaryDirectory() as state:
        say(
            f"namespaces {lab.server.netns} (server {Lab.SERVER_V4}, {Lab.SERVER_V6}) and "
            f"{lab.client.netns} (client {Lab.CLIENT_V4}, {Lab.CLIENT_V6}), joined by veth eth0"
        )
        listener = Listener(lab.server, 22)
        daemon: subprocess.Popen[str] | None = None
        try:
            say("before knocknft: the service on port 22 is reachable")
            probe(lab, Lab.SERVER_V4)
            say("validate the example config, then start the daemon in the server")
            show(lab, "check")
            print(f"server$ knocknft run -c {CONFIG.name}   (its log follows, prefixed |)")
            daemon = lab.server.popen(
                str(BIN / "knocknft"),
                "run",
                "-c",
                str(CONFIG),
                "--state-dir",
                state,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            follow(daemon, "listening on NFLOG group")
            print(lab.server.run("nft", "list", "table", "inet", "knocknft").stdout.rstrip())
            say("port 22 is now closed to everyone without a grant")
            probe(lab, Lab.SERVER_V4)
            say("the client knocks the sequence of door ssh: 7000/tcp, 9000/udp, 8000/tcp")
            knock(lab, Lab.SERVER_V4)
            follow(daemon, "granted")
            probe(lab, Lab.SERVER_V4)
            say("and over IPv6")
            knock(lab, Lab.SERVER_V6)
            follow(daemon, "granted")
            probe(lab, Lab.SERVER_V6)
            show(lab, "status")
            say(f"wait for open_for ({open_for}s): the kernel expires the grants by itself")
            time.sleep(open_for + 1)
            probe(lab, Lab.SERVER_V4)
            probe(lab, Lab.SERVER_V6)
            show(lab, "status")
        finally:
            if daemon is not None:
                daemon.terminate()
                rest, _ = daemon.communicate(timeout=10)
                for line in rest.splitlines():
                    print(f"  | {line}")
            listener.close()
    say("done: daemon stopped, namespaces removed")


def follow(daemon: subprocess.Popen[str], until: str, timeout: float = 10.0) -> None:
    """Echo the daemon's log until a line containing `until` appears."""
    assert daemon.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = daemon.stdout.readline()
        if not line:
            raise SystemExit(f"demo: the daemon stopped (exit {daemon.wait()})")
        print(f"  | {line.rstrip()}", flush=True)
        if until in line:
            return
    raise SystemExit(f"demo: no {until!r} from the daemon within {timeout}s")


if __name__ == "__main__":
    main()
