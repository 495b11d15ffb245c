"""Fuzzing the config path: YAML and knockd.conf text, near-valid with hostile values or raw, and
raw bytes through `knocknft check`. Each input ends in a config (exit 0) or in a ConfigError whose
every problem names the file and a line (exit 2): never another exception, never a hang. What a
config accepts must also render: a value past `check` never fails at apply."""

from __future__ import annotations

import ipaddress
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.config import DOOR_KEYS, OPTION_KEYS, HostInterfaces
from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.ruleset import ruleset_transaction
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import OPTION_KEYS as KNOCKD_OPTION_KEYS
from knocknft.knockd.grammar import parse_any_config
from knocknft.nft.fake import FakeNft

FILE = "fuzz.conf"
KNOCKER = ipaddress.ip_address("198.18.0.2")
HOST = HostInterfaces(frozenset({"lo", "eth0"}))
# Bounded: the unit suite stays fast; a deadline per input turns a near-hang into a failure.
FAST = settings(max_examples=100, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
CLI = settings(
    max_examples=25,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)

# Values that are valid somewhere, and values built to hurt: limits and one past them, other
# scripts' digits, control characters, quotes and nft syntax, YAML syntax and tags.
HOSTILE_SCALARS = [
    "22",
    "22/tcp",
    "8000/udp",
    "65535",
    "65536",
    "0",
    "-1",
    "7d",
    "8d",
    "604800",
    "604801",
    "86400",
    "86401",
    "3650d",
    "1/day",
    "1000000/second",
    "1000001/second",
    "49",
    "50",
    "4294967",
    "4294968",
    "1048576",
    "1048577",
    "9" * 30,
    "²",
    "٣",
    "1e3",
    "0x10",
    "+5",
    "",
    " ",
    "eth0",
    "eht0",
    "wg*",
    "*",
    "lo",
    'x" } accept; add table ip evil',
    "fe80::1%eth0",
    "198.18.0.1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "198.18.0.0/15",
    "syn,!ack",
    "!ack",
    "true",
    "no",
    "~",
    "null",
    "/tmp/x",
    "relative/path",
    "127.0.0.1:9641",
    "[::1]:0",
    "a\tb",
    "\u00a0",
    "\u2028",
    "é",
    "\U0001f600",
    "{}",
    "[]",
    "- x",
    "&a x",
    "*a",
    "!!binary x",
    "!!python/object:os.system id",
    "? x",
    "%IP%",
    "; rm -rf /",
    "a" * 300,
]
scalars = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(DOOR_KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
options = st.dictionaries(st.sampled_from([*OPTION_KEYS, "bogus"]), values, max_size=5)
door = st.dictionaries(st.sampled_from([*DOOR_KEYS, "seq_timout"]), values, max_size=7)
doors = st.dictionaries(
    st.one_of(st.sampled_from(["ssh", "a" * 33, "x y", "1"]), st.text(max_size=6)),
    door,
    max_size=3,
)


# Every limit a number has, with its neighbours, in each unit a duration takes.
_LIMITS = [1, 60, 3600, 86400, 65535, 1048576, 1000000, 604800, 4294967, 2**32, 2**64]
_AROUND = sorted({n + d for n in _LIMITS for d in (-1, 0, 1)})
boundary_numbers = st.sampled_from(_AROUND).map(str) | st.tuples(
    st.sampled_from(_AROUND), st.sampled_from(["s", "m", "h", "d"])
).map(lambda nu: f"{nu[0]}{nu[1]}")
_NUMERIC_DOOR_KEYS = ("seq_timeout", "open_for", "cmd_timeout")


@st.composite
def at_a_limit_yaml(draw: st.DrawFn) -> str:
    """A working config with one number at, or next to, a limit: what `check` accepts must
    render and load."""
    number = draw(boundary_numbers)
    rate = draw(boundary_numbers.map(lambda n: n.rstrip("smhd")))
    unit = draw(st.sampled_from(["second", "minute", "hour", "day"]))
    choice = draw(st.integers(0, 7))
    options = [
        f"  nflog_group: {number if choice == 0 else 7}",
        f"  max_attempts: {number if choice == 1 else 100}",
        f"  knock_rate_limit: {rate if choice == 2 else 20}/{unit}",
        f"  knock_rate_burst: {number if choice in (2, 3) else 40}",
    ]
    keys = dict.fromkeys(_NUMERIC_DOOR_KEYS, "30s")
    if choice >= 4:
        keys[_NUMERIC_DOOR_KEYS[choice % 3]] = number
    port = number.rstrip("smhd") if choice == 7 else "22"
    door = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return (
        "options:\n" + "\n".join(options) + "\ndoors:\n  ssh:\n"
        f"    sequence: [7000/tcp, 9000/udp, 8000/tcp]\n    open: [{port}/tcp]\n{door}"
        "    stop_command: /bin/true\n"
    )


@st.composite
def near_valid_yaml(draw: st.DrawFn) -> str:
    """A working config, with some of its values swapped for hostile ones."""
    config: dict[str, object] = {
        "options": {"interfaces": ["eth0"], "nflog_group": 7},
        "doors": {
            "ssh": {
                "sequence": ["7000/tcp", "9000/udp", "8000/tcp"],
                "open": ["22/tcp"],
                "open_for": "30s",
            }
        },
    }
    config["options"].update(draw(options))  # type: ignore[attr-defined]
    config["doors"]["ssh"].update(draw(door))  # type: ignore[index]
    config["doors"].update(draw(doors))  # type: ignore[attr-defined]
    text = yaml.safe_dump(config, allow_unicode=draw(st.booleans()))
    if draw(st.booleans()):
        # A raw value, unquoted, where the emitter would have quoted it.
        key = draw(st.sampled_from(["open_for", "seq_timeout", "cmd_timeout", "tcpflags"]))
        text = text.replace("open_for: 30s", f"{key}: {draw(scalars)}", 1)
    return text


@st.composite
def near_valid_knockd_conf(draw: st.DrawFn) -> str:
    lines = ["[options]"]
    for key in draw(st.lists(st.sampled_from([*KNOCKD_OPTION_KEYS, "bogus"]), max_size=3)):
        lines.append(f"  {key} = {draw(scalars)}")
    for name in draw(st.lists(st.sampled_from(["openSSH", "x y", "optoins", ""]), max_size=3)):
        lines.append(f"[{name}]")
        lines.append(f"  Sequence = {draw(scalars)},{draw(scalars)},9000")
        keys = ["Seq_Timeout", "Cmd_Timeout", "TCPFlags", "Target", "Command", "Stop_Command"]
        for key in draw(st.lists(st.sampled_from([*keys, "One_Time_Sequences"]), max_size=4)):
            lines.append(f"  {key} = {draw(scalars)}")
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + "\n"


def _no_file(path: Path) -> str:
    raise FileNotFoundError(2, "No such file", str(path))


def check_text(text: str) -> None:
    """The config path as `check` and a reload take it: a config that also renders and loads,
    or a ConfigError whose every problem is located."""
    try:
        loaded, _ = parse_any_config(text, FILE, read_file=_no_file, host=HOST)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == FILE and problem.line is not None, problem
        return
    nft = FakeNft()
    nft.apply(ruleset_transaction(loaded.config))
    table = loaded.config.options.table
    for door in loaded.config.doors:  # the grant the daemon adds when the door opens
        grants = [Grant(KNOCKER, s, door.name, door.open_for or 1) for s in door.open]
        nft.apply(grant_transaction(table, grants))


@FAST
@given(near_valid_yaml())
def test_near_valid_yaml(text: str) -> None:
    check_text(text)


@FAST
@given(at_a_limit_yaml())
def test_numbers_at_their_limits(text: str) -> None:
    check_text(text)


@FAST
@given(near_valid_knockd_conf())
def test_near_valid_knockd_conf(text: str) -> None:
    check_text(text)


@FAST
@given(
    st.text(
        alphabet=st.sampled_from([*string.printable, "\0", "é", "[", "]", "&", "*", "!"]),
        max_size=200,
    )
)
def test_raw_text(text: str) -> None:
    check_text(text)


@FAST
@given(st.text(max_size=200))
def test_raw_unicode(text: str) -> None:
    check_text(text)


runner = CliRunner()


@CLI
@given(
    st.one_of(
        st.binary(max_size=300),
        near_valid_yaml().map(str.encode),
        near_valid_knockd_conf().map(str.encode),
    )
)
def test_check_ends_in_exit_0_or_a_located_exit_2(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config"
    path.write_bytes(data)
    result = runner.invoke(app, ["check", "--other-host", "-c", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert errors and all(line.startswith(f"error: {path}:") for line in errors)
        assert all(line[len(f"error: {path}:")].isdigit() for line in errors), result.stderr
