"""Config text built to break the parser (nesting thousands deep, alias bombs, huge files, bytes
that are not UTF-8, NUL, YAML tags) ends in a ConfigError naming the file and a line, and
`check` in exit 2: never a traceback, never a hang. YAML and knockd.conf alike."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.config import MAX_CONFIG_BYTES, parse_config
from knocknft.errors import ConfigError

runner = CliRunner()

DOOR = "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 30s\n"


def _alias_bomb() -> str:
    """One list of 1000 ports, named by 300 doors: a 20 kB file that walks as 300,000 values."""
    ports = ", ".join(str(1000 + i) for i in range(1000))
    doors = [f"  d0:\n    sequence: [1, 2/udp, 3]\n    close: &big [{ports}]\n"]
    doors += [f"  d{i}:\n    sequence: [1, 2/udp, 3]\n    close: *big\n" for i in range(1, 300)]
    return "doors:\n" + "".join(doors)


# (what, the file's bytes, the line the error must name)
HOSTILE: list[tuple[str, bytes, int]] = [
    ("flow lists nested 5000 deep", b"doors: " + b"[" * 5000 + b"]" * 5000 + b"\n", 1),
    (
        "block lists nested 1000 deep",
        b"doors:\n" + b"".join(b" " * i + b"-\n" for i in range(1, 1000)),
        65,
    ),
    ("mappings nested 2000 deep", b"doors: " + b"{a: " * 2000 + b"}" * 2000 + b"\n", 1),
    ("an alias bomb", _alias_bomb().encode(), 0),  # the line of whichever value overflows
    ("Latin-1 text", DOOR.replace("ssh", "s\xe9h").encode("latin-1"), 2),
    ("a lone continuation byte", DOOR.encode() + b"# \x80\n", 6),
    ("a NUL byte", DOOR.replace("30s", "30s\0").encode(), 5),
    ("a control character", DOOR.replace("30s", "3\x010s").encode(), 5),
    ("a python tag", DOOR.replace("30s", "!!python/object:os.system id").encode(), 5),
    ("a binary tag", DOOR.replace("30s", "!!binary MzBz").encode(), 5),
    ("a tag on a mapping", DOOR.replace("  ssh:\n", "  ssh: !!set\n").encode(), 2),
    ("a tag on a list", DOOR.replace("open: [22]", "open: !!omap [22]").encode(), 4),
    ("two documents", (DOOR + "---\n" + DOOR).encode(), 6),
    ("too big", DOOR.encode() + b"#" * MAX_CONFIG_BYTES + b"\n", 1),
    ("a merge key", DOOR.replace("    open_for: 30s\n", "    <<: {open_for: 30s}\n").encode(), 5),
    ("1001 doors", ("doors:\n" + "".join(f"  d{i}: {{}}\n" for i in range(1001))).encode(), 2),
]


@pytest.mark.parametrize(("what", "data", "line"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_yaml_is_a_located_error_at_check(
    what: str, data: bytes, line: int, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    started = time.monotonic()
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert time.monotonic() - started < 3, "no hang"
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"error: {path}:{line or ''}" in result.stderr
    assert "Traceback" not in result.output


def test_a_reload_sees_the_same_errors_as_check() -> None:
    """The daemon's reload parses text with parse_config: deep nesting is a ConfigError there."""
    with pytest.raises(ConfigError) as caught:
        parse_config("doors: " + "[" * 100_000, "c.yaml")
    assert caught.value.problems[0].line == 1


KNOCKD = (
    "[options]\n  LogFile = /tmp/k.log\n[openSSH]\n  Sequence = 7000,8000,9000\n  Command = {}\n"
)


@pytest.mark.parametrize(
    ("what", "data", "line"),
    [
        ("a NUL in a command", KNOCKD.format("echo\0 %IP%").encode(), 5),
        ("an escape in a command", KNOCKD.format("echo \x1b[2J").encode(), 5),
        ("Latin-1", KNOCKD.format("echo caf\xe9").encode("latin-1"), 5),
        ("too big", KNOCKD.format("true").encode() + b"#" * MAX_CONFIG_BYTES, 1),
        (
            "an injected interface",
            KNOCKD.replace("LogFile = /tmp/k.log", 'Interface = x" }').encode(),
            2,
        ),
        (
            "a wildcard interface",
            KNOCKD.replace("LogFile = /tmp/k.log", "Interface = e*").encode(),
            2,
        ),
    ],
)
def test_hostile_knockd_conf_is_a_located_error_at_check(
    what: str, data: bytes, line: int, tmp_path: Path
) -> None:
    path = tmp_path / "knockd.conf"
    path.write_bytes(data)
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}:{line}: " in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "yaml_text",
    [
        'options:\n  always_allow: ["fe80::1%eth0"]\n' + DOOR,
        DOOR + '    target: "fe80::2%lo"\n',
    ],
)
def test_an_ipv6_scope_id_is_refused_at_its_line(yaml_text: str) -> None:
    # Python's ipaddress reads `fe80::1%eth0`; the text must never reach an nft script.
    with pytest.raises(ConfigError, match="scope id"):
        parse_config(yaml_text, "scoped.yaml")
