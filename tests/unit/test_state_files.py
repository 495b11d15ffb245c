"""The state dir and its files: a dir someone else could write is refused, no write follows a
planted link, secrets are private, and no state file (damaged, or fuzzed) gives a traceback or
a spin: each ends logged and ignored, or in a clear error."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from knocknft.admin import cli, cli_common
from knocknft.admin.confirmfiles import MARKER, OUTCOME, ROLLBACK, StateDir, boottime
from knocknft.config import Options
from knocknft.daemon import logs
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.stats import STATS_FILE, read_status
from knocknft.daemon.stops import STATE_FILE, PendingStops
from knocknft.files import UnsafeStateDir, check_state_dir, write_atomic
from knocknft.nft.fake import FakeNft
from knocknft.nft.lastgood import LAST_GOOD_FILE

runner = CliRunner()
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NOW = 1_700_000_000.0


@pytest.fixture
def nft(monkeypatch: pytest.MonkeyPatch) -> FakeNft:
    recording = FakeNft()
    monkeypatch.setattr(cli_common, "nft_factory", lambda: recording)
    return recording


# -- the state dir ------------------------------------------------------------------------------


def test_a_state_dir_someone_else_owns_or_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    check_state_dir(state)
    os.chown(state, 65534, 65534)
    with pytest.raises(UnsafeStateDir, match="owned by uid 65534"):
        check_state_dir(state)
    os.chown(state, 0, 0)
    state.chmod(0o770)
    with pytest.raises(UnsafeStateDir, match="writable by group or others"):
        check_state_dir(state)
    state.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(state)
    with pytest.raises(UnsafeStateDir, match="not a directory"):
        check_state_dir(link)


def test_a_planted_pending_record_in_an_unsafe_dir_never_loads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    (state / STATE_FILE).write_text('["S", 1.0, "198.18.0.2", "ssh"]\n')
    with pytest.raises(UnsafeStateDir):
        PendingStops(state / STATE_FILE).load(NOW)


def test_a_parent_others_can_write_is_refused_but_a_sticky_tmp_is_not(tmp_path: Path) -> None:
    open_parent = tmp_path / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)
    with pytest.raises(UnsafeStateDir, match="parent"):
        check_state_dir(open_parent / "state")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    check_state_dir(sticky / "state")
    assert (sticky / "state").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    "command",
    [["apply", "-c", "config.example.yaml"], ["confirm"], ["guard"], ["status", "--stats"]],
)
def test_every_command_refuses_an_unsafe_state_dir_clearly(
    tmp_path: Path, nft: FakeNft, command: list[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    (state / LAST_GOOD_FILE).write_text("")
    result = runner.invoke(cli.app, [*command, "--state-dir", str(state)])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    if command[0] != "status":  # it only reads counters, and says the daemon is not there
        assert "writable by group or others" in result.stderr
    assert nft.scripts == []


def test_writes_never_follow_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:x:0:0\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "stats.json").symlink_to(victim)
    write_atomic(state / "stats.json", "{}", new_mode=0o644)
    assert victim.read_text() == "root:x:0:0\n"
    assert not (state / "stats.json").is_symlink() and (state / "stats.json").read_text() == "{}"
    # A planted state dir link is no way round it either.
    (tmp_path / "elsewhere").mkdir()
    (state / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        write_atomic(state / "sub" / "x", "data")
    assert list((tmp_path / "elsewhere").iterdir()) == []


# -- secrets on disk ---------------------------------------------------------------------------


def test_the_log_file_and_the_event_log_are_private_also_after_logrotate(tmp_path: Path) -> None:
    log_file, events = tmp_path / "knocknft.log", tmp_path / "events.jsonl"
    logger = logs.setup_logging(Options(log_file=log_file), debug=True)
    audit = EventLog(events)
    try:
        logger.debug("packet: 198.18.0.2 -> 198.18.0.1 7000/tcp")
        audit.write("open", source="198.18.0.2", door="ssh")
        assert log_file.stat().st_mode & 0o777 == 0o600
        assert events.stat().st_mode & 0o777 == 0o600
        log_file.rename(tmp_path / "knocknft.log.1")  # logrotate
        logger.info("after the rotation")
        assert log_file.stat().st_mode & 0o777 == 0o600
    finally:
        audit.close()
        logs.setup_logging(Options())


def test_an_existing_world_readable_log_is_made_private(tmp_path: Path) -> None:
    log_file = tmp_path / "knocknft.log"
    log_file.write_text("")
    log_file.chmod(0o644)
    logs.setup_logging(Options(log_file=log_file))
    logs.setup_logging(Options())
    assert log_file.stat().st_mode & 0o777 == 0o640


def test_stats_json_holds_no_port_no_sequence(tmp_path: Path) -> None:
    """stats.json stays 0644 (status --stats as any user): it must reveal no knock."""
    from knocknft.daemon.stats import DaemonStats

    keys = set(DaemonStats.__annotations__)
    assert not any(word in key for key in keys for word in ("port", "sequence", "door", "source"))


# -- syslog without /dev/log -------------------------------------------------------------------


def test_syslog_without_a_socket_warns_once_then_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", str(tmp_path / "no-dev-log"))
    logger = logs.setup_logging(Options(syslog=True))
    try:
        for n in range(1000):
            logger.info("line %d", n)
    finally:
        logs.setup_logging(Options())
    err = capsys.readouterr().err
    assert err.count("syslog is unavailable") == 1 and "Traceback" not in err
    assert "line 999" in err


def test_syslog_that_goes_away_warns_once_not_per_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    address = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(address))
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", str(address))
    logger = logs.setup_logging(Options(syslog=True))
    try:
        logger.info("first")
        assert b"first" in server.recv(4096)
        server.close()
        address.unlink()
        for n in range(100):
            logger.info("line %d", n)
    finally:
        logs.setup_logging(Options())
    err = capsys.readouterr().err
    assert err.count("syslog stopped taking lines") == 1 and "Traceback" not in err


# -- damaged files, by example -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b'{"pid": 1, "updated": NaN}', b'{"knocks": Infinity}', b"[" * 50_000, b"\xff"]
)
def test_status_stats_on_a_damaged_stats_file_is_a_clear_exit_1(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / STATS_FILE).write_bytes(content)
    result = runner.invoke(cli.app, ["status", "--stats", "--state-dir", str(tmp_path)])
    assert (result.exit_code == 1 and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    assert "is damaged" in result.output and "Traceback" not in result.output


def test_guard_on_a_binary_last_good_sets_it_aside_and_exits_1(
    tmp_path: Path, nft: FakeNft
) -> None:
    (tmp_path / LAST_GOOD_FILE).write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    result = runner.invoke(cli.app, ["guard", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "not UTF-8" in result.stderr and "set aside" in result.stderr
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["last"]
    assert nft.scripts == []


def test_a_damaged_confirm_marker_is_set_aside_and_confirm_says_nothing_pending(
    tmp_path: Path,
) -> None:
    (tmp_path / MARKER).write_text(
        json.dumps(
            {
                "table": "knocknft",
                "seconds": 60,
                "deadline": "NaN",
                "due_at": 1.0,
                "saved_at": 1.0,
                "had_table": True,
            }
        ).replace('"NaN"', "NaN")
    )
    result = runner.invoke(cli.app, ["confirm", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "nothing to confirm" in result.stderr
    assert not (tmp_path / MARKER).exists()
    assert any(p.name.startswith(f"{MARKER}.damaged-") for p in tmp_path.iterdir())


def test_a_marker_whose_deadline_is_far_ahead_is_damage(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    marker = {
        "table": "knocknft",
        "seconds": 60,
        "deadline": boottime() + 10 * 86400,
        "due_at": time.time(),
        "saved_at": time.time(),
        "had_table": True,
        "watcher": 1,
    }
    (tmp_path / MARKER).write_text(json.dumps(marker))
    assert state.read_pending() is None and state.damaged
    marker["deadline"] = boottime() + 30
    (tmp_path / MARKER).write_text(json.dumps(marker))
    assert state.read_pending() is not None


# -- fuzz: arbitrary and near-valid content of every state file --------------------------------

VALID_STOP = b'["S", 1700000000.0, "198.18.0.2", "ssh"]\n'
JSON_ISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)


def near_json(data: object) -> bytes:
    return json.dumps(data).encode()


CONTENTS = (
    st.binary(max_size=300)
    | JSON_ISH.map(near_json)
    | st.builds(
        lambda b, i: VALID_STOP[:i] + b + VALID_STOP[i:],
        st.binary(max_size=8),
        st.integers(0, len(VALID_STOP)),
    )
)


def fresh(tmp_path: Path, name: str) -> Path:
    state = tmp_path / f"fuzz-{time.monotonic_ns()}"
    state.mkdir(mode=0o700)
    return state / name


@FUZZ
@given(content=CONTENTS)
def test_fuzz_pending_stops_load_and_the_daemon_start(tmp_path: Path, content: bytes) -> None:
    from knocknft.config import parse_config
    from knocknft.daemon.executor import Daemon
    from tests.unit.fakes import RecordingRunner, loaded_nft

    path = fresh(tmp_path, STATE_FILE)
    path.write_bytes(content)
    config = parse_config(
        f"options:\n  state_dir: {path.parent}\n"
        "doors:\n  ssh:\n    sequence: [7000, 8000, 9000]\n    open: [22]\n    open_for: 30s\n"
        "    start_command: 'open %IP%'\n    stop_command: 'shut %IP%'\n"
    ).config
    commands = RecordingRunner()
    daemon = Daemon(config, loaded_nft(config), commands, PendingStops(path), clock=lambda: NOW)
    daemon.start()
    wakeup = daemon.next_wakeup()
    assert wakeup is None or NOW - 1 <= wakeup <= NOW + 366 * 86400 + 1 or wakeup < NOW
    assert all(c.startswith("shut ") for c in commands.commands), "only the config's command"
    for address in {c.split()[1] for c in commands.commands}:
        ipaddress.ip_address(address)


@FUZZ
@given(content=CONTENTS)
def test_fuzz_stats_json_and_status(tmp_path: Path, content: bytes) -> None:
    path = fresh(tmp_path, STATS_FILE)
    path.write_bytes(content)
    status = read_status(path.parent, now=NOW, alive=lambda pid: True)
    from knocknft.daemon.stats import format_status

    format_status(status)
    json.dumps(status.to_json(), allow_nan=False)


@FUZZ
@given(content=CONTENTS)
def test_fuzz_last_good_and_guard(tmp_path: Path, nft: FakeNft, content: bytes) -> None:
    path = fresh(tmp_path, LAST_GOOD_FILE)
    path.write_bytes(content)
    result = runner.invoke(cli.app, ["guard", "--state-dir", str(path.parent)])
    assert (result.exit_code in (0, 1) and result.exception is None) or isinstance(
        result.exception, SystemExit
    ), result.output


@FUZZ
@given(
    marker=CONTENTS
    | JSON_ISH.map(lambda v: near_json({"table": "knocknft", "seconds": v, "deadline": v})),
    rollback=st.binary(max_size=100),
    outcome=CONTENTS,
)
def test_fuzz_confirm_files(tmp_path: Path, marker: bytes, rollback: bytes, outcome: bytes) -> None:
    state = fresh(tmp_path, MARKER).parent
    (state / MARKER).write_bytes(marker)
    (state / ROLLBACK).write_bytes(rollback)
    (state / OUTCOME).write_bytes(outcome)
    result = runner.invoke(cli.app, ["confirm", "--state-dir", str(state)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1)
    StateDir(state).read_outcome()
