"""knockd.conf -> YAML: the command-pair recognizer, and the article configs as admins wrote them.

Golden files: tests/data/knockd/<name>.conf gives <name>.yaml when knockd would start with it, or
<name>.errors (what `knocknft import` says, exit 2) when knockd refuses it. Set
KNOCKNFT_UPDATE_GOLDEN=1 to rewrite them after an intended change, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knocknft.config import PortSpec, parse_config
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import read_knockd_conf
from knocknft.knockd.planner import plan_door
from knocknft.knockd.recognizer import FirewallRule, Unrecognised, recognise
from knocknft.knockd.writer import import_knockd

DATA = Path(__file__).parent.parent / "data" / "knockd"
IPT = "/sbin/iptables"
SSH = (PortSpec(22),)


@pytest.mark.parametrize(
    ("command", "action", "family", "services"),
    [
        (f"{IPT} -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", "add", 4, SSH),
        (f"{IPT} -I INPUT 1 -s %IP% -p tcp --dport 22 -j ACCEPT", "add", 4, SSH),
        (f"{IPT} -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", "delete", 4, SSH),
        ("iptables -A INPUT -s %IP% -p tcp --syn --dport 22 -j ACCEPT", "add", 4, SSH),
        (
            "iptables -I INPUT -s %IP% -p tcp -m state --state NEW --dport 22 -j ACCEPT",
            "add",
            4,
            SSH,
        ),
        (
            "iptables -A INPUT -p udp -m conntrack --ctstate NEW -s %IP% --dport 1194 -j ACCEPT",
            "add",
            4,
            (PortSpec(1194, "udp"),),
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp -m multiport --dports 80,443 -j ACCEPT",
            "add",
            4,
            (PortSpec(80), PortSpec(443)),
        ),
        ("/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", "add", 6, SSH),
        ("nft add rule inet filter input ip saddr %IP% tcp dport 22 accept", "add", 4, SSH),
        (
            "nft insert rule inet filter input ip6 saddr %IP% tcp dport 22 ct state new accept",
            "add",
            6,
            SSH,
        ),
    ],
)
def test_accept_rules_for_the_knocker_are_recognised(
    command: str, action: str, family: int, services: tuple[PortSpec, ...]
) -> None:
    rule = recognise(command)
    assert isinstance(rule, FirewallRule), rule
    assert (rule.action, rule.family, rule.services) == (action, family, services)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("/etc/rc.d/init.d/knockd accept %IP%", "'knockd' is not iptables"),
        ('echo "Je suis ouvert"', "'echo' is not iptables"),
        (f"{IPT} A INPUT s %IP% p tcp \u2013dport 22 j ACCEPT", "en dash"),
        (f"{IPT} A INPUT s %IP% p tcp --dport 22 j ACCEPT", "iptables rejects 'A'"),
        (f"{IPT} -A FORWARD -s %IP% -p tcp --dport 22 -j ACCEPT", "chain FORWARD"),
        (f"{IPT} -A INPUT -s %IP% -p tcp --dport 22 -j LOG", "verdict is LOG"),
        (f"{IPT} -I INPUT -s %IP% -p tcp -j DROP", "names no destination port"),
        (f"{IPT} -A INPUT -p tcp --dport 22 -j ACCEPT", "source (-s %IP%)"),
        (f"{IPT} -A INPUT -s %IP% -d 198.18.0.1 -p tcp --dport 22 -j ACCEPT", "option -d"),
        (f"{IPT} -A INPUT -s %IP% -p tcp --dport 6000:6010 -j ACCEPT", "a range"),
        (f"{IPT} -D INPUT 3", "rule number"),
        (f"{IPT} -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT; logger hi", "shell construct"),
        ("nft delete rule inet filter input handle 7", "handle"),
        ("nft add element inet filter allowed { %IP% }", "your own ruleset"),
    ],
)
def test_other_commands_are_not_recognised_and_say_why(command: str, reason: str) -> None:
    result = recognise(command)
    assert isinstance(result, Unrecognised) and reason in result.reason, result


def door_plan(**commands: str) -> tuple[str, tuple[PortSpec, ...], str]:
    text = "[d]\n  Sequence = 1,2,3\n" + "".join(f"  {k} = {v}\n" for k, v in commands.items())
    conf = read_knockd_conf(text)
    plan = plan_door(conf.config.doors[0], conf.door_lines[0])
    return plan.kind, plan.services, plan.reason


ADD = f"{IPT} -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"
DEL = ADD.replace("-A", "-D")
ADD6 = ADD.replace("iptables", "ip6tables")
DEL6 = DEL.replace("iptables", "ip6tables")


@pytest.mark.parametrize(
    ("commands", "kind", "reason"),
    [
        ({"Start_Command": ADD, "Stop_Command": DEL}, "timed", ""),
        ({"Command": ADD.replace("-A", "-I"), "Stop_Command": DEL}, "timed", ""),
        (
            {
                "Start_Command": ADD,
                "Stop_Command": DEL,
                "Start_Command_6": ADD6,
                "Stop_Command_6": DEL6,
            },
            "timed",
            "",
        ),
        ({"Command": ADD}, "opens", ""),
        ({"Command": DEL}, "closes", ""),
        ({"Stop_Command": DEL}, "nothing", ""),
        (
            {"Start_Command": ADD, "Stop_Command": DEL.replace("22", "2222")},
            "verbatim",
            "does not delete the rule",
        ),
        (
            {"Start_Command": ADD, "Stop_Command": DEL.replace("INPUT", "ssh_in")},
            "verbatim",
            "chain ssh_in",
        ),
        (
            {"Start_Command": ADD.replace("tcp", "tcp --syn"), "Stop_Command": DEL},
            "verbatim",
            "identical rule",
        ),
        (
            {
                "Start_Command": ADD,
                "Stop_Command": DEL,
                "Command_6": ADD6.replace("22", "2222"),
                "Stop_Command_6": DEL6.replace("22", "2222"),
            },
            "verbatim",
            "IPv6 commands",
        ),
        (
            {"Start_Command": ADD, "Stop_Command": DEL, "Start_Command_6": "logger six"},
            "verbatim",
            "'logger'",
        ),
    ],
)
def test_a_doors_commands_pair_up_only_when_the_delete_undoes_the_add(
    commands: dict[str, str], kind: str, reason: str
) -> None:
    got_kind, services, got_reason = door_plan(**commands)
    assert got_kind == kind and reason in got_reason, got_reason
    if kind in ("timed", "opens", "closes"):
        assert services == SSH


def imported(text: str) -> tuple[str, list[str]]:
    conf = read_knockd_conf(text, "knockd.conf", read_file=lambda _: "")
    result = import_knockd(conf, "knockd.conf")
    return result.yaml, [str(p) for p in result.not_mapped]


def doors_of(yaml_text: str) -> dict[str, dict[str, object]]:
    config = parse_config(yaml_text, read_file=lambda _: " 6110,6120,6130\n").config
    return {
        d.name: {"open": d.open, "open_for": d.open_for, "close": d.close, "start": d.start_command}
        for d in config.doors
    }


def test_a_delete_with_no_matching_add_stays_a_command_and_is_reported_with_its_line() -> None:
    text = (
        f"[openSSH]\n sequence = 1,2,3\n command = {ADD}\n"
        f"[closeSSH]\n sequence = 3,2,1\n command = {DEL.replace('22', '2222')}\n"
    )
    yaml_text, notes = imported(text)
    doors = doors_of(yaml_text)
    assert doors["closeSSH"]["close"] == () and "2222" in str(doors["closeSSH"]["start"])
    assert notes == [
        "knockd.conf:6: [closeSSH] start_command: it deletes a rule no door of this file adds"
    ]
    assert "#   line 6: [closeSSH] start_command:" in yaml_text
    assert doors["openSSH"]["open"] == SSH and doors["openSSH"]["open_for"] == 3600


def golden_names() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.conf"))


def check_golden(got: str, expected: Path) -> None:
    if os.environ.get("KNOCKNFT_UPDATE_GOLDEN") == "1":
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"no golden file {expected.name}: set KNOCKNFT_UPDATE_GOLDEN=1"
    assert got == expected.read_text(encoding="utf-8")


def import_golden(text: str, name: str, suffix: str) -> list[str]:
    """Import `text`, compare with <name><suffix>.yaml or .errors; return the error messages."""
    try:
        conf = read_knockd_conf(text, f"{name}.conf", read_file=lambda _: "")
    except ConfigError as exc:
        check_golden("\n".join(map(str, exc.problems)) + "\n", DATA / f"{name}{suffix}.errors")
        return [p.message for p in exc.problems]
    result = import_knockd(conf, f"{name}.conf")
    assert doors_of(result.yaml), "the output passes knocknft check"
    check_golden(result.yaml, DATA / f"{name}{suffix}.yaml")
    return []


@pytest.mark.parametrize("name", golden_names())
def test_article_configs_import_as_expected(name: str) -> None:
    text = (DATA / f"{name}.conf").read_text(encoding="utf-8")
    errors = import_golden(text, name, "")
    if errors and all("non-breaking space" in e for e in errors):
        # What the admin gets after doing what the error says: the paste damage gone, the
        # file's own typos (a lost dash, an en dash) still there.
        assert not import_golden(text.replace("\u00a0", " "), name, ".nbsp-fixed")


def test_what_the_articles_turn_into() -> None:
    """The behaviour a migrating admin relies on, beyond the golden text."""
    pair = doors_of((DATA / "003-1-default-ssh-pair.yaml").read_text())
    assert pair["openSSH"]["open"] == SSH and pair["openSSH"]["open_for"] == 3600
    assert pair["closeSSH"]["close"] == SSH and pair["closeSSH"]["start"] is None
    timed = doors_of((DATA / "003-2-one-time-smtp.yaml").read_text())
    assert timed["opencloseSMTP"]["open"] == (PortSpec(25),)
    assert timed["opencloseSMTP"]["open_for"] == 5, "cmd_timeout becomes the grant's length"
    script = doors_of((DATA / "004-1-init-script-accept.yaml").read_text())
    assert script["opencloseSSH"]["start"] == "/etc/rc.d/init.d/knockd accept %IP%"
    opions = (DATA / "000-elliptips-opions.errors").read_text()
    assert ":2: [opions]: the door has no Sequence" in opions


@pytest.mark.parametrize(
    ("command", "family", "services"),
    [
        (f"{IPT} -I INPUT -s %IP% -j DROP", 4, ()),
        (f"{IPT} -A INPUT -s %IP% -p tcp --dport 22 -j DROP", 4, SSH),
        ("ip6tables -I INPUT 1 -s %IP% -j REJECT", 6, ()),
        ("nft add rule inet filter input ip saddr %IP% drop", 4, ()),
        ("nft insert rule ip6 filter input ip6 saddr %IP% tcp dport 22 reject", 6, SSH),
    ],
)
def test_drop_rules_for_the_knocker_are_recognised_as_bans(
    command: str, family: int, services: tuple[PortSpec, ...]
) -> None:
    rule = recognise(command)
    assert isinstance(rule, FirewallRule), rule
    assert (rule.verdict, rule.family, rule.services) == ("drop", family, services)


def test_the_universitys_banned_doors_import_as_bans() -> None:
    doors = {
        d.name: d
        for d in parse_config(
            (DATA / "004-3-banned-iptables.yaml").read_text(), read_file=lambda _: ""
        ).config.doors
    }
    ban_of = {name: (d.deny_for, d.deny) for name, d in doors.items() if d.deny_for}
    assert ban_of == {
        "banned1": (86400, "host"),  # no stop command: knockd never lifted it
        "banned2": (86400, "services"),  # drops exactly what the file's doors open
        "banned3": (3600, "host"),  # the stop command lifts it cmd_timeout later
    }
    assert all(doors[n].start_command is None for n in ban_of), "the ban replaces the command"
    # Not what a ban can say: another port, an opaque script, and lifting a ban.
    for name in ("banned4", "banned5", "unban"):
        assert doors[name].deny_for is None and doors[name].start_command


def test_a_ban_whose_sequence_begins_a_real_door_stays_a_command() -> None:
    text = (
        f"[open]\n sequence = 1,2,3\n command = {ADD}\n"
        f"[trap]\n sequence = 1,2\n command = {IPT} -I INPUT -s %IP% -j DROP\n"
    )
    yaml_text, notes = imported(text)
    assert doors_of(yaml_text)["trap"]["start"]
    assert notes == [
        "knockd.conf:6: [trap] start_command: door [open] begins with its sequence: its "
        "knockers would be banned too"
    ]
