"""knockd.conf read with knockd's grammar: case-insensitive keys, aliases, located errors."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from knocknft.config import PortSpec, TcpFlags
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import looks_like_knockd_conf, parse_knockd_conf, read_knockd_conf

KNOCKD = """\
# a comment
[options]
        UseSyslog
        LogFile = /var/log/knockd.log
        Interface = eth1

[openSSH]
        sequence    = 7000,8000:udp,9000
        SEQ_TIMEOUT = 5
        tcpflags    = syn, !ack
        Command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
        Stop_Command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
        Cmd_Timeout = 15
        Command_6   = /sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
        Target = 198.18.0.1

[closeSSH]
        Sequence = 9000,8000,7000
        Timeout = 10
        start_command = /bin/true
"""


def test_knockd_conf_is_recognised_by_its_format() -> None:
    assert looks_like_knockd_conf(KNOCKD)
    assert not looks_like_knockd_conf("options:\n  table: x\ndoors: {}\n")
    assert not looks_like_knockd_conf("[7000, 8000]\n")


def test_directives_aliases_and_case() -> None:
    config, options = parse_knockd_conf(KNOCKD, "knockd.conf")
    assert options.use_syslog and str(options.log_file) == "/var/log/knockd.log"
    assert config.options.interfaces == ("eth1",) and config.options.syslog
    ssh, close = config.doors
    assert ssh.name == "openSSH"
    assert ssh.sequence == (PortSpec(7000), PortSpec(8000, "udp"), PortSpec(9000))
    assert (ssh.seq_timeout, ssh.cmd_timeout) == (5, 15)
    assert ssh.tcpflags == TcpFlags(required=0x02, forbidden=0x10)
    assert ssh.start_command is not None and ssh.start_command.startswith("/sbin/iptables -A")
    assert ssh.start_command_6 is not None and "ip6tables" in ssh.start_command_6
    assert ssh.target == ipaddress.ip_address("198.18.0.1")
    assert ssh.open == (), "under a knockd.conf the commands are the only effect"
    assert close.seq_timeout == 10 and close.start_command == "/bin/true"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Sequence = 1,2,3\n", 1, "before any [section]"),
        ("[a]\n  Sequense = 1,2,3\n", 2, "did you mean 'sequence'?"),
        ("[a]\n  Sequence = 1,70000,3\n", 2, "port 70000 is out of range"),
        ("[a]\n  Sequence = 1,2:icmp\n", 2, "'icmp' cannot be knocked"),
        ("[a]\n  Sequence = 1,-1,3\n", 2, "'-1' is not a port number"),
        ("[a]\n  Sequence = 1,abc\n", 2, "'abc' is not a port number"),
        ("[a]\n  Seq_Timeout = 5\n", 1, "has no Sequence"),
        ("[a]\n  Sequence = 1,2\n  TCPFlags = syn,bogus\n", 3, "'bogus' is not a TCP flag"),
        # knockd reads [opions] as a door, and refuses to start: it has no sequence.
        ("[opions]\n  UseSyslog\n[b]\n  Sequence = 1,2\n", 1, "did you mean [options]?"),
        # Pasted from a web page: knockd's trim() knows ASCII white space only.
        ("[a]\n  Sequence\u00a0= 1,2\n  Command = x\n", 2, "non-breaking space (U+00A0)"),
        # A command wrapped onto a second line: knockd's "syntax error" on that line.
        ("[a]\n  Sequence = 1,2\n  Command = x -p tcp\n\ndport 21\n", 5, "not a `key = value`"),
    ],
)
def test_errors_are_located(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_knockd_conf(textwrap.dedent(text), "k.conf")
    problem = info.value.problems[0]
    assert problem.file == "k.conf" and problem.line == line
    assert message in str(problem)


def test_each_directive_keeps_its_line_and_the_later_alias_wins() -> None:
    text = "[a]\n  Start_Command = first\n  Sequence = 1,2,3\n  Command = second\n"
    conf = read_knockd_conf(text, "k.conf")
    assert conf.config.doors[0].start_command == "second", "knockd keeps the last one"
    assert conf.door_lines[0] == {"name": 1, "start_command": 4, "sequence": 3}


def test_bare_usesyslog_is_global_even_inside_a_door() -> None:
    """knockd accepts the bare word in any section and turns syslog on for the whole daemon."""
    conf = read_knockd_conf("[a]\n  UseSyslog\n  Sequence = 1,2,3\n  Command = x\n")
    assert conf.options.use_syslog and conf.config.options.syslog
    assert conf.option_lines == {"usesyslog": 2}
