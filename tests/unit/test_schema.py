"""The config's JSON Schema: the repository's copy is what the reference generates, every config
`knocknft check` accepts passes it (the example, the render scenarios), and configs `check` refuses
for a reason a schema can see are refused by it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from knocknft.config import parse_config
from knocknft.config.schema import config_schema
from knocknft.errors import ConfigError
from scripts.gendocs import schema_text
from tests.scenarios import SCENARIOS, scenario_names

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "packaging" / "knocknft.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(config_schema())

DOOR = "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n"


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server hands it to the schema: a date stays text."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def schema_errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(yaml.load(text, EditorLoader))]


def check_refuses(text: str) -> bool:
    try:
        parse_config(text, "config.yaml", read_file=lambda _: "7000,8000,9000\n")
    except ConfigError:
        return True
    return False


def test_the_schema_is_valid_and_the_shipped_copy_is_up_to_date() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())
    assert json.loads(SHIPPED.read_text()) == config_schema(), "run `make schema`"
    assert SHIPPED.read_text() == schema_text()


def test_the_example_config_passes() -> None:
    assert schema_errors((REPO / "config.example.yaml").read_text()) == []


@pytest.mark.parametrize("name", scenario_names())
def test_every_config_check_accepts_passes(name: str) -> None:
    assert schema_errors((SCENARIOS / name / "config.yaml").read_text()) == []


BROKEN = {
    "an unknown option": "options:\n  nflog_grup: 7\n" + DOOR + "    open: 22\n    open_for: 5\n",
    "an unknown door key": DOOR + "    open: 22\n    open_for: 5\n    opne_for: 5\n",
    "no doors": "options:\n  nflog_group: 7\n",
    "a door without a sequence": "doors:\n  ssh:\n    open: [22]\n    open_for: 30s\n",
    "a door that does nothing": DOOR,
    "open without open_for": DOOR + "    open: [22]\n",
    "open_for without open": DOOR + "    start_command: true\n    open_for: 30s\n",
    "a door that opens and bans": DOOR + "    open: [22]\n    open_for: 5\n    deny_for: 1h\n",
    "deny without deny_for": DOOR + "    start_command: 'true'\n    deny: host\n",
    "a port out of range": DOOR + "    open: [70000]\n    open_for: 5\n",
    "a protocol that is not tcp or udp": DOOR + "    open: [22/sctp]\n    open_for: 5\n",
    "a duration that is no duration": DOOR + "    open: [22]\n    open_for: 5 minutes\n",
    "a grant longer than a week": DOOR + "    open: [22]\n    open_for: 604801\n",
    "a bad tcp flag": DOOR + "    open: [22]\n    open_for: 5\n    tcpflags: syn,!bogus\n",
    "a relative path": "options:\n  log_file: knocknft.log\n"
    + DOOR
    + "    open: 22\n    open_for: 5\n",
    "a bad door name": "doors:\n  -ssh:\n    sequence: [7000, 9000/udp, 8000]\n"
    "    open: 22\n    open_for: 5\n",
    "a mark of two bits": "options:\n  grant_mark: 3\n" + DOOR + "    open: 22\n    open_for: 5\n",
    "a burst without a rate": "options:\n  knock_rate_burst: 40\n"
    + DOOR
    + "    open: 22\n    open_for: 5\n",
    "an NFLOG group out of range": "options:\n  nflog_group: 65536\n"
    + DOOR
    + "    open: 22\n    open_for: 5\n",
    "a knock reply that is neither": "options:\n  knock_reply: ignore\n"
    + DOOR
    + "    open: 22\n    open_for: 5\n",
    "both a sequence and a one-time file": DOOR + "    one_time_sequences: /etc/knocknft/s\n"
    "    open: 22\n    open_for: 5\n",
}


SPA_DOORS = """\
doors:
  ssh-fwknop:
    fwknop:
      source: [any]
      key_base64: "c2VjcmV0IGtleSBvZiAzMiBieXRlcyBmb3IgYWVzIQ=="
      hmac_key_base64: "aG1hYyBrZXkgb2YgdGhpcnR5LXR3byBieXRlcyBsb25nIQ=="
      hmac_digest: sha256
      expires: 2027-06-30
    open: [22/tcp]
    open_for: 30s
    max_open_for: 5m
  ssh-keys:
    clients:
      alice-laptop:
        public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        expires: 2027-06-30
    open: [22/tcp]
    open_for: 30s
"""
BROKEN |= {
    "an SPA door with a sequence": SPA_DOORS.replace(
        "    max_open_for: 5m\n", "    max_open_for: 5m\n    sequence: [7000, 8000, 9000]\n"
    ),
    "an SPA door without open": SPA_DOORS.replace("    open: [22/tcp]\n    open_for: 30s\n", "", 1),
    "a knock door with max_open_for": DOOR + "    open: 22\n    open_for: 5\n    max_open_for: 9\n",
    "an fwknop stanza without an HMAC key": SPA_DOORS.replace("      hmac_key_base64:", "      x:"),
    "a client without a public key": SPA_DOORS.replace("        public_key:", "        key:"),
    "an unknown HMAC digest": SPA_DOORS.replace("hmac_digest: sha256", "hmac_digest: sha257"),
}


def test_spa_doors_check_accepts_pass() -> None:
    assert not check_refuses(SPA_DOORS)
    assert schema_errors(SPA_DOORS) == []


@pytest.mark.parametrize("why", sorted(BROKEN))
def test_configs_check_refuses_the_schema_refuses(why: str) -> None:
    text = BROKEN[why]
    assert check_refuses(text), f"check accepts {why}: the case is wrong"
    assert schema_errors(text) != [], why


def test_a_fixed_broken_config_passes_both() -> None:
    """The cases above fail for their one fault: with it fixed, both accept."""
    fixed: dict[str, Any] = yaml.safe_load(BROKEN["open without open_for"])
    fixed["doors"]["ssh"]["open_for"] = "30s"
    text = yaml.safe_dump(fixed)
    assert not check_refuses(text)
    assert schema_errors(text) == []
