"""The bundled `knock` client for real: from the client namespace, with profiles, against a
running knocknft in the server namespace.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import BIN, RunningDaemon, config_text, running, write_config

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4

PROFILES = f"""\
profiles:
  lab:
    host: {SERVER}
    sequence: "7000,9000:udp,8000"
    delay: 20
  lab6:
    host: {Lab.SERVER_V6}
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    then_wait: 100
  wrong:
    host: {SERVER}
    sequence: [7000, 8000, 9000/udp]
"""


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[RunningDaemon]:
    listener = Listener(lab.server, 22)
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    try:
        with running(lab, cfg, tmp_path / "daemon.log") as the_daemon:
            yield the_daemon
    finally:
        listener.close()


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    """A config home holding the profiles, found the way a user's ~/.config would be."""
    home = tmp_path / "xdg"
    (home / "knocknft").mkdir(parents=True)
    (home / "knocknft" / "client.yaml").write_text(PROFILES)
    return home


def knock(lab: Lab, xdg: Path, *args: str, timeout: float = 20) -> tuple[int, str, str]:
    result = lab.client.run(
        "env", f"XDG_CONFIG_HOME={xdg}", str(BIN / "knock"), *args, check=False, timeout=timeout
    )
    return result.returncode, result.stdout, result.stderr


def test_a_profile_opens_the_door(daemon: RunningDaemon, xdg: Path) -> None:
    code, out, err = knock(daemon.lab, xdg, "-v", "lab")
    assert code == 0, err
    assert out.splitlines() == [
        f"hitting tcp {SERVER}:7000",
        f"hitting udp {SERVER}:9000",
        f"hitting tcp {SERVER}:8000",
    ]
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    assert daemon.lab.client.tcp_reachable(SERVER, 22)


def test_a_wrong_profile_does_not(daemon: RunningDaemon, xdg: Path) -> None:
    code, _, err = knock(daemon.lab, xdg, "wrong")
    assert code == 0, err
    daemon.wait_for(f"{A}: ssh: Stage 1")
    time.sleep(0.3)
    assert "OPEN SESAME" not in daemon.log()
    assert not daemon.lab.client.tcp_reachable(SERVER, 22)


# The command after --: connects once, with a short timeout and no retry, so it succeeds only if
# the door is already open when it runs; it writes what happened and exits with its own status.
PROBE = """\
import socket, sys
host, out = sys.argv[1], sys.argv[2]
try:
    socket.create_connection((host, 22), timeout=0.5).close()
    result = "connected"
except OSError as exc:
    result = f"failed: {exc}"
open(out, "w").write(result)
sys.exit(0 if result == "connected" else 3)
"""


@pytest.mark.parametrize(("profile", "host"), [("lab", SERVER), ("lab6", Lab.SERVER_V6)])
def test_knock_then_command_reaches_the_opened_port(
    daemon: RunningDaemon, xdg: Path, tmp_path: Path, profile: str, host: str
) -> None:
    out = tmp_path / "probe.out"
    probe = (sys.executable, "-c", PROBE, host, str(out))
    code, _, err = knock(daemon.lab, xdg, profile, "--", *probe)
    assert out.read_text() == "connected", err
    assert code == 0


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["sh", "-c", "exit 7"], 7),  # the command's status is knock's
        (["/nonexistent/command"], 127),
    ],
)
def test_knocks_exit_status_is_the_commands(
    daemon: RunningDaemon, xdg: Path, command: list[str], status: int
) -> None:
    code, _, err = knock(daemon.lab, xdg, "--then-wait", "0", "lab", "--", *command)
    assert code == status, err
    daemon.wait_for(f"{A}: ssh: OPEN SESAME")


def test_a_command_does_not_run_when_the_knock_fails(lab: Lab, xdg: Path, tmp_path: Path) -> None:
    """An IPv4 literal has no IPv6 address: a network error, exit 1, and no command."""
    out = tmp_path / "ran"
    code, _, err = knock(lab, xdg, "-6", SERVER, "7000", "--", "touch", str(out))
    assert code == 1
    assert err.startswith(f"knock: {SERVER}: ")
    assert not out.exists()


def test_each_tcp_knock_is_exactly_one_syn(lab: Lab, xdg: Path) -> None:
    """Dropped SYNs would be retransmitted by a blocking connect after 1 s; a knock's never is."""
    lab.server.run(
        "nft",
        "-f",
        "-",
        input=(
            "table inet probe {\n chain pre {\n  type filter hook prerouting priority -300;\n"
            "  tcp dport 7000 counter drop\n  udp dport 9000 counter drop\n }\n}\n"
        ),
    )
    code, _, err = knock(lab, xdg, "lab")
    assert code == 0, err
    time.sleep(1.5)
    rules = lab.server.run("nft", "list", "chain", "inet", "probe", "pre").stdout
    assert "tcp dport 7000 counter packets 1 " in rules, rules
    assert "udp dport 9000 counter packets 1 " in rules, rules
