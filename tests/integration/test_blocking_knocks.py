"""Knocking the way the articles do: with programs whose connect blocks (ssh, telnet, a browser).

The table drops knock packets, so each such connect sends its SYN again (at 1 s, 3 s, ...) until
it gives up; those retransmissions must neither advance nor break the sequence, while a second
connection to the same port still breaks it, as in knockd. Then the course's one-machine lab:
`run -i lo` and knocks on localhost. Every knocker here is a real blocking connect in a lab
namespace: the OpenSSH client, or a Python socket with a timeout standing in for telnet.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from knocklab.lab import Host, Lab, Listener
from tests.integration.support import RunningDaemon, running, write_config

SERVER4, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
CLIENT4, CLIENT6 = Lab.CLIENT_V4, Lab.CLIENT_V6
# The university's two-port recipe (ssh -p 1228; ssh -p 1227) and the course's three ports.
TWO = (1228, 1227)
THREE = (7000, 8000, 9000)
TWO_OPENS, THREE_OPENS = 22, 2222
# Long enough for blocking connects one after the other (ssh: 4 s each).
SEQ_TIMEOUT = 20

NATIVE = f"""\
options:
  state_dir: {{state}}
  interfaces: [eth0]
doors:
  two:
    sequence: [{TWO[0]}/tcp, {TWO[1]}/tcp]
    seq_timeout: {SEQ_TIMEOUT}s
    open: [{TWO_OPENS}/tcp]
    open_for: 60s
  three:
    sequence: [{THREE[0]}/tcp, {THREE[1]}/tcp, {THREE[2]}/tcp]
    seq_timeout: {SEQ_TIMEOUT}s
    open: [{THREE_OPENS}/tcp]
    open_for: 60s
"""

KNOCKD_CONF = f"""\
[options]
\tInterface = eth0

[two]
\tsequence = {TWO[0]},{TWO[1]}
\tseq_timeout = {SEQ_TIMEOUT}
\ttcpflags = syn
\tcommand = echo two %IP% >> {{out}}

[three]
\tsequence = {THREE[0]},{THREE[1]},{THREE[2]}
\tseq_timeout = {SEQ_TIMEOUT}
\ttcpflags = syn
\tcommand = echo three %IP% >> {{out}}
"""

Knocker = Callable[[Host, str, int], None]


def ssh(host: Host, address: str, port: int) -> None:
    """`ssh -p PORT server` as the articles knock: a blocking connect the table drops, given up
    after 4 s (SYNs at 0, 1 and 3 s). No config, key or known_hosts file of this machine is read
    or written."""
    result = host.run(
        *("ssh", "-F", "/dev/null", "-p", str(port)),
        *("-o", "ConnectTimeout=4", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"),
        *("-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectionAttempts=1"),
        f"knocker@{address}",
        check=False,
        timeout=15,
    )
    assert "timed out" in result.stderr, result.stderr


def blocking_connect(host: Host, address: str, port: int, seconds: float = 1.5) -> None:
    """telnet's connect: one socket, blocking until `seconds` (SYNs at 0 and 1 s)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = host.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(seconds)
        with pytest.raises(TimeoutError):
            sock.connect((address, port))
    finally:
        sock.close()


KNOCKERS = [pytest.param(ssh, id="ssh"), pytest.param(blocking_connect, id="socket")]


def knock_all(knocker: Knocker, host: Host, address: str, ports: tuple[int, ...]) -> None:
    for port in ports:
        knocker(host, address, port)


@contextmanager
def listening(lab: Lab, *ports: int) -> Iterator[None]:
    listeners = [Listener(lab.server, port) for port in ports]
    try:
        yield
    finally:
        for listener in listeners:
            listener.close()


def both_sequences(daemon: RunningDaemon, knocker: Knocker) -> None:
    """The two-port recipe over IPv4 and the three-port one over IPv6, at the same time."""
    client = daemon.lab.client
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(knock_all, knocker, client, SERVER4, TWO),
            pool.submit(knock_all, knocker, client, SERVER6, THREE),
        ]
        for each in runs:
            each.result()


def final_stats(state: Path) -> dict[str, int]:
    stats: dict[str, int] = json.loads((state / "stats.json").read_text())
    return stats


@pytest.fixture(autouse=True)
def _needs_ssh() -> None:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is not installed (make deps installs openssh-client)")


@pytest.mark.parametrize("knocker", KNOCKERS)
def test_blocking_connects_open_native_doors(lab: Lab, tmp_path: Path, knocker: Knocker) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path, NATIVE.format(state=state))
    with (
        listening(lab, TWO_OPENS, THREE_OPENS),
        running(lab, config, tmp_path / "daemon.log") as daemon,
    ):
        assert not lab.client.tcp_reachable(SERVER4, TWO_OPENS)
        both_sequences(daemon, knocker)
        daemon.wait_for(f"{CLIENT4}: two: OPEN SESAME")
        daemon.wait_for(f"{CLIENT6}: three: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER4, TWO_OPENS)
        assert lab.client.tcp_reachable(SERVER6, THREE_OPENS)
        assert "sequence broken" not in daemon.log()
    stats = final_stats(state)
    # Every connect but the last of each sequence retransmitted while its attempt was open.
    assert stats["retransmissions_ignored"] >= len(TWO) - 1 + len(THREE) - 1
    assert stats["invalidations"] == 0


@pytest.mark.parametrize("knocker", KNOCKERS)
def test_blocking_connects_open_knockd_conf_doors(
    lab: Lab, tmp_path: Path, knocker: Knocker
) -> None:
    out = tmp_path / "commands.out"
    conf = tmp_path / "knockd.conf"
    conf.write_text(KNOCKD_CONF.format(out=out))
    extra = ("--state-dir", str(tmp_path / "state"))
    with running(lab, conf, tmp_path / "daemon.log", extra) as daemon:
        both_sequences(daemon, knocker)
        daemon.wait_for(f"{CLIENT4}: two: OPEN SESAME")
        daemon.wait_for(f"{CLIENT6}: three: OPEN SESAME")
        assert "sequence broken" not in daemon.log()
    assert sorted(out.read_text().splitlines()) == [f"three {CLIENT6}", f"two {CLIENT4}"]


def test_a_second_connection_to_the_same_port_still_breaks_the_attempt(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """knockd's meaning kept: `ssh -p 1228` twice is a repeated knock, not a retransmission."""
    config = write_config(tmp_path, NATIVE.format(state=tmp_path / "state"))
    with running(lab, config, tmp_path / "daemon.log") as daemon:
        knock_all(blocking_connect, lab.client, SERVER4, (TWO[0], TWO[0], TWO[1]))
        daemon.wait_for(f"{CLIENT4}: two: sequence broken at stage 1")
        assert "OPEN SESAME" not in daemon.log()
        assert not lab.client.tcp_reachable(SERVER4, TWO_OPENS)


# -- the one-machine lab: `knocknft run -i lo`, `telnet localhost 7000` -------------------------

LOOPBACK_LAB = f"""\
options:
  state_dir: {{state}}
doors:
  ssh:
    sequence: [{THREE[0]}/tcp, {THREE[1]}/tcp, {THREE[2]}/tcp]
    seq_timeout: {SEQ_TIMEOUT}s
    open: [22/tcp]
    open_for: 6s
"""


@pytest.mark.parametrize("localhost", ["127.0.0.1", "::1"])
def test_the_loopback_lab_knocks_on_localhost(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, localhost: str
) -> None:
    server = lab.server
    config = write_config(tmp_path, LOOPBACK_LAB.format(state=tmp_path / "state"))
    with running(lab, config, tmp_path / "daemon.log", ("-i", "lo")) as daemon:
        assert not server.tcp_reachable(localhost, 22), "gated on loopback too"
        knock_all(blocking_connect, server, localhost, THREE)
        daemon.wait_for(f"{localhost}: ssh: OPEN SESAME")
        assert server.tcp_reachable(localhost, 22)
        assert not lab.client.tcp_reachable(SERVER4, 22), "only the knocker got in"
        opened = time.monotonic()
        while server.tcp_reachable(localhost, 22, timeout=0.3):
            assert time.monotonic() - opened < 10, "shut again after open_for"
            time.sleep(0.2)
        # The last knock's connect gave up 1.5 s after the grant: about 4.5 s were left.
        assert time.monotonic() - opened > 2.5, "open for open_for, not less"
        assert "sequence broken" not in daemon.log()


def test_by_default_loopback_is_left_alone(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """Without lo among the interfaces, local services stay reachable on loopback and a knock
    there is not heard."""
    server = lab.server
    config = write_config(tmp_path, LOOPBACK_LAB.format(state=tmp_path / "state"))
    with running(lab, config, tmp_path / "daemon.log", ("-i", "eth0")) as daemon:
        assert server.tcp_reachable("127.0.0.1", 22)
        server.knock("127.0.0.1", *(str(p) for p in THREE))
        assert not lab.client.tcp_reachable(SERVER4, 22)
        assert "Stage 1" not in daemon.log()


# The course's lab as the course writes it: a knockd.conf with UseSyslog, run on loopback.
COURSE_KNOCKD_CONF = f"""\
[options]
\tUseSyslog

[openSSH]
\tsequence = {THREE[0]},{THREE[1]},{THREE[2]}
\tseq_timeout = {SEQ_TIMEOUT}
\ttcpflags = syn
\tcommand = echo open %IP% >> {{out}}
"""

# Where the host has a syslog socket, the daemon runs in a mount namespace of its own that has
# none (/dev/null bound over /dev/log), so the test sees the host without /dev/log either way.
NO_DEV_LOG = (
    (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind /dev/null /dev/log && exec "$@"',
        "sh",
    )
    if Path("/dev/log").exists()
    else ()
)


def test_the_course_lab_with_syslog_on_a_host_without_dev_log(lab: Lab, tmp_path: Path) -> None:
    """knockd -i lo with UseSyslog, knocked with telnet on localhost: one warning that syslog is
    unavailable, the log on stderr, no traceback, and the door opens."""
    out = tmp_path / "commands.out"
    config = tmp_path / "knockd.conf"
    config.write_text(COURSE_KNOCKD_CONF.format(out=out))
    with running(lab, config, tmp_path / "daemon.log", ("-i", "lo"), prefix=NO_DEV_LOG) as daemon:
        knock_all(blocking_connect, lab.server, "127.0.0.1", THREE)
        daemon.wait_for("127.0.0.1: openSSH: OPEN SESAME")
        log = daemon.log()
    assert log.count("syslog is unavailable") == 1
    assert "Traceback" not in log
    assert out.read_text().split() == ["open", "127.0.0.1"]
