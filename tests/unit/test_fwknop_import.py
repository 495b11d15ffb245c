"""`knocknft import access.conf`: saved fwknop setups as admins write them, and the command's
contract (file:line messages, exit codes, a private output file, stdout without -o).

Golden files: tests/data/fwknop/<case>/access.conf (with the fwknopd.conf beside it, if any)
gives <case>/expected.yaml on stdout and <case>/expected.stderr, exit 0 (or only the stderr file
and exit 2, when fwknopd itself would refuse the files). Set KNOCKNFT_UPDATE_GOLDEN=1 to rewrite
them after an intended change, then review the diff.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import stat
from datetime import date
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.admin.cli_common import EXIT_INVALID
from knocknft.config import PortSpec, parse_config

REPO = Path(__file__).resolve().parents[2]
DATA = Path("tests/data/fwknop")
CASES = sorted(p.name for p in (REPO / DATA).iterdir() if (p / "access.conf").is_file())
runner = CliRunner()
# A key pair from Debian's `fwknop --key-gen`, for the files the tests write.
KEY = "PmQcsrw6tchXTho3Y0E42rNCzT3X8+iQseJm0LNzumI="
HMAC = "5Cv5ByfFG/zcutH4EtvzzvBfuR6u/rQ0mmL7gdOCq9b3sLsUjIv83pE+3H3PBKhdDKs+rvMldtYvBpYYXiJTDw=="


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # The golden files name the access.conf by its path from the repository's root.
    monkeypatch.chdir(REPO)


def test_the_cases_are_there() -> None:
    assert {"debian", "debian-keyed", "several", "every-keyword", "refused-by-fwknopd"} <= set(
        CASES
    )


@pytest.mark.parametrize("case", CASES)
def test_saved_setups_import_as_expected(case: str) -> None:
    result = runner.invoke(app, ["import", str(DATA / case / "access.conf")])
    expected_yaml = REPO / DATA / case / "expected.yaml"
    expected_err = REPO / DATA / case / "expected.stderr"
    if os.environ.get("KNOCKNFT_UPDATE_GOLDEN"):
        expected_err.write_text(result.stderr)
        if result.exit_code == 0:
            expected_yaml.write_text(result.stdout)
        else:
            expected_yaml.unlink(missing_ok=True)
    assert result.stderr == expected_err.read_text()
    if expected_yaml.exists():
        assert result.exit_code == 0
        assert result.stdout == expected_yaml.read_text()
    else:
        assert result.exit_code == EXIT_INVALID and result.stdout == ""


@pytest.mark.parametrize("case", [c for c in CASES if (REPO / DATA / c / "expected.yaml").exists()])
def test_every_output_passes_check(case: str) -> None:
    written = REPO / DATA / case / "expected.yaml"
    result = runner.invoke(app, ["check", "--other-host", "-c", str(written)])
    assert result.exit_code == 0, result.output


def test_the_config_read_back_is_the_stanzas() -> None:
    """What `check` reads from the output is what fwknopd read from access.conf."""
    config = parse_config((REPO / DATA / "several" / "expected.yaml").read_text()).config
    assert (config.options.spa_port, config.options.spa_window) == (40001, 60)
    assert config.options.interfaces == ("ens3",)
    laptop, office, console = config.spa_doors
    assert laptop.fwknop is not None and office.fwknop is not None
    assert laptop.fwknop.source == (ipaddress.ip_network("198.18.7.10/32"),)
    assert laptop.fwknop.key == base64.b64decode("EkTeaB7W/cEb6ZlpuhWqcij7kjHfidEnM6wk78FjecQ=")
    assert laptop.fwknop.hmac_digest == "sha512" and laptop.fwknop.require_source_address
    assert laptop.fwknop.expires == date(2027, 6, 29), "fwknopd refused from 06/30/2027 00:00"
    assert (laptop.open_for, laptop.max_open_for) == (120, 3600)
    assert laptop.open == (PortSpec(22), PortSpec(443))
    assert office.fwknop.key == b"correct horse battery staple"
    assert office.fwknop.hmac_key == b"a different HMAC passphrase"
    assert office.open == (PortSpec(22),), "RESTRICT_PORTS udp/1194 taken out"
    assert console.name == "fwknop-4", "named after fwknopd's stanza #4; #3 has no HMAC key"
    assert console.start_command == "/usr/local/sbin/console-allow %IP% 8443"
    assert console.cmd_timeout == 90


def test_the_shipped_example_is_refused_where_fwknopd_refuses_it() -> None:
    """Debian's access.conf as installed: fwknopd does not start on its placeholder keys."""
    result = runner.invoke(app, ["import", str(DATA / "debian" / "access.conf")])
    assert result.exit_code == EXIT_INVALID
    assert "debian/access.conf:205: KEY_BASE64: still the placeholder __CHANGEME__" in result.stderr
    assert "debian/access.conf:206: HMAC_KEY_BASE64: still the placeholder" in result.stderr
    assert "fwknop --key-gen" in result.stderr


def test_the_shipped_example_with_keys_becomes_one_spa_door() -> None:
    result = runner.invoke(app, ["import", str(DATA / "debian-keyed" / "access.conf")])
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["options"]["spa_port"] == 62201
    door = config["doors"]["fwknop-1"]
    assert door["fwknop"]["source"] == ["any"]
    assert door["fwknop"]["hmac_digest"] == "sha256"
    assert door["open"] == ["22/tcp"]
    assert (door["open_for"], door["max_open_for"]) == ("30s", "5m"), "fwknopd's defaults"


def test_every_stanza_left_out_is_said_with_its_line_and_why() -> None:
    result = runner.invoke(app, ["import", str(DATA / "every-keyword" / "access.conf")])
    assert result.exit_code == 0
    refused = [line for line in result.stderr.splitlines() if line.startswith("not imported:")]
    where = [line.split(": ")[1] for line in refused]
    conf = str(DATA / "every-keyword" / "access.conf")
    assert where == [f"{conf}:{n}" for n in (41, 47, 48, 51, 60, 62, 69, 77, 84)]
    doors = yaml.safe_load(result.stdout)["doors"]
    assert list(doors) == ["fwknop-1"], "only the stanza knocknft can serve whole"
    # The refusals are in the file too, for whoever reads it later.
    assert f"#   {conf}:41: stanza #2 REQUIRE_USERNAME:" in result.stdout


def _access(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "access.conf"
    conf.write_text(text)
    return conf


def test_output_is_written_private_and_atomically_with_nothing_on_stdout(tmp_path: Path) -> None:
    conf = _access(
        tmp_path,
        f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n",
    )
    out = tmp_path / "config.yaml"
    out.write_text("old\n")
    out.chmod(0o644)
    refused = runner.invoke(app, ["import", str(conf), "-o", str(out)])
    assert refused.exit_code == EXIT_INVALID and out.read_text() == "old\n", "only with --force"
    result = runner.invoke(app, ["import", str(conf), "-o", str(out), "--force"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert f"wrote {out}: 1 door(s)" in result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, "it holds the keys"
    assert yaml.safe_load(out.read_text())["doors"]["fwknop-1"]["fwknop"]["hmac_key_base64"] == HMAC
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left"


def test_without_o_the_yaml_goes_to_stdout_and_the_notes_to_stderr(tmp_path: Path) -> None:
    conf = _access(
        tmp_path,
        f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nGPG_EXE x\n",
    )
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["doors"]["fwknop-1"]["open"] == ["22/tcp"]
    assert f"not mapped: {conf}:5: stanza #1 GPG_EXE: GPG is not served" in result.stderr
    assert "GPG_EXE" not in result.stdout.split("doors:")[1], "said in the header, not the door"


def test_a_file_fwknopd_refuses_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    conf = _access(tmp_path, f"SOURCE 198.18.0.0/33\nOPEN_PORTS tcp/22\nKEY_BASE64 {KEY}\n")
    out = tmp_path / "config.yaml"
    result = runner.invoke(app, ["import", str(conf), "-o", str(out)])
    assert result.exit_code == EXIT_INVALID
    assert f"error: {conf}:1: SOURCE: '198.18.0.0/33': '33' is not a mask" in result.stderr
    assert not out.exists()


def test_nothing_to_serve_is_exit_2_with_each_stanzas_reason(tmp_path: Path) -> None:
    conf = _access(tmp_path, f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {KEY}\n")
    out = tmp_path / "config.yaml"
    result = runner.invoke(app, ["import", str(conf), "-o", str(out)])
    assert result.exit_code == EXIT_INVALID
    assert f"error: {conf}:1: stanza #1 SOURCE: it has no HMAC_KEY" in result.stderr
    assert "no stanza can be served by knocknft" in result.stderr
    assert not out.exists()


def test_no_message_shows_a_key(tmp_path: Path) -> None:
    conf = _access(
        tmp_path,
        "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY secret-passphrase-1; trailing\n"
        "HMAC_KEY secret-passphrase-1\n",
    )
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == EXIT_INVALID
    assert "the HMAC key is the encryption key" in result.stderr
    assert "secret-passphrase" not in result.stderr


def test_fwknopd_conf_given_instead_of_access_conf_is_pointed_to_its_neighbour(
    tmp_path: Path,
) -> None:
    daemon = tmp_path / "fwknopd.conf"
    daemon.write_text((REPO / DATA / "debian" / "fwknopd.conf").read_text())
    result = runner.invoke(app, ["import", str(daemon)])
    assert result.exit_code == EXIT_INVALID
    assert f"knocknft import {tmp_path / 'access.conf'}" in result.stderr


def test_an_unreadable_include_is_an_error_at_its_line(tmp_path: Path) -> None:
    conf = _access(tmp_path, f"%include {tmp_path / 'missing.conf'}\nSOURCE ANY\n")
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == EXIT_INVALID
    assert f"{conf}:1: %include: cannot read {tmp_path / 'missing.conf'}" in result.stderr


def test_includes_are_read_from_disk(tmp_path: Path) -> None:
    folder = tmp_path / "access.d"
    folder.mkdir()
    (folder / "b.conf").write_text(f"SOURCE 198.18.2.0/24\n%include_keys {tmp_path / 'keys'}\n")
    (folder / "a.conf").write_text("SOURCE 198.18.1.0/24\nOPEN_PORTS tcp/22\n")
    (folder / "notes.txt").write_text("SOURCE 198.18.9.0/24\n")
    (tmp_path / "keys").write_text(f"KEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n")
    conf = _access(
        tmp_path,
        f"%include_folder {folder}/\nSOURCE ANY\nOPEN_PORTS tcp/22\n"
        f"%include_keys {tmp_path / 'keys'}\n",
    )
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == EXIT_INVALID, "a.conf's stanza has no key: fwknopd refuses"
    assert f"error: {folder / 'a.conf'}:1: SOURCE: stanza #1 has no KEY" in result.stderr
    (folder / "a.conf").write_text(
        f"SOURCE 198.18.1.0/24\nOPEN_PORTS tcp/22\n%include_keys {tmp_path / 'keys'}\n"
    )
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == 0, result.stderr
    doors = yaml.safe_load(result.stdout)["doors"]
    assert [d["fwknop"]["source"] for d in doors.values()] == [["198.18.1.0/24"], ["any"]]
    assert f"{folder / 'b.conf'}:1: stanza #2 SOURCE: it has no OPEN_PORTS" in result.stderr
