"""Files an admin names (a config, an include, a key, a one-time-sequences file, the pidfile)
are read only when they are regular files: a FIFO would block the command for ever, a device
such as /dev/zero would feed it without end, a directory is a mistake to say plainly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.client.spa import read_key
from knocknft.daemon.detach import read_pid_file
from knocknft.errors import UsageError

KNOCKNFT = Path(sys.executable).parent / "knocknft"
# A command that blocks fails here instead of hanging the suite.
PATIENCE = 30


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "dir.conf"
    path.mkdir()
    return path


def _zero(tmp_path: Path) -> Path:
    return Path("/dev/zero")


NOT_REGULAR: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (_fifo, "a FIFO"),
    "directory": (_directory, "a directory"),
    "device": (_zero, "a character device"),
}


def knocknft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KNOCKNFT), *args], capture_output=True, text=True, timeout=PATIENCE, check=False
    )


@pytest.mark.parametrize("kind", NOT_REGULAR)
@pytest.mark.parametrize("command", ["check", "import"])
def test_a_config_that_is_no_regular_file_is_refused_at_once(
    tmp_path: Path, kind: str, command: str
) -> None:
    make, said = NOT_REGULAR[kind]
    path = make(tmp_path)
    result = knocknft(*(["check", "-c"] if command == "check" else ["import"]), str(path))
    assert result.returncode == EXIT_INVALID, result.stderr
    assert str(path) in result.stderr and f"it is {said}, not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_fwknop_include_that_is_a_fifo_is_an_error_at_its_line(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    conf = tmp_path / "access.conf"
    conf.write_text(f"%include {fifo}\nSOURCE ANY\nKEY_BASE64 x\n")
    result = knocknft("import", str(conf))
    assert result.returncode == EXIT_INVALID
    assert f"{conf}:1: %include: cannot read {fifo}" in result.stderr
    assert "not a regular file" in result.stderr


def test_a_one_time_file_that_is_a_fifo_is_warned_of_by_import(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    conf = tmp_path / "knockd.conf"
    conf.write_text(
        f"[opencloseSSH]\n  One_Time_Sequences = {fifo}\n  seq_timeout = 5\n"
        "  command = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"
    )
    result = knocknft("import", str(conf), "-o", str(tmp_path / "out.yaml"))
    assert "a FIFO, not a regular file" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_an_spa_key_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    make, said = NOT_REGULAR[kind]
    with pytest.raises(UsageError, match=f"it is {said}, not a regular file"):
        read_key(make(tmp_path))


def test_the_pidfile_is_trusted_only_as_a_regular_file_holding_a_pid(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text(f"{os.getpid()}\n")
    link = tmp_path / "link.pid"
    link.symlink_to(target)
    assert read_pid_file(target) == os.getpid()
    assert read_pid_file(link) is None, "a planted link is not followed"
    assert read_pid_file(_fifo(tmp_path)) is None, "a FIFO neither blocks nor counts"
    assert read_pid_file(Path("/dev/zero")) is None
    pid_file = tmp_path / "knocknft.pid"
    for text, pid in [
        (" 42 \n", 42),
        ("0\n", None),
        ("-5\n", None),
        ("+5\n", None),
        ("٣\n", None),  # a digit to str.isdigit, no pid
        (f"{1 << 22}\n", 1 << 22),
        (f"{(1 << 22) + 1}\n", None),
        ("9" * 40 + "\n", None),
        ("4" * 100, None),
    ]:
        pid_file.write_text(text)
        assert read_pid_file(pid_file) == pid, text
