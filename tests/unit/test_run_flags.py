"""knockd's command line on `knocknft run`: what each flag asks for, and the daemon-side effects a
user notices (IPv6 ignored under -4, names in log lines under -l, the pidfile's life), without a
kernel. The real daemon with these flags runs in tests/integration/test_run_flags.py.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from knocknft import __version__
from knocknft.admin.cli import app
from knocknft.config import DEFAULT_CONFIG_PATH, HostInterfaces, IPAddress, parse_config
from knocknft.daemon import run as runner
from knocknft.daemon.detach import (
    AlreadyRunning,
    check_not_running,
    read_pid_file,
    remove_pid_file,
    write_pid_file,
)
from knocknft.daemon.executor import Daemon
from knocknft.daemon.names import NameCache
from knocknft.daemon.run import RunOptions, config_path_for_run, load_for_run
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.packet import KnockPacket
from tests.unit.fakes import RecordingRunner, loaded_nft

cli = CliRunner()
SERVER4, SERVER6 = ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("2001:db8::1")
CLIENT4, CLIENT6 = ipaddress.ip_address("198.18.0.2"), ipaddress.ip_address("2001:db8::2")


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], RunOptions()),
        # knockd's init scripts and units pass these
        (["-i", "eth1"], RunOptions(interfaces=("eth1",))),
        (["--interface", "eth1", "-i", "wg0"], RunOptions(interfaces=("eth1", "wg0"))),
        (["-d"], RunOptions(daemon=True)),
        (["-d", "-p", "/run/k.pid"], RunOptions(daemon=True, pid_file=Path("/run/k.pid"))),
        (
            ["--daemon", "--pidfile", "/run/k.pid"],
            RunOptions(daemon=True, pid_file=Path("/run/k.pid")),
        ),
        (["-g", "/var/log/k.log"], RunOptions(log_file=Path("/var/log/k.log"))),
        (["--logfile", "/var/log/k.log"], RunOptions(log_file=Path("/var/log/k.log"))),
        (["-l"], RunOptions(lookup=True)),
        (["--lookup"], RunOptions(lookup=True)),
        (["-4"], RunOptions(only_ipv4=True)),
        (["--only-ip-v4"], RunOptions(only_ipv4=True)),
        (["-v", "-D"], RunOptions(verbose=True, debug=True)),
        # getopt-style bundles, as in `knockd -dv`
        (["-dvl4"], RunOptions(daemon=True, verbose=True, lookup=True, only_ipv4=True)),
    ],
)
def test_knockd_flags_reach_the_daemon(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: RunOptions
) -> None:
    seen: dict[str, Any] = {}

    def fake_run_daemon(path: Path, options: RunOptions) -> int:
        seen["path"], seen["options"] = path, options
        return 0

    monkeypatch.setattr(runner, "run_daemon", fake_run_daemon)
    result = cli.invoke(app, ["run", *argv])
    assert result.exit_code == 0, result.output
    assert seen == {"path": DEFAULT_CONFIG_PATH, "options": expected}


@pytest.mark.parametrize("argv", [["run", "-V"], ["run", "--version"], ["-V"]])
def test_version_flag_works_on_run_too(argv: list[str]) -> None:
    result = cli.invoke(app, argv)
    assert result.exit_code == 0
    assert result.stdout == f"knocknft {__version__}\n"


def test_run_help_names_every_knockd_flag() -> None:
    result = cli.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for flag in ("-i", "-d", "-c", "-D", "-l", "-v", "-V", "-h", "-p", "-g", "-4"):
        assert f" {flag}, --" in result.stdout, flag
    assert "knockd equivalence" in result.stdout


# -- loading: overrides and knockd.conf's options ---------------------------------------------

KNOCKD_CONF = """\
[options]
    LogFile = /var/log/knockd.log
    PidFile = /run/knockd-test.pid
    Interface = eth0
[openSSH]
    sequence = 7000,8000:udp,9000
    command = /bin/true %IP%
"""
YAML = "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 5s\n"


KNOCKD_LOG, KNOCKD_PID = Path("/var/log/knockd.log"), Path("/run/knockd-test.pid")
Expected = tuple[Path | None, tuple[str, ...], Path | None]  # log file, interfaces, pidfile


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        (KNOCKD_CONF, RunOptions(), (KNOCKD_LOG, ("eth0",), KNOCKD_PID)),
        (
            KNOCKD_CONF,
            RunOptions(log_file=Path("/tmp/x.log"), interfaces=("eth1",)),
            (Path("/tmp/x.log"), ("eth1",), KNOCKD_PID),
        ),
        (YAML, RunOptions(), (None, (), None)),
        (YAML, RunOptions(log_file=Path("/tmp/y.log")), (Path("/tmp/y.log"), (), None)),
    ],
)
def test_command_line_overrides_the_config(
    tmp_path: Path, text: str, options: RunOptions, expected: Expected
) -> None:
    path = tmp_path / "conf"
    path.write_text(text)
    loaded = load_for_run(path, options, HostInterfaces(frozenset({"lo", "eth0", "eth1"})))
    assert (
        loaded.config.options.log_file,
        loaded.config.options.interfaces,
        loaded.pid_file,
    ) == expected


def test_without_c_knockds_config_is_read_when_ours_is_missing(tmp_path: Path) -> None:
    knockd = tmp_path / "knockd.conf"
    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip("this machine has a knocknft config of its own")
    assert config_path_for_run(DEFAULT_CONFIG_PATH, knockd) == DEFAULT_CONFIG_PATH
    knockd.write_text(KNOCKD_CONF)
    assert config_path_for_run(DEFAULT_CONFIG_PATH, knockd) == knockd
    explicit = tmp_path / "mine.yaml"
    assert config_path_for_run(explicit, knockd) == explicit, "-c always wins"


def test_relative_paths_are_made_absolute_before_a_daemon_changes_to_slash() -> None:
    options = RunOptions(
        log_file=Path("k.log"), pid_file=Path("k.pid"), state_dir=Path("state")
    ).absolute()
    assert options.log_file == Path.cwd() / "k.log"
    assert options.pid_file == Path.cwd() / "k.pid"
    assert options.state_dir == Path.cwd() / "state"


# -- the daemon: -4 and -l --------------------------------------------------------------------


class NoCommands(RecordingRunner):
    def submit(self, door: str, command: str, client: str = "") -> None:
        raise AssertionError("no command expected")


def daemon(**kwargs: Any) -> Daemon:
    config = parse_config(YAML).config
    return Daemon(config, loaded_nft(config), NoCommands(), PendingStops(None), **kwargs)


def sequence(source: IPAddress, destination: IPAddress, t: float = 1.0) -> list[KnockPacket]:
    return [
        KnockPacket(source, destination, "tcp", 7000, 0x02, 2, t, sport=40000, seq=1),
        KnockPacket(source, destination, "udp", 9000, 0, 2, t + 0.1, sport=40001, seq=0),
        KnockPacket(source, destination, "tcp", 8000, 0x02, 2, t + 0.2, sport=40002, seq=1),
    ]


@pytest.mark.parametrize(
    ("only_ipv4", "client", "opens", "ignored"),
    [
        (False, (CLIENT6, SERVER6), True, 0),
        (True, (CLIENT6, SERVER6), False, 3),
        (True, (CLIENT4, SERVER4), True, 0),
        (False, (CLIENT4, SERVER4), True, 0),
    ],
)
def test_only_ipv4_ignores_ipv6_knocks(
    caplog: pytest.LogCaptureFixture,
    only_ipv4: bool,
    client: tuple[IPAddress, IPAddress],
    opens: bool,
    ignored: int,
) -> None:
    source, destination = client
    d = daemon(only_ipv4=only_ipv4, clock=lambda: 2.0)
    with caplog.at_level(logging.INFO, logger="knocknft"):
        d.handle_packets(sequence(source, destination))
    assert (f"{source}: ssh: OPEN SESAME" in caplog.text) is opens
    assert bool(d.nft.scripts) is opens  # type: ignore[attr-defined]
    assert d.stats()["ipv6_ignored"] == ignored


def test_lookup_shows_cached_names_in_knockds_shape(caplog: pytest.LogCaptureFixture) -> None:
    names = NameCache(lambda a: {"198.18.0.2": "laptop.example"}[a], start=False)
    d = daemon(names=names, clock=lambda: 2.0)
    with caplog.at_level(logging.INFO, logger="knocknft"):
        d.handle_packets(sequence(CLIENT4, SERVER4))
        assert "198.18.0.2: ssh: Stage 1" in caplog.text, "not known yet: the bare address"
        names.resolve_one()  # the worker's step
        d.handle_packets(sequence(CLIENT4, SERVER4, t=5.0))
    assert "198.18.0.2 (laptop.example): ssh: Stage 1" in caplog.text
    assert "198.18.0.2 (laptop.example): ssh: OPEN SESAME" in caplog.text


# -- the name cache ---------------------------------------------------------------------------


def test_a_slow_resolver_never_blocks_the_caller() -> None:
    release = threading.Event()

    def stuck(address: str) -> str:
        release.wait(10)
        return "late.example"

    names = NameCache(stuck)
    try:
        started = time.monotonic()
        labels = [names.label(CLIENT4) for _ in range(1000)]
        assert time.monotonic() - started < 0.5
        assert set(labels) == {"198.18.0.2"}
    finally:
        release.set()
        names.close()


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("host.example", "198.18.0.2 (host.example)"),
        (OSError("no PTR"), "198.18.0.2"),
        ("evil\n198.18.0.9: ssh: OPEN SESAME", "198.18.0.2"),  # a PTR cannot forge a log line
        ("a b", "198.18.0.2"),
        ("", "198.18.0.2"),
    ],
)
def test_names_are_shown_only_when_resolved_and_sane(answer: str | Exception, label: str) -> None:
    def resolve(address: str) -> str:
        if isinstance(answer, Exception):
            raise answer
        return answer

    names = NameCache(resolve, start=False)
    assert names.label(CLIENT4) == "198.18.0.2"
    names.resolve_one()
    assert names.label(CLIENT4) == label


def test_the_cache_and_the_queue_are_bounded() -> None:
    calls: list[str] = []

    def resolve(address: str) -> str:
        calls.append(address)
        return "h.example"

    names = NameCache(resolve, size=3, queue_size=2, start=False)
    sources = [ipaddress.ip_address(f"198.18.1.{i}") for i in range(5)]
    for source in sources:
        names.label(source)
    assert names.dropped == 3, "a full queue drops the request instead of waiting"
    while names._queue.qsize():
        names.resolve_one()
    for source in sources:
        names.label(source)
        while names._queue.qsize():
            names.resolve_one()
    assert len(calls) == 5, "each address is resolved once while cached"
    assert len(names) == 3
    assert names.label(sources[0]) == "198.18.1.0", "the least recently used name was evicted"
    assert names.label(sources[4]) == "198.18.1.4 (h.example)"


def test_a_name_is_looked_up_again_after_its_ttl() -> None:
    now = [0.0]
    calls: list[str] = []

    def resolve(address: str) -> str:
        calls.append(address)
        return "h.example"

    names = NameCache(resolve, clock=lambda: now[0], start=False)
    names.label(CLIENT4)
    names.resolve_one()
    assert names.label(CLIENT4) == "198.18.0.2 (h.example)"
    now[0] += 7200
    assert names.label(CLIENT4) == "198.18.0.2", "stale: shown bare, looked up again"
    names.resolve_one()
    assert len(calls) == 2


# -- the pidfile ------------------------------------------------------------------------------


def test_pidfile_is_written_and_removed_only_when_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "knocknft.pid"
    write_pid_file(pid_file)
    assert read_pid_file(pid_file) is not None
    assert pid_file.read_text() == f"{read_pid_file(pid_file)}\n"
    assert pid_file.stat().st_mode & 0o777 == 0o644, "a pid is no secret"
    assert [p.name for p in pid_file.parent.iterdir()] == ["knocknft.pid"], "no temp file left"
    pid_file.write_text("1\n")
    remove_pid_file(pid_file)
    assert pid_file.exists(), "another instance's pidfile is left alone"
    write_pid_file(pid_file)
    remove_pid_file(pid_file)
    assert not pid_file.exists()


def test_a_live_knocknft_in_the_pidfile_refuses_a_second_start(tmp_path: Path) -> None:
    pid_file = tmp_path / "knocknft.pid"
    check_not_running(pid_file)  # no file: fine
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "knocknft"])
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # Until a child has exec'd, /proc shows the parent's command line: wait for both.
    for proc in (other, unrelated):
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"time.sleep" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
    try:
        pid_file.write_text(f"{unrelated.pid}\n")
        check_not_running(pid_file)  # a reused pid of another program: stale
        pid_file.write_text(f"{other.pid}\n")
        with pytest.raises(AlreadyRunning, match=f"already running as pid {other.pid}"):
            check_not_running(pid_file)
    finally:
        for proc in (other, unrelated):
            proc.kill()
            proc.wait()
    check_not_running(pid_file)  # dead now: stale
