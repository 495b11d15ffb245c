"""What an admin meets day to day at the command line: `import -o` that will not overwrite,
`open` without `--door` when one door grants."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin import cli_common
from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.config import parse_config
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
