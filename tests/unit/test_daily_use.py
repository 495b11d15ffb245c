"""What an admin meets day to day at the command line: `import -o` that will not overwrite,
`open` without `--door` when one door grants, `apply` warning of a lockout of the admin's own
SSH session."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin import cli_common
from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.admin.health import EXIT_GATE_DOWN
from knocknft.config import parse_config
from knocknft.core.lockout import ssh_lockout
from knocknft.errors import NftError
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import loaded_nft

runner = CliRunner()
KNOCKD_CONF = (
    Path(__file__).resolve().parents[1] / "data" / "knockd" / "004-1-init-script-accept.conf"
)

ONE_DOOR = """\
doors:
  ssh:
    sequence: [7000, 9000/udp, 8000]
    open: [22/tcp]
    open_for: 30s
"""
# openSSH/closeSSH as an import writes it, and a trap: one door grants, three exist.
ONE_GRANTS = (
    ONE_DOOR
    + """\
  closessh:
    sequence: [8000, 9000/udp, 7000]
    close: [22/tcp]
  trap:
    sequence: [1220, 1221, 1222]
    deny_for: 1h
"""
)
TWO_GRANT = (
    ONE_DOOR
    + """\
  web:
    sequence: [6000, 6100/udp, 6200]
    open: [443/tcp]
    open_for: 1m
"""
)


def test_import_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    out.write_text("# the running config\n")
    result = runner.invoke(app, ["import", str(KNOCKD_CONF), "-o", str(out)])
    assert result.exit_code == EXIT_INVALID, result.output
    assert f"{out} exists; nothing was written" in result.stderr and "--force" in result.stderr
    assert out.read_text() == "# the running config\n"
    result = runner.invoke(app, ["import", str(KNOCKD_CONF), "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert "doors:" in out.read_text()


def test_import_refuses_a_dangling_symlink_too(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    out.symlink_to(tmp_path / "elsewhere.yaml")
    result = runner.invoke(app, ["import", str(KNOCKD_CONF), "-o", str(out)])
    assert result.exit_code == EXIT_INVALID and "exists" in result.stderr
    assert not (tmp_path / "elsewhere.yaml").exists()


def _kernel(monkeypatch: pytest.MonkeyPatch, text: str) -> FakeNft:
    nft = loaded_nft(parse_config(text).config)
    monkeypatch.setattr(cli_common, "nft_factory", lambda: nft)
    return nft


@pytest.mark.parametrize("text", [ONE_DOOR, ONE_GRANTS])
def test_open_without_door_uses_the_only_door_that_grants(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel(monkeypatch, text)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["open", "198.18.0.2", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "door ssh: the only door that grants services" in result.stderr
    assert "opened 22/tcp for 198.18.0.2 (door ssh) for 30s" in result.stdout


def test_open_without_door_among_several_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nft = _kernel(monkeypatch, TWO_GRANT)
    path = tmp_path / "config.yaml"
    path.write_text(TWO_GRANT)
    result = runner.invoke(app, ["open", "198.18.0.2", "-c", str(path)])
    assert result.exit_code == EXIT_INVALID
    assert "--door is needed" in result.stderr and "(ssh, web)" in result.stderr
    assert not nft.transactions, "nothing granted"


# -- apply warns of a lockout of the admin's own SSH session ----------------------------------

SSH_FROM = "198.51.100.7 52000 198.18.0.1 22"


@pytest.mark.parametrize(
    ("text", "ssh_connection", "warned"),
    [
        (ONE_DOOR, SSH_FROM, True),
        (ONE_DOOR, "::ffff:198.51.100.7 52000 ::ffff:198.18.0.1 22", True),  # judged as IPv4
        (ONE_DOOR, "198.51.100.7 52000 198.18.0.1 2222", False),  # sshd on a port not gated
        (ONE_DOOR, "127.0.0.1 52000 127.0.0.1 22", False),  # loopback is not gated
        (ONE_DOOR, "", False),  # not from SSH
        (ONE_DOOR, "nonsense", False),
        ("options:\n  always_allow: [198.51.100.0/24]\n" + ONE_DOOR, SSH_FROM, False),
        ("options:\n  always_allow: [203.0.113.0/24]\n" + ONE_DOOR, SSH_FROM, True),  # not it
    ],
)
def test_ssh_lockout_is_judged_against_the_new_config(
    text: str, ssh_connection: str, warned: bool
) -> None:
    lockout = ssh_lockout(parse_config(text).config, ssh_connection)
    assert (lockout is not None) == warned
    if lockout is not None:
        assert str(lockout.address) == "198.51.100.7" and str(lockout.service) == "22/tcp"


def test_a_resolved_always_allow_name_covers_the_session() -> None:
    config = parse_config("options:\n  always_allow: [admin.example.org]\n" + ONE_DOOR).config
    assert ssh_lockout(config, SSH_FROM) is not None, "the name resolved to nothing yet"
    resolved = replace(
        config, always_allow_resolved=(("admin.example.org", ip_address("198.51.100.7")),)
    )
    assert ssh_lockout(resolved, SSH_FROM) is None


def test_close_sessions_says_the_session_itself_ends() -> None:
    text = ONE_DOOR + "    close_sessions: true\n"
    lockout = ssh_lockout(parse_config(text).config, SSH_FROM)
    assert lockout is not None and "close_sessions ends this session too" in lockout.warning(False)


def test_apply_from_an_ssh_session_warns_with_the_address_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nft = FakeNft()
    monkeypatch.setattr(cli_common, "nft_factory", lambda: nft)
    path = tmp_path / "config.yaml"
    path.write_text(ONE_DOOR)
    state = tmp_path / "state"
    args = ["apply", "-c", str(path), "--state-dir", str(state)]
    result = runner.invoke(app, args, env={"SSH_CONNECTION": SSH_FROM})
    assert result.exit_code == 0, result.output
    assert "warning: your SSH session comes from 198.51.100.7 to 22/tcp" in result.stderr
    assert "Add 198.51.100.7 (or its network) to options.always_allow" in result.stderr
    assert "--confirm DURATION" in result.stderr
    quiet = runner.invoke(app, args, env={"SSH_CONNECTION": ""})
    assert quiet.exit_code == 0 and "SSH session" not in quiet.stderr


# -- status --json is JSON whatever happens --------------------------------------------------


def test_status_json_without_a_table_is_json_with_the_gate_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "nft_factory", FakeNft)  # a kernel without our table
    path = tmp_path / "config.yaml"
    path.write_text(ONE_DOOR)
    result = runner.invoke(app, ["status", "--json", "-c", str(path), "--state-dir", str(tmp_path)])
    assert result.exit_code == EXIT_GATE_DOWN, result.output
    report = json.loads(result.stdout)
    assert report["health"]["table_loaded"] is False and report["grants"] == []
    assert [d["name"] for d in report["doors"]] == ["ssh"] and "sequence" not in report["doors"][0]


@pytest.mark.parametrize(
    ("broken", "code"),
    [("kernel", 1), ("config", EXIT_INVALID)],
)
def test_status_json_failing_is_still_json(
    broken: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nft = FakeNft()
    nft.refuse("list", NftError("Operation not permitted"))
    monkeypatch.setattr(cli_common, "nft_factory", lambda: nft)
    path = tmp_path / "config.yaml"
    path.write_text(ONE_DOOR if broken == "kernel" else ONE_DOOR.replace("30s", "30x"))
    result = runner.invoke(app, ["status", "--json", "-c", str(path)])
    assert result.exit_code == code
    assert json.loads(result.stdout)["exit"] == code
    assert "Traceback" not in result.output


def test_watch_shows_the_stats_too_and_ctrl_c_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("knocknft.admin.cli_status.time.sleep", interrupted)
    args = ["status", "--stats", "--watch", "1", "--json", "--state-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()  # one object per line, each refresh
    assert json.loads(line)["state"] == "absent"
