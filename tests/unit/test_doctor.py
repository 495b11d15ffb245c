"""knocknft doctor's judgement, on listings captured from a real kernel (tests/data/firewalls:
the rulesets and their `nft -j list ruleset`): what still drops a granted client, and the fix."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from knocknft.admin import cli_common
from knocknft.admin.cli import app
from knocknft.config import Config, parse_config, parse_port_spec
from knocknft.core.doctor import Finding, diagnose
from knocknft.errors import ConfigError

FIREWALLS = Path(__file__).parents[1] / "data" / "firewalls"
MARK = "0x00001000"
CONFIG = """\
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [22/tcp, 53/udp]
    open_for: 30s
"""
runner = CliRunner()


def listing(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIREWALLS / f"{name}.json").read_text())
    return loaded


def config(text: str = CONFIG) -> Config:
    return parse_config(text, "config.yaml").config


def mark_rule(family: str, table: str, chain: str) -> dict[str, Any]:
    """As `nft insert rule ... meta mark and BIT == BIT accept` lists (iptables -m mark too)."""
    match = {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 4096]}, "right": 4096}
    expr = [{"match": match}, {"accept": None}]
    return {"rule": {"family": family, "table": table, "chain": chain, "expr": expr}}


def with_rule_first(base: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """`base` with `rule` inserted as the first rule of its chain, as `insert rule` and `-I` do."""
    fixed = copy.deepcopy(base)
    items = fixed["nftables"]
    where = [rule["rule"][k] for k in ("family", "table", "chain")]
    at = next(
        (
            i
            for i, item in enumerate(items)
            if "rule" in item and [item["rule"][k] for k in ("family", "table", "chain")] == where
        ),
        len(items),
    )
    items.insert(at, rule)
    return fixed


def fixes(findings: list[Finding]) -> list[str | None]:
    return [f.fixes.command for f in findings]


def test_debian_policy_drop_blocks_every_service_and_one_mark_rule_fixes_it() -> None:
    findings = diagnose(listing("debian"), config())
    assert [f.to_json() for f in findings] == [
        {
            "table": "inet filter",
            "chain": "input",
            "hook": "input",
            "priority": 0,
            "fix": f"nft insert rule inet filter input meta mark and {MARK} == {MARK} accept",
        }
    ]
    assert findings[0].reason == "policy drop"
    fixed = with_rule_first(listing("debian"), mark_rule("inet", "filter", "input"))
    assert diagnose(fixed, config()) == []


def test_a_port_the_admin_opens_is_no_finding() -> None:
    # debian.nft accepts 80/tcp itself: a grant for it passes as it is.
    assert diagnose(listing("debian"), config(CONFIG.replace("22/tcp, 53/udp", "80/tcp"))) == []


def test_ufw_blocks_both_families_and_the_fix_follows_its_jumps() -> None:
    findings = diagnose(listing("ufw"), config())
    assert fixes(findings) == [
        f"iptables -I INPUT -m mark --mark {MARK}/{MARK} -j ACCEPT",
        f"ip6tables -I INPUT -m mark --mark {MARK}/{MARK} -j ACCEPT",
    ]
    assert [f.fixes.kind for f in findings] == ["ufw", "ufw"]
    assert "/etc/ufw/before.rules" in findings[0].fixes.keep[0]
    assert "-A ufw6-before-input -m mark" in findings[1].fixes.keep[0]
    # Kept in before.rules, the accept sits in ufw-before-input, behind INPUT's jump: still ok.
    fixed = with_rule_first(listing("ufw"), mark_rule("ip", "filter", "ufw-before-input"))
    fixed = with_rule_first(fixed, mark_rule("ip6", "filter", "INPUT"))
    assert diagnose(fixed, config()) == []


def test_a_mark_accept_counts_where_every_packet_reaches_it_and_for_our_bit_only() -> None:
    fixed = with_rule_first(listing("ufw"), mark_rule("ip", "filter", "ufw-user-input"))
    # ufw-user-input is reached for every packet, so this one counts ...
    assert [f.chain.family for f in diagnose(fixed, config())] == ["ip6"]
    # ... but a rule for another mark bit does not.
    other = mark_rule("ip6", "filter", "INPUT")
    other["rule"]["expr"][0]["match"]["right"] = 8192
    other["rule"]["expr"][0]["match"]["left"]["&"][1] = 8192
    assert [f.chain.family for f in diagnose(with_rule_first(fixed, other), config())] == ["ip6"]


def test_dockers_input_accepts_and_is_no_finding() -> None:
    assert diagnose(listing("docker"), config()) == []


def test_our_own_table_is_never_a_finding() -> None:
    ours = copy.deepcopy(listing("debian"))
    for item in ours["nftables"]:
        if "chain" in item:
            item["chain"]["table"] = "knocknft"
        if "rule" in item:
            item["rule"]["table"] = "knocknft"
        if "table" in item and isinstance(item["table"], dict):
            item["table"]["name"] = "knocknft"
    assert diagnose(ours, config()) == []


def test_a_chain_before_ours_accepts_the_services_one_protocol_at_a_time() -> None:
    early = copy.deepcopy(listing("ufw"))
    for item in early["nftables"]:
        if "chain" in item and item["chain"]["name"] == "INPUT":
            item["chain"]["prio"] = -150  # mangle: before our chain marks anything
    findings = diagnose(early, config())
    assert fixes(findings)[:2] == [
        "iptables -I INPUT -p tcp -m multiport --dports 22 -j ACCEPT",
        "iptables -I INPUT -p udp -m multiport --dports 53 -j ACCEPT",
    ]


def test_firewalld_gets_its_nft_fix_and_the_ports_to_keep() -> None:
    chain = {
        "family": "inet",
        "table": "firewalld",
        "name": "filter_INPUT",
        "handle": 1,
        "type": "filter",
        "hook": "input",
        "prio": 10,
        "policy": "accept",
    }
    reject = [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]
    rule = {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "expr": reject}
    findings = diagnose({"nftables": [{"chain": chain}, {"rule": rule}]}, config())
    assert [f.reason for f in findings] == ["a rule drops them"]
    assert fixes(findings) == [
        f"nft insert rule inet firewalld filter_INPUT meta mark and {MARK} == {MARK} accept"
    ]
    assert findings[0].fixes.keep == (
        "firewall-cmd --permanent --add-port=22/tcp",
        "firewall-cmd --permanent --add-port=53/udp",
        "firewall-cmd --reload",
    )


def test_odd_names_get_no_command() -> None:
    odd = copy.deepcopy(listing("debian"))
    for item in odd["nftables"]:
        if "chain" in item and item["chain"]["name"] == "input":
            item["chain"]["name"] = "in;put"
    assert fixes(diagnose(odd, config())) == [None]


@pytest.mark.parametrize("name", ["debian", "ufw"])
def test_every_fix_is_plain_words_a_script_can_run(name: str) -> None:
    for command in fixes(diagnose(listing(name), config())):
        assert command is not None
        assert not set(command) & set("&|;<>()$`'\"\\\n")
        assert shlex.split(command) == command.split()


class ListingNft:
    """Just what doctor reads: our table is there, and the ruleset is `listing`."""

    def __init__(self, listed: dict[str, Any], table: bool = True) -> None:
        self.listed = listed
        self.table = table

    def list_json(self, command: str) -> dict[str, Any]:
        from knocknft.errors import TableMissing

        if command == "list ruleset":
            return self.listed
        if not self.table:
            raise TableMissing("No such file or directory")
        return {"nftables": []}


def run_doctor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nft: ListingNft, *args: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    monkeypatch.setattr(cli_common, "nft_factory", lambda: nft)
    return runner.invoke(app, ["doctor", "-c", str(path), *args])


def test_doctor_json_and_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = run_doctor(monkeypatch, tmp_path, ListingNft(listing("ufw")), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [f["table"] for f in report["findings"]] == ["ip filter", "ip6 filter"]
    result = run_doctor(monkeypatch, tmp_path, ListingNft(listing("docker")), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "findings": []}


def test_doctor_text_names_the_chain_and_how_to_keep_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = run_doctor(monkeypatch, tmp_path, ListingNft(listing("debian")))
    assert result.exit_code == 1
    assert "table inet filter, chain input (hook input, priority 0): policy drop" in result.stdout
    assert "/etc/nftables.conf" in result.stdout


def test_doctor_without_our_table_is_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = run_doctor(monkeypatch, tmp_path, ListingNft(listing("debian"), table=False))
    assert result.exit_code == 1
    assert "knocknft apply" in result.stderr


def test_doctor_with_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("options:\n  grant_mark: 0x3000\n")
    result = runner.invoke(app, ["doctor", "-c", str(path)])
    assert result.exit_code == 2
    assert "single mark bit" in result.stderr


def test_grant_mark_is_one_bit_and_both_the_table_and_the_fix_use_it() -> None:
    from knocknft.core.ruleset import render_ruleset

    cfg = config("options:\n  grant_mark: 0x20000\n" + CONFIG)
    assert cfg.options.grant_mark == 0x20000
    assert "@allow4 meta mark set meta mark | 0x00020000 accept" in render_ruleset(cfg)
    assert fixes(diagnose(listing("debian"), cfg)) == [
        "nft insert rule inet filter input meta mark and 0x00020000 == 0x00020000 accept"
    ]
    assert config().options.grant_mark == 0x1000
    for bad in ("0", "0x3000", "1<<4", "0x100000000"):
        with pytest.raises(ConfigError, match="single mark bit"):
            config(f"options:\n  grant_mark: '{bad}'\n" + CONFIG)


WEB = CONFIG.replace("open: [22/tcp, 53/udp]", "open: [22/tcp, 8080/tcp]")


def test_a_port_docker_publishes_is_checked_on_the_forward_hook_and_fixed_in_docker_user() -> None:
    findings = diagnose(listing("docker"), config(WEB))
    assert [(f.chain.table, f.chain.name, f.chain.hook, f.services) for f in findings] == [
        ("filter", "FORWARD", "forward", (parse_port_spec("8080/tcp"),))
    ], "22/tcp is not published: input only, which Docker accepts"
    assert (
        findings[0].fixes.command
        == f"iptables -I DOCKER-USER -m mark --mark {MARK}/{MARK} -j ACCEPT"
    )
    fixed = with_rule_first(listing("docker"), mark_rule("ip", "filter", "DOCKER-USER"))
    assert diagnose(fixed, config(WEB)) == []


def router(forward_rule: list[dict[str, Any]]) -> dict[str, Any]:
    """A router's nft port forward: `tcp dport 8080 dnat to 192.0.2.10:80`, and a forward chain
    with policy drop holding `forward_rule`."""

    def chain(family: str, table: str, name: str, *, kind: str, hook: str, prio: int) -> Any:
        return {
            "chain": {
                "family": family,
                "table": table,
                "name": name,
                "type": kind,
                "hook": hook,
                "prio": prio,
                "policy": "drop" if hook == "forward" else "accept",
            }
        }

    def rule(family: str, table: str, name: str, expr: list[dict[str, Any]]) -> Any:
        return {"rule": {"family": family, "table": table, "chain": name, "expr": expr}}

    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    return {
        "nftables": [
            chain("ip", "nat", "prerouting", kind="nat", hook="prerouting", prio=-100),
            rule(
                "ip",
                "nat",
                "prerouting",
                [
                    {"match": {"op": "==", "left": dport, "right": 8080}},
                    {"dnat": {"addr": "192.0.2.10", "port": 80}},
                ],
            ),
            chain("inet", "filter", "forward", kind="filter", hook="forward", prio=0),
            rule("inet", "filter", "forward", forward_rule),
        ]
    }


def test_a_router_port_forward_is_judged_on_the_port_it_is_sent_on_to() -> None:
    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    to_80: list[dict[str, Any]] = [
        {"match": {"op": "==", "left": dport, "right": 80}},
        {"accept": None},
    ]
    assert diagnose(router(to_80), config(WEB)) == []
    to_8080: list[dict[str, Any]] = [
        {"match": {"op": "==", "left": dport, "right": 8080}},
        {"accept": None},
    ]
    (finding,) = diagnose(router(to_8080), config(WEB))
    assert finding.fixes.command == (
        f"nft insert rule inet filter forward meta mark and {MARK} == {MARK} accept"
    )
    assert finding.services == (parse_port_spec("8080/tcp"),)
