"""The command line's contract with scripts: exit codes and where messages go."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_INVALID

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
runner = CliRunner()


def test_check_accepts_the_example() -> None:
    result = runner.invoke(app, ["check", "-c", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK: 1 door(s)" in result.stdout


def test_check_fails_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("seq_timeout: 5s", "seq_timout: 5x"))
    result = runner.invoke(app, ["check", "-c", str(bad)])
    assert result.exit_code == EXIT_INVALID == 2
    assert f"error: {bad}:" in result.stderr and "did you mean 'seq_timeout'?" in result.stderr
    assert "nothing was changed" in result.stderr


def test_check_warnings_do_not_fail(tmp_path: Path) -> None:
    weak = tmp_path / "weak.yaml"
    weak.write_text("doors:\n  a:\n    sequence: [1000, 2000]\n    open: [22]\n    open_for: 5s\n")
    result = runner.invoke(app, ["check", "-c", str(weak)])
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "only 2 step(s)" in result.stderr


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["apply", "-c", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "cannot read the config" in result.stderr


def test_dry_run_prints_the_script_without_a_kernel() -> None:
    result = runner.invoke(app, ["apply", "--dry-run", "-c", str(EXAMPLE)])
    assert result.exit_code == 0
    assert result.stdout.startswith("# knocknft") and "add table inet knocknft" in result.stdout


KNOCKD_DATA = Path(__file__).resolve().parents[1] / "data" / "knockd"


def test_import_writes_a_private_config_that_check_accepts(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    conf = KNOCKD_DATA / "004-1-init-script-accept.conf"
    result = runner.invoke(app, ["import", str(conf), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "", "with -o the YAML goes to the file only"
    assert f"not mapped: {conf}:10: [opencloseSSH] start_command:" in result.stderr
    assert out.stat().st_mode & 0o777 == 0o600, "a knock sequence is a secret"
    assert runner.invoke(app, ["check", "-c", str(out)]).exit_code == 0


def test_import_of_a_config_knockd_refuses_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    conf = KNOCKD_DATA / "000-elliptips-opions.conf"
    result = runner.invoke(app, ["import", str(conf), "-o", str(out)])
    assert result.exit_code == EXIT_INVALID
    assert f"error: {conf}:2: [opions]: the door has no Sequence" in result.stderr
    assert not out.exists()


def test_confirm_with_nothing_pending_is_exit_1(tmp_path: Path) -> None:
    args = ["confirm", "-c", str(EXAMPLE), "--state-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "nothing to confirm: no `knocknft apply --confirm` is pending" in result.stderr


def test_dry_run_cannot_be_confirmed() -> None:
    result = runner.invoke(app, ["apply", "--dry-run", "--confirm", "1m", "-c", str(EXAMPLE)])
    assert result.exit_code == EXIT_INVALID and "nothing to --confirm" in result.stderr


def test_confirm_takes_a_duration(tmp_path: Path) -> None:
    args = ["apply", "--confirm", "soon", "-c", str(EXAMPLE), "--state-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert (
        result.exit_code == EXIT_INVALID and "--confirm: 'soon' is not a duration" in result.stderr
    )


def test_help_lists_every_command_in_the_order_of_the_workflow() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    section = result.stdout.split("Commands:\n", 1)[1]
    # Each command's line starts with its name, indented by two; wrapped help by more.
    commands = [
        line.split()[0]
        for line in section.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert commands == [
        "check",
        "apply",
        "confirm",
        "guard",
        "doctor",
        "status",
        "open",
        "close",
        "run",
        "import",
        "keygen",
    ]
