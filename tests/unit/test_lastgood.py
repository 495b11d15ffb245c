"""The last-known-good table: every apply the kernel accepted keeps its script for the boot guard,
and `knocknft guard` loads it back, refusing what is not a table knocknft saved. With a recording
nft; tests/integration/test_systemd.py does it against the kernel.
"""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from knocknft.admin import cli, cli_common
from knocknft.config import Config, load_config
from knocknft.core.ruleset import render_ruleset
from knocknft.errors import NftError
from knocknft.nft.fake import FakeNft
from knocknft.nft.lastgood import LAST_GOOD_FILE, load_last_good, saved_table
from knocknft.nft.operations import apply_config
from tests.scenarios import SCENARIOS, load_scenario, scenario_names

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
runner = CliRunner()


def refusing_nft() -> FakeNft:
    nft = FakeNft()
    for operation in ("apply", "load"):
        nft.refuse(operation, NftError("Error: Could not process rule: No such file or directory"))
    return nft


def example(state_dir: Path) -> Config:
    config = load_config(EXAMPLE).config
    return dataclasses.replace(
        config, options=dataclasses.replace(config.options, state_dir=state_dir)
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- apply keeps what the kernel took -----------------------------------------------------------


def test_apply_keeps_the_script_the_kernel_accepted_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = example(state)
    nft = FakeNft()
    result = apply_config(nft, config)
    assert result.saved == state / LAST_GOOD_FILE and result.save_error is None
    assert result.saved.read_text() == nft.scripts[-1] == render_ruleset(config)
    assert mode(result.saved) == 0o600, "it holds the knock sequence"
    assert mode(state) == 0o700


def test_a_refused_apply_leaves_the_last_good_copy_alone(tmp_path: Path) -> None:
    apply_config(FakeNft(), example(tmp_path))
    before = (tmp_path / LAST_GOOD_FILE).read_text()
    changed = dataclasses.replace(example(tmp_path), source="changed.yaml")
    with pytest.raises(NftError):
        apply_config(refusing_nft(), changed)
    assert (tmp_path / LAST_GOOD_FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [LAST_GOOD_FILE], "no temporary file left"


def test_a_copy_that_cannot_be_kept_does_not_fail_the_apply(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    nft = FakeNft()
    result = apply_config(nft, example(not_a_dir))
    assert nft.scripts, "the table was loaded"
    assert result.saved is None
    assert result.save_error is not None and str(not_a_dir / LAST_GOOD_FILE) in result.save_error


# -- what the guard accepts ---------------------------------------------------------------------


@pytest.mark.parametrize("name", scenario_names())
def test_every_rendered_ruleset_is_recognised_as_ours(name: str) -> None:
    config = load_scenario(SCENARIOS / name)
    assert saved_table(render_ruleset(config)) == config.options.table


OURS = render_ruleset(load_config(EXAMPLE).config)


@pytest.mark.parametrize(
    ("why", "script"),
    [
        ("no header", OURS.split("\n", 1)[1]),
        ("flushes everything", OURS + "flush ruleset\n"),
        ("another table", OURS + "add table inet filter\n"),
        ("two tables", OURS + OURS.replace("inet knocknft", "inet other")),
        ("another family", OURS + "delete table ip knocknft\n"),
        ("not nft at all", "# knocknft 0.1.0\nrm -rf /\n"),
        (
            "a second command after ;",
            OURS + "add rule inet knocknft input tcp dport 22 accept; add table ip evil\n",
        ),
        ("a comment hiding a command", OURS + 'add rule inet knocknft input accept comment "a\n'),
        ("text the renderer never writes", OURS.replace("add table", "add  table", 1)),
        ("empty", ""),
    ],
)
def test_anything_else_is_refused(why: str, script: str) -> None:
    assert saved_table(script) is None, why


def test_nothing_saved_loads_nothing(tmp_path: Path) -> None:
    nft = FakeNft()
    guarded = load_last_good(nft, tmp_path)
    assert guarded.table is None and guarded.path == tmp_path / LAST_GOOD_FILE
    assert nft.scripts == []


def test_the_saved_script_is_loaded_as_it_was_saved(tmp_path: Path) -> None:
    apply_config(FakeNft(), example(tmp_path))
    nft = FakeNft()
    guarded = load_last_good(nft, tmp_path)
    assert guarded.table == "knocknft"
    assert nft.scripts == [(tmp_path / LAST_GOOD_FILE).read_text()]


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def nft(monkeypatch: pytest.MonkeyPatch) -> FakeNft:
    recording = FakeNft()
    monkeypatch.setattr(cli_common, "nft_factory", lambda: recording)
    return recording


def test_apply_keeps_the_table_in_state_dir(tmp_path: Path, nft: FakeNft) -> None:
    result = invoke("apply", "-c", str(EXAMPLE), "--state-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / LAST_GOOD_FILE).read_text() == nft.scripts[-1]


def test_apply_warns_but_succeeds_when_the_copy_cannot_be_kept(
    tmp_path: Path, nft: FakeNft
) -> None:
    (tmp_path / LAST_GOOD_FILE).mkdir()  # nothing can be renamed over it
    result = invoke("apply", "-c", str(EXAMPLE), "--state-dir", str(tmp_path))
    assert result.exit_code == 0 and "table inet knocknft: 1 door(s)" in result.stdout
    assert "warning: not kept for the boot guard" in result.stderr


def test_apply_refuses_a_state_dir_that_is_not_a_directory(tmp_path: Path, nft: FakeNft) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    result = invoke("apply", "-c", str(EXAMPLE), "--state-dir", str(not_a_dir))
    assert result.exit_code == 1 and "is not a directory" in result.stderr
    assert nft.scripts == [], "refused before the kernel was touched"


def test_guard_with_nothing_saved_says_so_and_succeeds(tmp_path: Path, nft: FakeNft) -> None:
    result = invoke("guard", "--state-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "warning: nothing to load" in result.stderr and "not guarded" in result.stderr
    assert nft.scripts == []


def test_guard_loads_the_saved_table(tmp_path: Path, nft: FakeNft) -> None:
    assert invoke("apply", "-c", str(EXAMPLE), "--state-dir", str(tmp_path)).exit_code == 0
    result = invoke("guard", "--state-dir", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == (
        f"loaded {tmp_path / LAST_GOOD_FILE}: table inet knocknft reloaded, 0 open grant(s) kept\n"
    )
    assert nft.scripts[-1] == nft.scripts[0]


def test_guard_refuses_a_file_knocknft_did_not_save(tmp_path: Path, nft: FakeNft) -> None:
    (tmp_path / LAST_GOOD_FILE).write_text("flush ruleset\n")
    result = invoke("guard", "--state-dir", str(tmp_path))
    assert result.exit_code == cli_common.EXIT_FAILURE == 1
    assert "is not a ruleset knocknft saved" in result.stderr and nft.scripts == []


def test_guard_fails_when_the_kernel_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_config(FakeNft(), example(tmp_path))
    monkeypatch.setattr(cli_common, "nft_factory", refusing_nft)
    result = invoke("guard", "--state-dir", str(tmp_path))
    assert result.exit_code == 1 and "nft: Error: Could not process rule" in result.stderr


def test_guard_fails_when_the_file_cannot_be_read(tmp_path: Path, nft: FakeNft) -> None:
    (tmp_path / LAST_GOOD_FILE).mkdir()
    result = invoke("guard", "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / LAST_GOOD_FILE} is not a regular file" in result.stderr
    assert not (tmp_path / LAST_GOOD_FILE).exists(), "set aside for the admin to look at"


def invoke(*args: str) -> Result:
    return runner.invoke(cli.app, list(args))
