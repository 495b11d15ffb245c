"""Every command that takes `-c FILE` takes a knockd.conf as `run` does, through one loader, with
knockd's errors at file:line; and `import` says when a one-time file it names cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin import cli_common
from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.admin.health import EXIT_GATE_DEGRADED
from knocknft.config import Config
from knocknft.knockd.grammar import load_any_config
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import loaded_nft

runner = CliRunner()

# The university's knockd.conf (shared/reference/004).
KNOCKD_CONF = """\
[options]
  usesyslog

[opencloseSSH]
  sequence      = 1228,1227
  seq_timeout   = 15
  tcpflags      = syn
  command       = /etc/rc.d/init.d/knockd accept %IP%
"""
BROKEN_LINE = 6
BROKEN = KNOCKD_CONF.replace("seq_timeout   = 15", "seq_timeout   = 15x")

COMMANDS = {
    "check": ["check"],
    "apply": ["apply", "--dry-run"],
    "status": ["status"],
    "open": ["open", "198.18.0.2", "--door", "opencloseSSH"],
    "close": ["close", "198.18.0.2"],
    "doctor": ["doctor"],
    "confirm": ["confirm"],  # the state dir is an option of the config
}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "knockd.conf"
    path.write_text(text)
    return path


def _fake_kernel(monkeypatch: pytest.MonkeyPatch, path: Path) -> FakeNft:
    config, _ = load_any_config(path)
    nft = loaded_nft(config.config)
    monkeypatch.setattr(cli_common, "nft_factory", lambda: nft)
    return nft


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_knockd_errors_at_file_and_line(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "nft_factory", FakeNft)
    path = _config(tmp_path, BROKEN)
    result = runner.invoke(app, [*COMMANDS[command], "-c", str(path)])
    assert result.exit_code == EXIT_INVALID, result.output
    assert f"error: {path}:{BROKEN_LINE}: [opencloseSSH] seq_timeout: '15x'" in result.stderr
    assert "Traceback" not in result.output and "YAML" not in result.output


def test_check_and_apply_read_a_knockd_conf(tmp_path: Path) -> None:
    path = _config(tmp_path, KNOCKD_CONF)
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK: 1 door(s), knock ports 1227/tcp, 1228/tcp" in result.stdout
    result = runner.invoke(app, ["apply", "--dry-run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "th dport { tcp . 1227, tcp . 1228 } log group 7" in result.stdout


def test_status_open_close_and_doctor_read_a_knockd_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, KNOCKD_CONF)
    _fake_kernel(monkeypatch, path)
    result = runner.invoke(app, ["status", "--json", "-c", str(path)])
    # The table is loaded; no daemon runs here: the gate is degraded, which status says.
    assert result.exit_code == EXIT_GATE_DEGRADED, result.output
    assert '"table": "knocknft"' in result.stdout
    # Under a knockd.conf a door's command is its only effect, as under knockd: nothing to
    # open by hand, and the door is named from the file.
    result = runner.invoke(app, [*COMMANDS["open"], "-c", str(path)])
    assert result.exit_code == EXIT_INVALID
    assert "door 'opencloseSSH' has no open: services; it only runs commands" in result.stderr
    result = runner.invoke(app, [*COMMANDS["close"], "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "nothing open for 198.18.0.2" in result.stdout
    result = runner.invoke(app, ["doctor", "-c", str(path)])
    assert result.exit_code == 0, result.output


def test_the_loader_reads_both_kinds(tmp_path: Path) -> None:
    knockd = _config(tmp_path, KNOCKD_CONF)
    loaded, options = load_any_config(knockd)
    assert options is not None and options.use_syslog
    assert [d.name for d in loaded.config.doors] == ["opencloseSSH"]
    yaml_path = tmp_path / "config.yaml"
    yaml_path.write_text(
        "doors:\n  ssh:\n    sequence: [7000, 8000, 9000]\n    open: [22]\n    open_for: 30s\n"
    )
    loaded, options = load_any_config(yaml_path)
    assert options is None and isinstance(loaded.config, Config)
    assert loaded.config.doors[0].open


def test_import_warns_of_a_one_time_file_it_cannot_read(tmp_path: Path) -> None:
    missing = tmp_path / "smtp_sequences"
    conf = _config(
        tmp_path,
        "[opencloseSMTP]\n"
        f"one_time_sequences = {missing}\n"
        "seq_timeout = 15\n"
        "start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n",
    )
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {conf}:2: [opencloseSMTP]: one_time_sequences: cannot read {missing} here "
        "(No such file or directory)" in result.stderr
    )
    missing.write_text("1000,2000,3000\n")
    missing.chmod(0o600)
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr
