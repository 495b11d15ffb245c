"""options.knock_reply: parsed with a located error, and rendered so that a knock is logged
before it is answered, within one limit, with nothing left to fall through to the gate."""

from __future__ import annotations

import pytest

from knocknft.config import parse_config
from knocknft.core.ruleset import render_ruleset
from knocknft.errors import ConfigError
from tests.unit.support import GOOD

REJECT = GOOD.replace("options:\n", "options:\n  knock_reply: reject\n")


def rules_of(text: str, chain: str) -> list[str]:
    prefix = f"add rule inet knocknft {chain} "
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def test_drop_is_the_default_and_reject_is_read() -> None:
    assert parse_config(GOOD).config.options.knock_reply == "drop"
    assert parse_config(REJECT).config.options.knock_reply == "reject"


def test_an_unknown_reply_is_an_error_at_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(REJECT.replace("reject", "refuse"), "cfg.yaml")
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.key) == ("cfg.yaml", 2, "options.knock_reply")
    assert "reject" in problem.hint


def test_reject_logs_the_knock_then_answers_within_one_limit() -> None:
    text = render_ruleset(parse_config(REJECT).config)
    (knock,) = [r for r in rules_of(text, "input") if "log group" in r]
    assert knock.index("log group") < knock.index("jump knock_reply")
    reply = rules_of(text, "knock_reply")
    assert reply[0].startswith("limit rate over 20/second burst 20 packets")
    assert reply[0].split(" comment ")[0].endswith("drop"), "over the limit: dropped"
    assert reply[1:] == [
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx port-unreachable",
    ], "every path ends in the chain: a knock never returns to the input chain"
    # The chain is declared before the rule that jumps to it.
    lines = text.splitlines()
    assert lines.index("add chain inet knocknft knock_reply") < lines.index(
        f"add rule inet knocknft input {knock}"
    )


def test_drop_removes_a_reply_chain_left_by_an_earlier_reject() -> None:
    lines = render_ruleset(parse_config(GOOD).config).splitlines()
    assert lines.count("delete chain inet knocknft knock_reply") == 1
    assert (
        lines[lines.index("delete chain inet knocknft knock_reply") - 2]
        == "add chain inet knocknft knock_reply"
    )
    assert not any("reject" in line or "jump" in line for line in lines)
