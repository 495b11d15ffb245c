"""What the integration tests share besides fixtures: paths, the server's CLI, a running daemon,
the daemon config most tests start from, and small clients (metrics scrape, echo sessions).

Fixtures live in conftest.py; test modules import from here, never from each other.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from knocklab.daemons import LabDaemon
from knocklab.fwknop import FWKNOP
from knocklab.lab import Lab, run_in_netns
from knocknft.admin.confirm import watcher_alive

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_CONFIG = REPO / "config.example.yaml"
# Other firewalls' rulesets, loaded into the server namespace to run knocknft alongside them.
FIREWALLS = REPO / "tests" / "data" / "firewalls"
# A second client on the client's link: a source that never knocked.
OTHER_V4, OTHER_V6 = "198.18.0.3", "2001:db8::3"

# The tests that talk to Debian's fwknop client: skipped where it is missing.
NEEDS_FWKNOP = pytest.mark.skipif(
    not FWKNOP.exists(), reason="Debian's fwknop client is missing (make deps installs it)"
)

# Commands that keep the last-known-good table in a state dir.
STATE_DIR_COMMANDS = ("apply", "guard")


@dataclass
class Server:
    """The server namespace, with knocknft's CLI run inside it."""

    lab: Lab
    config: Path
    # apply keeps the table here for the guard: a test's own directory, not the host's
    # /var/lib/knocknft.
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        # A config that names no state_dir (config.example.yaml, a knockd.conf) would have
        # apply write the host's own /var/lib/knocknft, which the boot guard loads. tempfile
        # points into the test's tmp_path (tests/conftest.py), so this goes with the test's files.
        if self.state_dir is None and "state_dir" not in self.config.read_text(errors="replace"):
            self.state_dir = Path(tempfile.mkdtemp(prefix="state-"))

    def knocknft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        has_config = any(a in ("-c", "--config") for a in args)
        extra = (
            []
            if has_config or args[:1] in (("--version",), ("--help",), ("guard",))
            else ["-c", str(self.config)]
        )
        if self.state_dir is not None and args[:1] in [(c,) for c in STATE_DIR_COMMANDS]:
            extra += ["--state-dir", str(self.state_dir)]
        result = self.lab.server.run(str(BIN / "knocknft"), *args, *extra, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"knocknft {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.server.run("nft", *args, check=check)

    def doctor(self) -> dict[str, Any]:
        """`doctor --json`, whose exit code must agree with its verdict."""
        result = self.knocknft("doctor", "--json", check=False)
        report: dict[str, Any] = json.loads(result.stdout)
        assert result.returncode == (0 if report["ok"] else 1), result.stderr
        return report

    def status_report(self, *args: str) -> dict[str, Any]:
        """`status --json`, whose exit code must agree with its verdict on the gate (4 in most
        tests: the table is loaded and no daemon runs)."""
        result = self.knocknft("status", "--json", *args, check=False)
        report: dict[str, Any] = json.loads(result.stdout)
        assert result.returncode == report["health"]["exit"], result.stderr
        return report

    def status(self) -> list[dict[str, Any]]:
        grants: list[dict[str, Any]] = self.status_report()["grants"]
        return grants


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 6.0) -> None:
    """Poll `check` until it holds; fail naming `condition` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {condition}"
        time.sleep(0.1)


def kill_rollback_watcher(state: Path) -> None:
    """After an `apply --confirm` test: a watcher left by a failed test must not act on a
    namespace that is being deleted."""
    marker = state / "confirm.json"
    if marker.exists():
        pid = json.loads(marker.read_text())["watcher"]
        if watcher_alive(pid):
            os.kill(pid, signal.SIGKILL)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


# -- the daemon's usual config: one door, three steps, 22/tcp ----------------------------------

RIGHT = ("7000", "9000/udp", "8000")


def config_text(state: Path, extra: str = "", open_for: str = "3s", seq_timeout: str = "2s") -> str:
    return f"""\
options:
  state_dir: {state}
  interfaces: [eth0]
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    seq_timeout: {seq_timeout}
    tcpflags: syn,!ack
    open: [22/tcp]
    open_for: {open_for}
{extra}"""


COMMANDS = """\
    start_command: echo start %IP% >> {out}
    stop_command: echo stop %IP% >> {out}
    cmd_timeout: 2s
"""


# -- a running `knocknft run` in the server namespace, with its log captured -------------------

READY = "listening on NFLOG group"


class RunningDaemon(LabDaemon):
    def __init__(
        self,
        lab: Lab,
        config: Path,
        log_path: Path,
        extra: tuple[str, ...] = (),
        *,
        env: Mapping[str, str] | None = None,  # added to this process's environment
        prefix: Sequence[str] = (),  # a command that runs knocknft, e.g. setpriv with its flags
        verbose: bool = True,
    ) -> None:
        self.lab = lab
        self.config = config
        # -v by default, for the detail a failing test needs; a flood test goes without, since
        # -v writes a line for every evicted attempt.
        flags: tuple[str, ...] = ("-v",) if verbose else ()
        # A config that names no state_dir (every knockd.conf) would write the host's own
        # /var/lib/knocknft, which the boot guard loads: keep it beside the test's log.
        if "state_dir" not in config.read_text(errors="replace") and "--state-dir" not in extra:
            flags += ("--state-dir", str(log_path.parent / "state"))
        super().__init__(
            lab.server,
            [*prefix, str(BIN / "knocknft"), "run", "-c", str(config), *flags, *extra],
            log_path,
            READY,
            env=env,
            name="knocknft run",
        )


@contextmanager
def running(
    lab: Lab,
    config: Path,
    log_path: Path,
    extra: tuple[str, ...] = (),
    *,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    verbose: bool = True,
) -> Iterator[RunningDaemon]:
    daemon = RunningDaemon(lab, config, log_path, extra, env=env, prefix=prefix, verbose=verbose)
    try:
        yield daemon
    finally:
        daemon.stop()


# -- the Prometheus endpoint, scraped inside the server namespace -----------------------------


@dataclass(frozen=True)
class Scrape:
    status: int
    content_type: str
    body: str

    def value(self, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", self.body, re.MULTILINE)
        assert match is not None, f"{name} not in:\n{self.body}"
        return float(match.group(1))


def scrape(lab: Lab, listen: str, path: str = "/metrics") -> Scrape:
    """GET path from listen (ADDRESS:PORT) on a thread inside the server namespace: the request
    never leaves it (http.client, not urllib: no proxy from the environment is ever asked)."""
    host, port = listen.rsplit(":", 1)

    def get() -> Scrape:
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return Scrape(
                answer.status, answer.getheader("Content-Type", ""), answer.read().decode()
            )
        finally:
            conn.close()

    result = run_in_netns(lab.server.netns, get)
    assert isinstance(result, Scrape)
    return result


def wait_reachable(lab: Lab, source: str, deadline: float) -> bool:
    """Whether the server's port 22 lets `source` in before `deadline` (time.monotonic)."""
    while time.monotonic() < deadline:
        if lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5, source=source):
            return True
        time.sleep(0.1)
    return False


# -- an echo session from the client, to see a grant's end reset it ---------------------------


def connect(lab: Lab, port: int, source: str = Lab.CLIENT_V4) -> socket.socket:
    sock = lab.client.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    sock.bind((source, 0))
    sock.connect((Lab.SERVER_V4, port))
    assert exchange(sock) == b"ping", "the connection works while granted"
    return sock


def exchange(sock: socket.socket) -> bytes | str:
    """Send one message and read the echo: the bytes, or the name of the error instead."""
    try:
        sock.sendall(b"ping")
        return sock.recv(16)
    except OSError as exc:
        return type(exc).__name__


def wait_stats(daemon: RunningDaemon, **wanted: int) -> dict[str, Any]:
    """`status --stats --json`'s counters once they show `wanted` (the daemon writes them every
    few seconds)."""
    state = daemon.config.parent / "state"
    deadline = time.monotonic() + 12
    while True:
        answer = daemon.lab.server.run(
            str(BIN / "knocknft"), "status", "--stats", "--json", "--state-dir", str(state)
        )
        stats: dict[str, Any] = json.loads(answer.stdout)["stats"]
        if all(stats.get(key) == value for key, value in wanted.items()):
            return stats
        assert time.monotonic() < deadline, f"status --stats never showed {wanted}: {stats}"
        time.sleep(0.3)


def on_small_disk(tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the Python `script` with a small tmpfs (256 KiB, a `state` dir in it) as its argv[1],
    mounted in a mount namespace of its own (`unshare -m`), so that a test can fill a disk without
    filling the host's; the repository's modules (tests' too) importable. The process's result,
    and the mount point, which outside that namespace stays an empty directory."""
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "full.py").write_text(script)
    # Private propagation: the tmpfs exists in the new mount namespace only, and goes with it.
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=256k,mode=0700 knocknft-test "{disk}" && '
            f'mkdir -m 0700 "{disk}/state" && '
            f'exec "{sys.executable}" "{tmp_path / "full.py"}" "{disk}"',
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, disk


def fill(disk: Path) -> int:
    """Write a file on `disk` until the disk is full (for on_small_disk's scripts); the errno
    that stopped it (ENOSPC)."""
    filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(filler, b"x" * 4096)
    except OSError as exc:
        return exc.errno or 0
    finally:
        os.close(filler)
