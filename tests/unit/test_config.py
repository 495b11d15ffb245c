"""The config model: every error an admin can make is reported with file, line, key and a fix."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from knocknft.config import (
    DEFAULT_CMD_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SEQ_TIMEOUT,
    PortSpec,
    RateLimit,
    TcpFlags,
    load_config,
    parse_config,
)
from knocknft.errors import ConfigError
from tests.unit.support import CLOSING, GOOD, errors_of, only_error


def warnings_of(text: str) -> list[str]:
    return [str(w) for w in parse_config(textwrap.dedent(text), "cfg.yaml").warnings]


def test_good_config_builds_the_model() -> None:
    loaded = parse_config(GOOD, "cfg.yaml")
    cfg = loaded.config
    assert cfg.options.nflog_group == 9
    assert cfg.options.interfaces == ("eth0", "wg*")
    (door,) = cfg.doors
    assert door.sequence == (PortSpec(7000, "tcp"), PortSpec(9000, "udp"), PortSpec(8000, "tcp"))
    assert door.seq_timeout == 5
    assert door.tcpflags == TcpFlags(required=0x02, forbidden=0x10)
    assert door.open == (PortSpec(22, "tcp"),)
    assert door.open_for == 30
    assert loaded.warnings == ()


def test_defaults_follow_knockd() -> None:
    cfg = parse_config(
        "doors:\n  x:\n    sequence: [9000/udp, 7000, 8000/udp]\n    start_command: 'true'\n"
    ).config
    door = cfg.doors[0]
    assert door.seq_timeout == DEFAULT_SEQ_TIMEOUT == 25
    assert door.cmd_timeout == DEFAULT_CMD_TIMEOUT == 10
    assert cfg.options.table == "knocknft"
    assert cfg.options.nflog_group == 7
    assert cfg.options.interfaces == ()


def test_unknown_key_suggests_the_right_one() -> None:
    p = only_error(GOOD.replace("seq_timeout", "seq_timout"))
    assert (p.file, p.line, p.key) == ("cfg.yaml", 7, "doors.ssh.seq_timout")
    assert "unknown key" in p.message
    assert "seq_timeout" in p.hint


def test_unknown_option_key() -> None:
    p = only_error(GOOD.replace("nflog_group", "nflog_grup"))
    assert p.line == 2 and "nflog_group" in p.hint


def test_port_out_of_range() -> None:
    p = only_error(GOOD.replace("8000]", "70000]"))
    assert p.line == 6
    assert p.key == "doors.ssh.sequence[2]"
    assert "70000" in p.message and "1 to 65535" in p.hint


def test_icmp_is_not_a_knock_protocol() -> None:
    p = only_error(GOOD.replace("9000/udp", "8000/icmp"))
    assert p.key == "doors.ssh.sequence[1]"
    assert "icmp" in p.message and "tcp or udp" in p.hint


def test_empty_sequence() -> None:
    p = only_error(GOOD.replace("[7000/tcp, 9000/udp, 8000]", "[]"))
    assert p.key == "doors.ssh.sequence" and p.line == 6 and "empty" in p.message


def test_bad_duration() -> None:
    p = only_error(GOOD.replace("seq_timeout: 5s", "seq_timeout: 5x"))
    assert (p.line, p.key) == (7, "doors.ssh.seq_timeout")
    assert "'5x' is not a duration" in p.message and "30s" in p.hint


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800)]
)
def test_durations(text: str, seconds: int) -> None:
    cfg = parse_config(GOOD.replace("open_for: 30s", f"open_for: {text}")).config
    assert cfg.doors[0].open_for == seconds


def test_open_without_open_for() -> None:
    p = only_error(GOOD.replace("    open_for: 30s\n", ""))
    assert (p.line, p.key) == (9, "doors.ssh.open")
    assert "open_for" in p.message and "open_for: 30s" in p.hint


def test_door_that_grants_nothing() -> None:
    p = only_error(GOOD.replace("    open: [22/tcp]\n    open_for: 30s\n", ""))
    assert (p.line, p.key) == (5, "doors.ssh")
    assert "neither open, close, deny_for nor a start_command" in p.message


def test_open_for_without_open() -> None:
    text = GOOD.replace("    open: [22/tcp]\n", "    start_command: 'true'\n")
    p = only_error(text)
    assert p.key == "doors.ssh.open_for" and "nothing to time" in p.message


def test_not_yaml() -> None:
    p = only_error("doors:\n  ssh: [\n")
    assert "not valid YAML" in p.message and p.line is not None


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    (p,) = info.value.problems
    assert p.file.endswith("missing.yaml") and "cannot read" in p.message and "-c FILE" in p.hint


def test_every_error_is_reported_at_once() -> None:
    text = GOOD.replace("8000]", "70000]").replace("seq_timeout: 5s", "seq_timeout: 5x")
    keys = {p.key for p in errors_of(text)}
    assert keys == {"doors.ssh.sequence[2]", "doors.ssh.seq_timeout"}


def test_repeated_key_is_an_error() -> None:
    p = only_error(GOOD + "    open_for: 1m\n")
    assert p.key == "doors.ssh.open_for" and "twice" in p.message and "line 10" in p.message


def test_knock_port_that_is_also_protected() -> None:
    p = only_error(GOOD.replace("[22/tcp]", "[7000/tcp]"))
    assert p.key == "doors.ssh.open" and "both a knock port and a protected" in p.message


def test_sequence_and_one_time_are_exclusive(tmp_path: Path) -> None:
    otp = tmp_path / "ssh.seq"
    otp.write_text(" 1000,2000:udp,3000\n")
    p = only_error(
        GOOD.replace("    seq_timeout", f"    one_time_sequences: {otp}\n    seq_timeout")
    )
    assert "either sequence or one_time_sequences" in p.message


def test_one_time_file_is_read_skipping_used_lines(tmp_path: Path) -> None:
    otp = tmp_path / "ssh.seq"
    otp.write_text("#000,2000,3000\n\n 4000:udp,5000,6000/udp\n 7001,7002,7003\n")
    text = GOOD.replace("sequence: [7000/tcp, 9000/udp, 8000]", f"one_time_sequences: {otp}")
    door = parse_config(text).config.doors[0]
    assert [s.line for s in door.one_time] == [3, 4]
    assert door.one_time[0].steps == (PortSpec(4000, "udp"), PortSpec(5000), PortSpec(6000, "udp"))
    assert PortSpec(7003) in door.knock_ports and PortSpec(2000) not in door.knock_ports


def test_missing_one_time_file_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace(
        "sequence: [7000/tcp, 9000/udp, 8000]", f"one_time_sequences: {tmp_path / 'nope'}"
    )
    p = only_error(text)
    assert p.key == "doors.ssh.one_time_sequences" and "cannot read" in p.message


@pytest.mark.parametrize(
    ("flags", "required", "forbidden"),
    [("syn", 0x02, 0), ("syn,!ack", 0x02, 0x10), ("syn, ack", 0x12, 0), ("!rst,fin", 0x01, 0x04)],
)
def test_tcpflags(flags: str, required: int, forbidden: int) -> None:
    cfg = parse_config(GOOD.replace("syn,!ack", f'"{flags}"')).config
    assert cfg.doors[0].tcpflags == TcpFlags(required, forbidden)


def test_unquoted_leading_bang_is_explained() -> None:
    p = only_error(GOOD.replace("syn,!ack", "!ack,syn"))
    assert p.key == "doors.ssh.tcpflags" and "as a tag" in p.message
    assert 'tcpflags: "!ack,syn"' in p.hint


def test_bad_tcpflag() -> None:
    p = only_error(GOOD.replace("syn,!ack", "syn,!akc"))
    assert p.key == "doors.ssh.tcpflags" and "'!akc' is not a TCP flag" in p.message


def test_tcpflags_match_per_bit() -> None:
    flags = TcpFlags(required=0x02, forbidden=0x10)
    assert flags.matches(0x02)
    assert flags.matches(0x02 | 0x40 | 0x80)  # ECN bits ignored unless named
    assert not flags.matches(0x12)  # SYN+ACK
    assert not flags.matches(0x10)


def test_target_must_be_an_address() -> None:
    p = only_error(GOOD + "    target: example.org\n")
    assert p.key == "doors.ssh.target" and "not an IP address" in p.message
    cfg = parse_config(GOOD + "    target: 2001:db8::1\n").config
    assert cfg.doors[0].target == ipaddress.ip_address("2001:db8::1")


def test_bad_interface_name() -> None:
    p = only_error(GOOD.replace("[eth0, wg*]", "[eth0, a-very-long-interface-name]"))
    assert p.key == "options.interfaces[1]"


def test_no_doors() -> None:
    p = only_error("options:\n  nflog_group: 3\n")
    assert "no doors" in p.message


def test_weak_sequences_warn_but_pass() -> None:
    text = """\
    doors:
      short:
        sequence: [7000, 8000]
        open: [22]
        open_for: 10s
      long:
        sequence: [7000, 8000, 9000, 6000]
        open: [80]
        open_for: 10s
    """
    warnings = "\n".join(warnings_of(text))
    assert "only 2 step(s)" in warnings
    assert "only go up" in warnings
    assert "every step is tcp" in warnings
    assert "prefix of door 'long'" in warnings


def test_always_allow_networks() -> None:
    cfg = parse_config(
        GOOD.replace("  nflog_group: 9\n", "  always_allow: [198.51.100.0/24, 2001:db8:1::/48]\n")
    ).config
    assert [str(n) for n in cfg.options.always_allow] == ["198.51.100.0/24", "2001:db8:1::/48"]


def test_problem_text_names_file_line_key_and_fix() -> None:
    p = only_error(GOOD.replace("8000]", "70000]"))
    assert str(p).startswith("cfg.yaml:6: doors.ssh.sequence[2]: port 70000 is out of range")
    assert "hint: ports are numbers from 1 to 65535" in str(p)


def test_a_door_may_only_close() -> None:
    cfg = parse_config(CLOSING).config
    assert cfg.doors[1].close == (PortSpec(22),) and cfg.doors[1].open == ()
    assert cfg.protected == {PortSpec(22)}, "closing does not protect anything by itself"


def test_closing_what_the_same_door_opens_is_an_error() -> None:
    p = only_error(
        CLOSING.replace(
            "    close: [22/tcp]\n", "    close: [22]\n    open: [22]\n    open_for: 1m\n"
        )
    )
    assert (p.line, p.key) == (8, "doors.closeSSH.close")
    assert "both opened and closed" in p.message


def test_closing_what_no_door_opens_warns() -> None:
    text = CLOSING.replace("close: [22/tcp]", "close: [2222/tcp]")
    assert any("no door opens 2222/tcp" in w for w in warnings_of(text))


SESSIONS = """\
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [22/tcp]
    open_for: 1m
    close_sessions: true
"""


def test_close_sessions_is_read_per_door() -> None:
    cfg = parse_config(SESSIONS).config
    assert cfg.doors[0].close_sessions is True
    assert cfg.sessions_closed == {PortSpec(22)}
    assert parse_config(SESSIONS.replace("true", "false")).config.sessions_closed == frozenset()


def test_close_sessions_needs_open() -> None:
    p = only_error(
        SESSIONS.replace("open: [22/tcp]\n    open_for: 1m\n", "start_command: 'true'\n")
    )
    assert (p.line, p.key) == (5, "doors.ssh.close_sessions")
    assert "nothing to close" in p.message


def test_close_sessions_on_one_of_two_doors_of_a_service_warns() -> None:
    text = SESSIONS + (
        "  other:\n    sequence: [4001/udp, 4003/tcp, 4002/udp]\n    open: [22/tcp]\n"
        "    open_for: 1m\n"
    )
    assert any(
        "doors.other.close_sessions" in w and "22/tcp is also opened" in w
        for w in warnings_of(text)
    )


def test_max_attempts_is_the_engines_cap() -> None:
    assert parse_config(GOOD).config.options.max_attempts == DEFAULT_MAX_ATTEMPTS == 65536
    text = GOOD.replace("options:\n", "options:\n  max_attempts: 4096\n")
    assert parse_config(text).config.options.max_attempts == 4096


@pytest.mark.parametrize("value", ["0", "-5", "lots", "2000000"])
def test_max_attempts_out_of_range_is_located(value: str) -> None:
    p = only_error(GOOD.replace("options:\n", f"options:\n  max_attempts: {value}\n"))
    assert (p.line, p.key) == (2, "options.max_attempts")
    assert "from 1 to 1048576" in p.message and "65536" in p.hint


RATE = GOOD.replace("options:\n", "options:\n  knock_rate_limit: 20/second\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/second", RateLimit(20, "second", 40)),
        ("20/s", RateLimit(20, "second", 40)),
        ("600 / Minute", RateLimit(600, "minute", 1200)),
        ("5/h", RateLimit(5, "hour", 10)),
    ],
)
def test_knock_rate_limit_with_its_default_burst(text: str, expected: RateLimit) -> None:
    cfg = parse_config(RATE.replace("20/second", text)).config
    assert cfg.options.knock_rate_limit == expected
    assert parse_config(GOOD).config.options.knock_rate_limit is None, "off by default"


def test_knock_rate_burst() -> None:
    text = RATE.replace("options:\n", "options:\n  knock_rate_burst: 7\n")
    assert parse_config(text).config.options.knock_rate_limit == RateLimit(20, "second", 7)


@pytest.mark.parametrize(
    ("value", "message"),
    [("20", "is not a rate"), ("20/fortnight", "is not a rate"), ("0/second", "out of range")],
)
def test_bad_knock_rate_limit_is_located(value: str, message: str) -> None:
    p = only_error(RATE.replace("20/second", value))
    assert (p.line, p.key) == (2, "options.knock_rate_limit")
    assert message in p.message and "20/second" in p.hint


def test_knock_rate_burst_needs_a_rate() -> None:
    p = only_error(GOOD.replace("options:\n", "options:\n  knock_rate_burst: 10\n"))
    assert (p.line, p.key) == (2, "options.knock_rate_burst")
    assert "no rate" in p.message and "knock_rate_limit" in p.hint


def test_a_burst_shorter_than_a_sequence_is_an_error() -> None:
    p = only_error(RATE.replace("options:\n", "options:\n  knock_rate_burst: 2\n"))
    assert (p.line, p.key) == (2, "options.knock_rate_burst")
    assert "door 'ssh''s 3 steps" in p.message and "knock_rate_burst to 6" in p.hint
    p = only_error(RATE.replace("20/second", "1/minute"))
    assert (p.line, p.key) == (2, "options.knock_rate_limit"), "the default burst of 2"


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1:9641", "127.0.0.1", 9641, "127.0.0.1:9641"),
        ("'[::1]:9641'", "::1", 9641, "[::1]:9641"),
        ("'[2001:db8::1]:80'", "2001:db8::1", 80, "[2001:db8::1]:80"),
    ],
)
def test_metrics_listen_address(text: str, host: str, port: int, shown: str) -> None:
    loaded = parse_config(GOOD.replace("options:\n", f"options:\n  metrics: {text}\n"))
    metrics = loaded.config.options.metrics
    assert metrics is not None and str(metrics.host) == host and metrics.port == port
    assert str(metrics) == shown
    assert (loaded.warnings == ()) == metrics.host.is_loopback, "warns off the loopback only"
    assert parse_config(GOOD).config.options.metrics is None, "off by default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9641", "is not ADDRESS:PORT"),
        ("localhost:9641", "does not start with an IP address"),
        ("'::1:9641'", "needs brackets"),
        ("127.0.0.1:70000", "port 70000 is out of range"),
        ("127.0.0.1:0", "port 0 is out of range"),
    ],
)
def test_bad_metrics_address_is_located(text: str, message: str) -> None:
    p = only_error(GOOD.replace("options:\n", f"options:\n  metrics: {text}\n"))
    assert (p.line, p.key) == (2, "options.metrics")
    assert message in p.message


def test_metrics_on_a_public_address_warns() -> None:
    (warning,) = warnings_of(GOOD.replace("options:\n", "options:\n  metrics: 0.0.0.0:9641\n"))
    assert "options.metrics" in warning and "open to whoever reaches" in warning
