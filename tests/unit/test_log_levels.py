"""-v and -D differ, and every line reaches the journal and syslog with its priority."""

from __future__ import annotations

import io
import logging
import logging.handlers
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocknft.config import Options
from knocknft.daemon import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    logs.setup_logging(Options())


def _journal_env(path: Path) -> dict[str, str]:
    stat = path.stat()
    return {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}


def test_the_journal_stream_is_recognised_by_its_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        assert logs.is_journal(stream, _journal_env(path))
        assert not logs.is_journal(stream, {})
        assert not logs.is_journal(stream, {"JOURNAL_STREAM": "1:2"}), "another stream"
        assert not logs.is_journal(stream, {"JOURNAL_STREAM": "garbage"})
    assert not logs.is_journal(io.StringIO(), _journal_env(path)), "no descriptor"


def test_lines_to_the_journal_carry_their_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        monkeypatch.setattr("sys.stderr", stream)
        for key, value in _journal_env(path).items():
            monkeypatch.setenv(key, value)
        logger = logs.setup_logging(Options(), debug=True)
        logger.error("reload failed, still running the previous config:\nline 2 of it")
        logger.warning("a warning")
        logger.info("198.18.0.2: ssh: OPEN SESAME")
        logger.log(logs.VERBOSE, "198.18.0.2: ssh: sequence broken at stage 1")
        logger.debug("packet: 198.18.0.2 -> 198.18.0.1 7000/tcp flags 0x02")
    assert path.read_text().splitlines() == [
        "<3>error: reload failed, still running the previous config:",
        "<3>line 2 of it",
        "<4>warning: a warning",
        "<6>198.18.0.2: ssh: OPEN SESAME",
        "<6>198.18.0.2: ssh: sequence broken at stage 1",
        "<7>packet: 198.18.0.2 -> 198.18.0.1 7000/tcp flags 0x02",
    ]


def test_stderr_that_is_not_the_journal_has_no_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        monkeypatch.setattr("sys.stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        logs.setup_logging(Options()).error("boom")
    assert path.read_text() == "error: boom\n"


@pytest.mark.parametrize(
    ("verbose", "debug", "shown"),
    [
        (False, False, {logging.INFO}),
        (True, False, {logging.INFO, logs.VERBOSE}),
        (False, True, {logging.INFO, logs.VERBOSE, logging.DEBUG}),
    ],
)
def test_v_adds_attempts_and_d_adds_packets(
    verbose: bool, debug: bool, shown: set[int], restore_logging: None
) -> None:
    logger = logs.setup_logging(Options(), verbose=verbose, debug=debug)
    levels = {logging.INFO, logs.VERBOSE, logging.DEBUG}
    assert {level for level in levels if logger.isEnabledFor(level)} == shown


def test_syslog_gets_the_priority_of_each_level(tmp_path: Path, restore_logging: None) -> None:
    address = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(address)
        syslog.settimeout(2)
        handler = logs._Syslog(address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        logger = logging.getLogger("knocknft.test-syslog")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            for level in (
                logging.ERROR,
                logging.WARNING,
                logging.INFO,
                logs.VERBOSE,
                logging.DEBUG,
            ):
                logger.log(level, "line")
            received = [syslog.recv(512).decode() for _ in range(5)]
        finally:
            logger.removeHandler(handler)
            handler.close()
    daemon = 3 << 3  # LOG_DAEMON
    assert [r.split(">")[0] + ">" for r in received] == [f"<{daemon + p}>" for p in (3, 4, 6, 6, 7)]
