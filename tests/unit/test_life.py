"""The daemon's life cycle without a kernel: reloads that fail in any way keep the old config,
one-time files are read and marked as one, safely, and fail closed; the table's lock; the
metrics endpoint's answers. (The same against the real kernel: tests/integration/test_life.py.)
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knocknft.config import Config, HostInterfaces, load_config, parse_config, read_text_file
from knocknft.daemon.executor import Daemon
from knocknft.daemon.loop import _reload
from knocknft.daemon.metrics import answer
from knocknft.daemon.onetime import mark_used
from knocknft.daemon.run import RunOptions, load_for_run
from knocknft.daemon.stops import PendingStops
from knocknft.daemon.tablelock import TableBusy, TableLock, lock_holder
from knocknft.errors import ConfigError
from knocknft.netlink.packet import KnockPacket
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import GOOD, with_state_dir

KNOCKER = ipaddress.ip_address("198.18.0.2")
SERVER = ipaddress.ip_address("198.18.0.1")


# Each knock a connection of its own, as the knock client makes them.
_SOURCE_PORTS = itertools.count(40000)


def knock(port: str, at: float) -> KnockPacket:
    number, _, protocol = port.partition("/")
    flags = 0x02 if protocol != "udp" else 0
    return KnockPacket(
        KNOCKER,
        SERVER,
        protocol or "tcp",
        int(number),
        flags,
        2,
        at,
        sport=next(_SOURCE_PORTS),
        seq=1,
    )


def knock_all(daemon: Daemon, ports: list[str]) -> None:
    for i, port in enumerate(ports):
        daemon.handle_packets([knock(port, i * 0.1)])


def granted(daemon: Daemon) -> int:
    return daemon.stats()["grants"]


# Hypothesis runs many examples in one test, so the state dir is the module's, not tmp_path's.
@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


def daemon_for(config: Config, state_dir: Path) -> Daemon:
    config = with_state_dir(config, state_dir)
    return Daemon(
        config, loaded_nft(config), RecordingRunner(), PendingStops(None), clock=lambda: 0
    )


# -- reloads ----------------------------------------------------------------------------------

GOOD_SEQUENCE = ["7000", "9000/udp", "8000"]


def _raises(exc: BaseException) -> Callable[[], Config]:
    def load() -> Config:
        raise exc

    return load


@pytest.mark.parametrize(
    "exc",
    [
        RecursionError("maximum recursion depth exceeded"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        OSError(5, "Input/output error"),
        ValueError("a bug"),
        MemoryError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_failure_of_a_reload_keeps_the_old_config(
    exc: BaseException, caplog: pytest.LogCaptureFixture, state_dir: Path
) -> None:
    daemon = daemon_for(parse_config(GOOD).config, state_dir)
    before = daemon.config
    assert _reload(daemon, _raises(exc)) is False
    assert daemon.config is before
    assert f"reload failed ({type(exc).__name__})" in caplog.text
    knock_all(daemon, GOOD_SEQUENCE)
    assert granted(daemon) == 1, "the old sequence still opens"


HOSTILE = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.integers(1, 5000).map(lambda n: "doors:\n  x: " + "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: "a:\n" + "".join("  " * i + "- \n" for i in range(n % 200))),
    st.sampled_from(
        [
            GOOD.replace("30s", "8d"),
            GOOD.replace("30s", "3650d"),
            GOOD.replace("nflog_group: 9", "nflog_group: -1"),
            GOOD.replace("7000/tcp", "99999/tcp"),
            "&a [*a]",
            "!!python/object:os.system ['id']",
            "doors: {ssh: {sequence: [1], open: [22], open_for: 1e400}}",
        ]
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_reload_fuzz_keeps_the_daemon_and_the_old_sequence(
    tmp_path_factory: pytest.TempPathFactory, state_dir: Path, text: str
) -> None:
    path = tmp_path_factory.mktemp("reload") / "knocknft.yaml"
    path.write_text(GOOD)
    # The host's interfaces as the shared config names them: the test runs on any machine.
    host = HostInterfaces(frozenset({"lo", "eth0", "wg0"}))
    daemon = daemon_for(load_for_run(path, RunOptions(), host).config, state_dir)
    path.write_bytes(text.encode("utf-8", "surrogateescape") if text else b"")
    ok = _reload(
        daemon, lambda: with_state_dir(load_for_run(path, RunOptions(), host).config, state_dir)
    )
    if not ok:
        assert daemon.config.doors[0].sequence == parse_config(GOOD).config.doors[0].sequence
        knock_all(daemon, GOOD_SEQUENCE)
        assert granted(daemon) == 1, "the old sequence still opens"


def test_a_non_utf8_config_on_reload_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "knocknft.yaml"
    path.write_bytes(GOOD.encode() + b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# -- one-time files ----------------------------------------------------------------------------

ONE_TIME_DOOR = (
    "doors:\n  ssh:\n    one_time_sequences: {path}\n    open: [22/tcp]\n    open_for: 30s\n"
)


def one_time_config(path: Path) -> Config:
    return parse_config(ONE_TIME_DOOR.format(path=path)).config


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_the_reader_and_the_marker_count_lines_alike(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "otp"
    path.write_bytes(newline.join(["#1000,1001", "2000,2001", "", "3000,3001", ""]).encode())
    path.chmod(0o600)
    door = one_time_config(path).doors[0]
    assert [s.line for s in door.one_time] == [2, 4]
    mark_used(path, 4)
    assert path.read_bytes().split(newline.encode())[3] == b"#000,3001"
    assert [s.line for s in one_time_config(path).doors[0].one_time] == [2]


def test_a_form_feed_or_a_unicode_line_separator_is_no_line_end(tmp_path: Path) -> None:
    # str.splitlines() would cut here; the marker (bytes) would not: they must agree.
    path = tmp_path / "otp"
    path.write_text("1000,1001\f\n2000,2001\u2028\n3000,3001\n", encoding="utf-8")
    path.chmod(0o600)
    assert [s.line for s in one_time_config(path).doors[0].one_time] == [1, 2, 3]


def test_a_symlink_is_never_followed_by_reader_or_marker(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    target.chmod(0o600)
    link = tmp_path / "otp"
    link.symlink_to(target)
    with pytest.raises(ConfigError) as raised:
        one_time_config(link)
    assert "symbolic link" in str(raised.value) and "root:x" not in str(raised.value)
    with pytest.raises(OSError, match="symbolic link"):
        mark_used(link, 1)
    assert target.read_text() == "root:x:0:0\n"


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "otp"
    path.write_text("1000,1001\n")
    path.chmod(mode)
    with pytest.raises(ConfigError, match="writable by group or others"):
        one_time_config(path)


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "otp"
    os.mkfifo(path, 0o600)
    with pytest.raises(OSError, match="not a regular file"):
        read_text_file(path)


def test_errors_name_lines_never_the_files_text(tmp_path: Path) -> None:
    path = tmp_path / "otp"
    path.write_bytes(b"1000,1001\nsecret-word-99999\n\xffsecret2\n")
    path.chmod(0o600)
    with pytest.raises(OSError, match="line 3 is not UTF-8") as raised:
        read_text_file(path)
    assert "secret" not in str(raised.value)
    path.write_bytes(b"1000,1001\nsecret-word 99999\n")
    with pytest.raises(ConfigError) as config_error:
        one_time_config(path)
    message = str(config_error.value)
    assert "line 2 is not a sequence of knock ports" in message
    assert "secret" not in message and "99999" not in message


def test_a_sequence_whose_mark_fails_opens_nothing_and_shuts_the_door(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, state_dir: Path
) -> None:
    path = tmp_path / "otp"
    path.write_text("1000,1001\n2000,2001\n")
    path.chmod(0o600)
    daemon = daemon_for(one_time_config(path), state_dir)
    # Replaced by a link after start, as an attacker would: the mark must not land in the target.
    target = tmp_path / "target"
    target.write_text("1000,1001\n")
    path.unlink()
    path.symlink_to(target)
    with caplog.at_level(logging.INFO):
        knock_all(daemon, ["1000", "1001"])
    assert granted(daemon) == 0, "no mark on disk: no grant"
    assert "OPEN SESAME" not in caplog.text
    assert "cannot mark line 1" in caplog.text and "that knock opens nothing" in caplog.text
    assert target.read_text() == "1000,1001\n"
    assert daemon.engine.active_steps("ssh") is None, "fail closed: the door is shut"
    knock_all(daemon, ["2000", "2001"])
    assert granted(daemon) == 0


def test_a_used_sequence_is_marked_before_its_grant_and_stays_used(
    tmp_path: Path, state_dir: Path
) -> None:
    path = tmp_path / "otp"
    path.write_text("1000,1001\r2000,2001\r")
    path.chmod(0o600)
    daemon = daemon_for(one_time_config(path), state_dir)
    knock_all(daemon, ["1000", "1001"])
    assert granted(daemon) == 1
    assert path.read_bytes() == b"#000,1001\r2000,2001\r"
    # After a restart the used line is not a way in.
    assert [s.line for s in one_time_config(path).doors[0].one_time] == [2]


# -- the table's lock --------------------------------------------------------------------------


def test_a_second_lock_on_a_table_names_the_holder() -> None:
    table = f"t{uuid.uuid4().hex[:12]}"
    with TableLock(table, "config /etc/knocknft/a.yaml, NFLOG group 7"):
        with pytest.raises(TableBusy) as busy:
            TableLock(table, "config b.yaml")
        message = str(busy.value)
        assert f"table inet {table} is already run by knocknft daemon pid {os.getpid()}" in message
        assert "(config /etc/knocknft/a.yaml, NFLOG group 7)" in message
        holder = lock_holder(table)
        assert holder is not None and holder.pid == os.getpid()
        with TableLock(f"{table}x", "another table is no rival"):
            pass
    assert lock_holder(table) is None, "closing lets go"
    TableLock(table, "free again").close()


# -- the metrics endpoint's answers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x", 200),
        (b"GET /metrics?x=1 HTTP/1.0", 200),
        (b"GET / HTTP/1.1", 404),
        (b"POST /metrics HTTP/1.1", 405),
        (b"garbage", 400),
        (b"", 400),
    ],
)
def test_metrics_answers(head: bytes, code: int) -> None:
    reply = answer(head, {"version": "1", "knocks": 3})
    assert reply.startswith(f"HTTP/1.1 {code} ".encode())
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert f"Content-Length: {len(body)}\r\n".encode() in reply
    if code == 200:
        assert b"knocknft_knocks_total 3" in body


def test_metrics_before_the_first_stats() -> None:
    assert answer(b"GET /metrics HTTP/1.1", None).startswith(b"HTTP/1.1 503 ")
