"""The systemd files in packaging/systemd: `systemd-analyze verify` accepts the units without a
word, the settings the README promises are there, and the tmpfiles entry makes the state dir.

verify only warns about what it ignores (an unknown key, a bad value) and exits 0 all the same,
and says nothing of a misspelt capability: hence "without a word", and the settings checked here.
Nothing is started or enabled: verify reads the files, tmpfiles writes below a temporary root.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.config import DEFAULT_STATE_DIR
from knocknft.daemon.run import warn_unwritable_one_time_files
from scripts.install import Layout, render_unit
from tests.scenarios import SCENARIOS, load_scenario

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
DAEMON, GUARD = "knocknft.service", "knocknft-guard.service"
# The units name the command through a template that `make install` and `make deb` fill in.
INSTALLED = "@BINDIR@/knocknft"
HERE = str(Path(sys.executable).parent / "knocknft")
ANALYZE, TMPFILES = shutil.which("systemd-analyze"), shutil.which("systemd-tmpfiles")
needs_systemd = pytest.mark.skipif(
    ANALYZE is None or TMPFILES is None,
    reason="systemd-analyze/systemd-tmpfiles missing: `make deps` installs Debian's systemd",
)

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Section -> key -> every value given (a key may repeat, and lists add up, as in systemd)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


def words(unit: Unit, section: str, key: str) -> set[str]:
    return {word for value in unit[section].get(key, []) for word in value.split()}


@needs_systemd
def test_systemd_analyze_verify_accepts_the_units_without_a_word(tmp_path: Path) -> None:
    # verify checks that each Exec*= program exists: the copies are filled in as `make install`
    # does, with this checkout's venv as the prefix, so that they name its knocknft.
    copies = []
    here = Layout(Path("/"), Path(HERE).parent.parent, Path("/etc"))
    for name in (GUARD, DAEMON):
        text = (UNITS / name).read_text()
        assert INSTALLED in text
        copy = tmp_path / name
        copy.write_text(render_unit(text, here))
        assert HERE in copy.read_text()
        copies.append(str(copy))
    assert ANALYZE is not None
    result = subprocess.run(
        # --man=no: the units name knocknft(8), which only an installed knocknft has
        # (tests/integration/test_package.py verifies the installed units, man pages and all).
        [ANALYZE, "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_daemon_unit_notifies_reloads_and_restarts_as_documented() -> None:
    unit = parse_unit(UNITS / DAEMON)
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "ExecStart") == f"{INSTALLED} run $KNOCKNFT_OPTS"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Service", "Restart") == "on-failure"
    # An invalid config exits 2: restarting cannot fix it.
    assert one(unit, "Service", "RestartPreventExitStatus") == str(EXIT_INVALID)
    assert {"network-pre.target"} <= words(unit, "Unit", "Before")
    assert {"network-pre.target", "knocknft-guard.service"} <= words(unit, "Unit", "Wants")
    assert {"knocknft-guard.service", "nftables.service"} <= words(unit, "Unit", "After")


def test_the_daemon_unit_is_hardened_as_documented() -> None:
    unit = parse_unit(UNITS / DAEMON)
    assert one(unit, "Service", "CapabilityBoundingSet") == "CAP_NET_ADMIN"
    assert one(unit, "Service", "AmbientCapabilities") == ""
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelModules"):
        assert one(unit, "Service", key) == "yes", key
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert words(unit, "Service", "RestrictAddressFamilies") == {
        "AF_NETLINK",
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    assert one(unit, "Service", "SystemCallFilter") == "@system-service"
    # The one writable place is the state dir the code defaults to, private.
    assert Path("/var/lib") / one(unit, "Service", "StateDirectory") == DEFAULT_STATE_DIR
    assert one(unit, "Service", "StateDirectoryMode") == "0700"


def test_the_guard_runs_early_after_nftables_and_before_network_and_daemon() -> None:
    unit = parse_unit(UNITS / GUARD)
    assert one(unit, "Unit", "DefaultDependencies") == "no"
    assert {"network-pre.target", "knocknft.service"} <= words(unit, "Unit", "Before")
    # Debian's nftables.conf starts with `flush ruleset`: the guard loads after it, again
    # whenever nftables.service is started, restarted or reloaded.
    assert {"local-fs.target", "nftables.service"} <= words(unit, "Unit", "After")
    assert one(unit, "Unit", "PartOf") == one(unit, "Unit", "ReloadPropagatedFrom")
    assert {"sysinit.target", "nftables.service"} == words(unit, "Install", "WantedBy")
    assert one(unit, "Service", "Type") == "oneshot"
    assert one(unit, "Service", "RemainAfterExit") == "yes"
    assert one(unit, "Service", "ExecStart") == one(unit, "Service", "ExecReload")
    assert one(unit, "Service", "ExecStart") == f"{INSTALLED} guard"
    assert one(unit, "Service", "CapabilityBoundingSet") == "CAP_NET_ADMIN"


@needs_systemd
def test_tmpfiles_makes_the_state_dir_private_also_when_it_exists(tmp_path: Path) -> None:
    assert TMPFILES is not None
    state = tmp_path / DEFAULT_STATE_DIR.relative_to("/")
    for _ in ("absent", "present and too open"):
        result = subprocess.run(
            [TMPFILES, f"--root={tmp_path}", "--create", "-"],
            input=(UNITS / "knocknft.tmpfiles").read_text(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, "")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        state.chmod(0o755)


def test_a_one_time_file_the_daemon_cannot_mark_is_an_error_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under ProtectSystem=strict, /etc is read-only: a used sequence could not be marked."""
    config = load_scenario(SCENARIOS / "one-time")
    (door,) = config.doors
    assert door.one_time_sequences is not None and not door.one_time_sequences.exists()
    with caplog.at_level(logging.ERROR, "knocknft"):
        warn_unwritable_one_time_files(config)
    assert "ssh: /etc/knocknft/ssh.seq is not writable" in caplog.text
    assert "ReadWritePaths=/etc/knocknft" in caplog.text

    writable = tmp_path / "ssh.seq"
    writable.write_text("7000,8000,9000\n")
    door = dataclasses.replace(door, one_time_sequences=writable)
    caplog.clear()
    with caplog.at_level(logging.ERROR, "knocknft"):
        warn_unwritable_one_time_files(dataclasses.replace(config, doors=(door,)))
    assert caplog.text == ""
