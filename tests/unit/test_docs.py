"""The generated documentation cannot drift from what it documents: every config key the parsers
take is explained in the reference, every command and option is in the man pages with a help text,
`man` renders the pages without a warning, and the completions offer what the command lines take.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import knocknft.config
from knocknft.client.knock import _parser as knock_parser
from knocknft.client.knock import program_name
from knocknft.config import parse_config
from knocknft.config.reference import SECTIONS
from scripts.cliref import Program, knock_program, knocknft_program
from scripts.gendocs import KNOCK_NAME, generate

DOCS = generate()
MAN = shutil.which("man")


def parsed_key_lists() -> dict[str, tuple[str, ...]]:
    """Every `*_KEYS` tuple of strings in knocknft.config's modules: the keys the parsers take."""
    lists = {}
    for info in pkgutil.iter_modules(knocknft.config.__path__):
        module = importlib.import_module(f"knocknft.config.{info.name}")
        for name, value in vars(module).items():
            strings = isinstance(value, tuple) and all(isinstance(k, str) for k in value)
            if name.endswith("_KEYS") and strings:
                lists[f"{info.name}.{name}"] = value
    return lists


def test_every_key_a_parser_takes_is_documented_with_a_meaning_and_a_schema() -> None:
    documented = {k.name for s in SECTIONS for k in s.keys}
    lists = parsed_key_lists()
    assert {"options.OPTION_KEYS", "doors.DOOR_KEYS"} <= set(lists)
    for where, keys in lists.items():
        missing = set(keys) - documented
        assert not missing, f"{where}: add {sorted(missing)} to knocknft/config/reference.py"
    for section in SECTIONS:
        assert [k.name for k in section.keys if k.name not in section.parsed] == [], section.path
        assert set(section.parsed) <= {k.name for k in section.keys}, section.path
        for key in section.keys:
            assert key.meaning.strip() and key.default.strip() and key.value, key.name


def plain(roff: str) -> str:
    """The words of a roff page, for searching: escapes undone, requests dropped."""
    text = re.sub(r"\\f[BIR]", "", roff).replace("\\-", "-").replace("\\e", "\\")
    return "\n".join(line for line in text.splitlines() if not line.startswith('.\\"'))


def options_of(program: Program) -> list[tuple[str, str]]:
    """(where, flag) for every option and argument of a program and its commands."""
    found = [(program.name, f) for p in program.options for f in p.flags]
    for command in program.commands:
        found += [(command.name, f) for p in command.options for f in p.flags]
        found += [(command.name, p.metavar or "") for p in command.arguments]
    return found


def test_knocknft_8_has_every_command_and_option_with_its_help() -> None:
    program = knocknft_program()
    page = plain(DOCS["man/knocknft.8"])
    assert len(program.commands) >= 10
    for command in program.commands:
        assert f'.SS "{command.name}"' in page
        assert command.help.strip(), f"{command.name} has no help"
        for param in (*command.options, *command.arguments):
            assert param.help.strip(), f"{command.name} {param.flags or param.metavar}: no help"
    for where, flag in options_of(program):
        assert flag in page, f"{where} {flag}"


def test_the_knock_client_page_has_every_option_under_its_installed_name() -> None:
    program = knock_program(KNOCK_NAME)
    page = plain(DOCS[f"man/{KNOCK_NAME}.1"])
    assert f'.TH "{KNOCK_NAME.upper()}" "1"' in page
    for param in (*program.options, *program.arguments):
        assert param.help.strip(), f"knock {param.flags or param.metavar}: no help"
        for word in param.flags or (param.metavar or "",):
            assert word in page, word


def test_the_client_calls_itself_by_the_name_it_is_installed_as() -> None:
    assert program_name("/usr/bin/knocknft-knock") == "knocknft-knock"
    assert program_name("/srv/venv/bin/knock") == "knock"
    assert program_name("/usr/bin/python3") == "knock"
    usage = knock_parser("knocknft-knock").format_usage()
    assert re.findall(r"(?m)^(?:usage:)?\s*knock\b", usage) == []
    assert usage.count("knocknft-knock [") == 3
    synopsis = plain(DOCS[f"man/{KNOCK_NAME}.1"]).split(".SH SYNOPSIS\n.nf\n")[1]
    assert synopsis.startswith(f"{KNOCK_NAME} [-u]")
    assert f"\n{KNOCK_NAME} [-4|-6] [-v] --door NAME" in synopsis


def test_knocknft_yaml_5_explains_every_key() -> None:
    page = plain(DOCS["man/knocknft.yaml.5"])
    for section in SECTIONS:
        for key in section.keys:
            assert f"\n{key.name} (default: {key.default})" in page, key.name


def test_the_example_in_knocknft_yaml_5_is_a_config_check_accepts() -> None:
    page = DOCS["man/knocknft.yaml.5"]
    example = page.split(".SH EXAMPLE\n.nf\n")[1].split("\n.fi\n")[0]
    config = parse_config(example.replace("\\-", "-"), "knocknft.yaml.5").config
    assert [d.name for d in config.doors] == ["ssh"]


@pytest.mark.skipif(MAN is None, reason="man is not installed")
@pytest.mark.parametrize("name", [n for n in DOCS if n.startswith("man/")])
def test_man_renders_the_page_without_a_warning(name: str, tmp_path: Path) -> None:
    page = tmp_path / Path(name).name
    page.write_text(DOCS[name])
    result = subprocess.run(
        [str(MAN), "--warnings", "-E", "UTF-8", "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "NAME" in result.stdout


def complete(tmp_path: Path, script: str, words: list[str]) -> list[str]:
    """What bash offers for `words` (the last one being typed), with the generated script."""
    (tmp_path / "a file").write_text("")
    source = tmp_path / "completion.bash"
    source.write_text(DOCS[script])
    func = re.search(r"complete -F (\S+)", DOCS[script])
    assert func is not None
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source '{source}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        f"{func.group(1)}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert result.stderr == ""
    return sorted(line for line in result.stdout.splitlines() if line)


def test_bash_completes_commands_options_and_paths(tmp_path: Path) -> None:
    program = knocknft_program()
    assert complete(tmp_path, "bash/knocknft", ["knocknft", ""]) == sorted(
        c.name for c in program.commands
    )
    assert complete(tmp_path, "bash/knocknft", ["knocknft", "ap"]) == ["apply"]
    assert complete(tmp_path, "bash/knocknft", ["knocknft", "apply", "--c"]) == [
        "--config",
        "--confirm",
    ]
    assert complete(tmp_path, "bash/knocknft", ["knocknft", "check", "-c", "a"]) == ["a file"]
    # A value that is no path is not completed as one.
    assert complete(tmp_path, "bash/knocknft", ["knocknft", "apply", "--confirm", "a"]) == []
    assert "--udp" in complete(tmp_path, f"bash/{KNOCK_NAME}", [KNOCK_NAME, "--u"])


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize("name", [n for n in DOCS if n.startswith("zsh/")])
def test_the_zsh_completions_parse(name: str, tmp_path: Path) -> None:
    script = tmp_path / Path(name).name
    script.write_text(DOCS[name])
    result = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert DOCS[name].startswith(f"#compdef {Path(name).name[1:]}\n")
