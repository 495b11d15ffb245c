"""`make demo`: knocknft end to end in two throwaway network namespaces.

A server namespace gets the example config applied and a listener on the protected port (22);
a client namespace, joined to it by a veth pair, tries to connect before, during and after a
grant. Only 198.18.0.0/15 and 2001:db8::/32 are used; the namespaces are removed on exit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from knocknft.lab import Lab, Listener, can_use_namespaces

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIG = REPO / "config.example.yaml"
GRANT_SECONDS = 5


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


def main() -> None:
    why = can_use_namespaces()
    if why:
        raise SystemExit(f"demo: cannot run: {why}")
    with Lab("demo") as lab:
        say(
            f"namespaces {lab.server.netns} (server {Lab.SERVER_V4}, {Lab.SERVER_V6}) and "
            f"{lab.client.netns} (client {Lab.CLIENT_V4}, {Lab.CLIENT_V6}), joined by veth eth0"
        )
        listener = Listener(lab.server, 22)
        try:
            say("before knocknft: the service on port 22 is reachable")
            probe(lab, Lab.SERVER_V4)
            say("validate and apply the example config in the server")
            show(lab, "check")
            show(lab, "apply")
            print(lab.server.run("nft", "list", "table", "inet", "knocknft").stdout.rstrip())
            say("now port 22 is closed to everyone without a grant")
            probe(lab, Lab.SERVER_V4)
            probe(lab, Lab.SERVER_V6)
            say(f"grant the client door ssh for {GRANT_SECONDS}s, by hand")
            show(lab, "open", Lab.CLIENT_V4, "--door", "ssh", "--for", f"{GRANT_SECONDS}s")
            show(lab, "open", Lab.CLIENT_V6, "--door", "ssh", "--for", f"{GRANT_SECONDS}s")
            probe(lab, Lab.SERVER_V4)
            probe(lab, Lab.SERVER_V6)
            show(lab, "status")
            say(f"wait {GRANT_SECONDS + 1}s: the kernel expires the grant by itself")
            time.sleep(GRANT_SECONDS + 1)
            probe(lab, Lab.SERVER_V4)
            probe(lab, Lab.SERVER_V6)
            show(lab, "status")
        finally:
            listener.close()
    say("done: namespaces removed")


if __name__ == "__main__":
    main()
