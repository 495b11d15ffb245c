"""Every number in a config is bounded at parse time by the limit the renderer, the transactions,
the encoders and the daemon enforce: the largest value `check` accepts renders, loads into the
fake kernel and carries a knock through the daemon to its grant; the next one is refused at
`check`, with file, line and the allowed range."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.config import (
    MAX_COMMENT_LENGTH,
    MAX_GRANT_SECONDS,
    MAX_SEQ_TIMEOUT,
    parse_config,
    parse_duration,
)
from knocknft.core.grants import Grant
from knocknft.core.ruleset import render_ruleset
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import PendingStops
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import parse_knockd_conf
from knocknft.netlink.packet import KnockPacket
from knocknft.netlink.setelem import encode_grant_batch
from tests.unit.fakes import RecordingRunner, loaded_nft

runner = CliRunner()
KNOCKER = ipaddress.ip_address("198.18.0.2")
SERVER = ipaddress.ip_address("198.18.0.1")

TEMPLATE = """\
options:
  nflog_group: {nflog_group}
  max_attempts: {max_attempts}
  knock_rate_limit: {rate}
  knock_rate_burst: {burst}
  metrics: 127.0.0.1:{metrics_port}
doors:
  ssh:
    sequence: [{knock_port}/tcp, 9000/udp, 8000/tcp]
    seq_timeout: {seq_timeout}
    open: [{open_port}/tcp]
    open_for: {open_for}
    start_command: /bin/true %IP%
    stop_command: /bin/true %IP%
    cmd_timeout: {cmd_timeout}
"""
# The line of each value in TEMPLATE, where its error must point.
LINES = {
    "nflog_group": 2,
    "max_attempts": 3,
    "rate": 4,
    "burst": 5,
    "metrics_port": 6,
    "knock_port": 9,
    "seq_timeout": 10,
    "open_port": 11,
    "open_for": 12,
    "cmd_timeout": 15,
}
DEFAULTS = {
    "nflog_group": "7",
    "max_attempts": "100",
    "rate": "20/second",
    "burst": "40",
    "metrics_port": "9641",
    "knock_port": "7000",
    "seq_timeout": "5s",
    "open_port": "22",
    "open_for": "30s",
    "cmd_timeout": "10s",
}
# (what is at its limit, the largest accepted values, the smallest refused ones)
LIMITS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("nflog_group", {"nflog_group": "65535"}, {"nflog_group": "65536"}),
    ("max_attempts", {"max_attempts": "1048576"}, {"max_attempts": "1048577"}),
    ("rate", {"rate": "1000000/second"}, {"rate": "1000001/second"}),
    ("burst", {"burst": "1000000"}, {"burst": "1000001"}),
    # A bucket that takes longer to refill than a set element may live (4294967 s).
    ("refill time", {"rate": "1/day", "burst": "49"}, {"rate": "1/day", "burst": "50"}),
    ("metrics port", {"metrics_port": "65535"}, {"metrics_port": "65536"}),
    ("knock port", {"knock_port": "65535"}, {"knock_port": "65536"}),
    ("open port", {"open_port": "65535"}, {"open_port": "65536"}),
    ("seq_timeout", {"seq_timeout": "1d"}, {"seq_timeout": "86401"}),
    ("open_for", {"open_for": "7d"}, {"open_for": "604801"}),
    ("open_for in hours", {"open_for": "168h"}, {"open_for": "169h"}),
    ("cmd_timeout", {"cmd_timeout": "7d"}, {"cmd_timeout": "604801s"}),
    ("open_for far beyond", {"open_for": "7d"}, {"open_for": "3650d"}),
    ("digits beyond any int", {"open_for": "7d"}, {"open_for": "9" * 5000}),
]


def config_text(values: dict[str, str]) -> str:
    return TEMPLATE.format(**{**DEFAULTS, **values})


@pytest.mark.parametrize(("what", "largest", "refused"), LIMITS, ids=[x[0] for x in LIMITS])
def test_the_largest_value_runs_and_the_next_is_refused_at_check(
    what: str, largest: dict[str, str], refused: dict[str, str], tmp_path: Path
) -> None:
    config = parse_config(config_text(largest)).config
    door = config.doors[0]
    nft = loaded_nft(config)  # rendered, every value checked, applied to the fake kernel
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0)
    steps = door.sequence
    daemon.handle_packets(
        KnockPacket(KNOCKER, SERVER, s.protocol, s.port, 0x02, 2, 0.0, sport=40000 + i, seq=1)
        for i, s in enumerate(steps)
    )
    assert f"timeout {door.open_for}s" in nft.scripts[-1], "the grant reached the kernel"
    assert daemon.pending.next_due() == door.cmd_timeout, "the stop command is scheduled"
    grants = [Grant(KNOCKER, s, door.name, door.open_for or 0) for s in door.open]
    assert encode_grant_batch(config.options.table, grants, 1)[0], "the fast path encodes it"

    path = tmp_path / "config.yaml"
    path.write_text(config_text(refused))
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    line = LINES[next(iter(refused))] if what != "refill time" else LINES["rate"]
    assert f"error: {path}:{line}: " in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("key", "largest", "refused"),
    [
        ("Seq_Timeout", MAX_SEQ_TIMEOUT, MAX_SEQ_TIMEOUT + 1),
        ("Cmd_Timeout", MAX_GRANT_SECONDS, MAX_GRANT_SECONDS + 1),
    ],
)
def test_knockd_conf_timeouts_share_the_limits(key: str, largest: int, refused: int) -> None:
    conf = "[openSSH]\n  Sequence = 7000,8000,9000\n  Start_Command = /bin/true\n  {}\n"
    config, _ = parse_knockd_conf(conf.format(f"{key} = {largest}"))
    assert largest in (config.doors[0].seq_timeout, config.doors[0].cmd_timeout)
    with pytest.raises(ConfigError) as caught:
        parse_knockd_conf(conf.format(f"{key} = {refused}"), "k.conf")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("k.conf", 4)
    assert f"from 1 to {largest}" in problem.message


@pytest.mark.parametrize("text", ["²", "٣", "1e3", "+5", "0x10", "5 s s", "-1"])
def test_only_ascii_digits_are_numbers(text: str) -> None:
    """str.isdigit takes '²', which int() refuses: such text is an error, never a traceback."""
    config = config_text({"nflog_group": text})
    with pytest.raises(ConfigError):
        parse_config(config)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text + "s")


def test_the_error_names_the_allowed_range() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text({"open_for": "8d"}), "c.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith("c.yaml:12: doors.ssh.open_for: '8d' is too long")
    assert "1s to 7d (604800s)" in problem.hint


def test_a_knock_rule_for_many_doors_keeps_its_comment_within_nfts_limit() -> None:
    doors = "".join(
        f"  {'d' * 28}{i:04d}:\n    sequence: [{7000 + i}, {8000 + i}/udp, 9000]\n"
        "    start_command: /bin/true\n"
        for i in range(10)
    )
    config = parse_config("doors:\n" + doors).config
    loaded_nft(config)  # every quoted text passed the length check on its way in
    (knock_rule,) = [line for line in render_ruleset(config).splitlines() if "log group" in line]
    comment = knock_rule.split(' comment "', 1)[1].rstrip('"')
    assert len(comment) == MAX_COMMENT_LENGTH and comment.startswith("knock: dddd")
    assert comment.endswith("...")
