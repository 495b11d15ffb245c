"""SPA doors in the config: fwknop stanzas and public-key clients, checked at `check` with
file:line, and the knock engine that leaves them alone."""

from __future__ import annotations

import base64
import ipaddress
import textwrap
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.config import FwknopKey, PortSpec, parse_config
from knocknft.core.engine import Engine
from knocknft.core.ruleset import render_ruleset
from knocknft.netlink.packet import KnockPacket
from tests.unit.support import errors_of, only_error

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
KEY = base64.b64encode(bytes(range(32))).decode()
HMAC_KEY = base64.b64encode(bytes(range(100, 164))).decode()
PUBLIC = base64.b64encode(bytes(range(50, 82))).decode()

SPA = f"""\
options:
  spa_port: 62300
  spa_nflog_group: 12
  spa_window: 1m
  spa_replay_cache: 5000
doors:
  ssh-fwknop:
    fwknop:
      source: [198.18.0.0/15, 2001:db8::/32]
      key_base64: "{KEY}"
      hmac_key_base64: "{HMAC_KEY}"
      hmac_digest: SHA512
      require_source_address: true
      expires: 2027-06-30
    open: [22/tcp, 53/udp]
    open_for: 30s
    max_open_for: 5m
    start_command: "logger %IP%"
  ssh-keys:
    clients:
      alice-laptop:
        public_key: "{PUBLIC}"
        expires: 2027-01-01
      bob:
        public_key: "{PUBLIC}"
        revoked: true
    open: [2222/tcp]
    open_for: 1m
  knock:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [22/tcp]
    open_for: 30s
"""


def fwknop_door(body: str, door: str = "", *, with_open: bool = True) -> str:
    """A config with one fwknop door whose stanza is `body` and whose other keys are `door`
    (and an open, unless `door` has one or not `with_open`)."""
    services = "    open: [22/tcp]\n    open_for: 30s\n"
    return f"doors:\n  ssh:\n    fwknop:\n{textwrap.indent(body, '      ')}{door}" + (
        services if with_open and "open:" not in door else ""
    )


LONG_EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
LONG_KEY = base64.b64encode(bytes(33)).decode()
KEYS = f'key_base64: "{KEY}"\nhmac_key_base64: "{HMAC_KEY}"\n'


def test_spa_doors_build_the_model() -> None:
    loaded = parse_config(SPA, "cfg.yaml")
    cfg = loaded.config
    assert (cfg.options.spa_port, cfg.options.spa_nflog_group) == (62300, 12)
    assert (cfg.options.spa_window, cfg.options.spa_replay_cache) == (60, 5000)
    fwknop, keys, knock = cfg.doors
    assert [d.name for d in cfg.spa_doors] == ["ssh-fwknop", "ssh-keys"]
    assert fwknop.is_spa and keys.is_spa and not knock.is_spa
    assert fwknop.fwknop == FwknopKey(
        source=(
            ipaddress.ip_network("198.18.0.0/15"),
            ipaddress.ip_network("2001:db8::/32"),
        ),
        key=bytes(range(32)),
        hmac_key=bytes(range(100, 164)),
        hmac_digest="sha512",
        require_source_address=True,
        expires=date(2027, 6, 30),
    )
    assert (fwknop.open, fwknop.open_for, fwknop.max_open_for) == (
        (PortSpec(22), PortSpec(53, "udp")),
        30,
        300,
    )
    alice, bob = keys.clients
    assert (alice.name, alice.public_key, alice.expires, alice.revoked) == (
        "alice-laptop",
        bytes(range(50, 82)),
        date(2027, 1, 1),
        False,
    )
    # A revoked client loads: revocation refuses its packets, not the config.
    assert bob.revoked and bob.expires is None
    assert fwknop.knock_ports == frozenset()
    assert loaded.warnings == ()


def test_defaults_are_fwknopds() -> None:
    cfg = parse_config(fwknop_door(KEYS)).config
    options, (door,) = cfg.options, cfg.doors
    assert (options.spa_port, options.spa_nflog_group, options.spa_window) == (62201, 8, 120)
    assert options.spa_replay_cache == 100_000
    assert door.fwknop is not None
    assert (door.fwknop.source, door.fwknop.hmac_digest) == ((), "sha256")
    assert (door.fwknop.require_source_address, door.fwknop.expires) == (False, None)
    assert door.max_open_for is None


def test_a_plain_key_is_its_utf8_bytes_and_base64_may_lose_its_padding() -> None:
    body = f'key: "pässword"\nhmac_key_base64: "{HMAC_KEY.rstrip("=")}"\nsource: any\n'
    (door,) = parse_config(fwknop_door(body)).config.doors
    assert door.fwknop is not None
    assert door.fwknop.key == "pässword".encode()
    assert door.fwknop.hmac_key == bytes(range(100, 164))


def test_keys_never_show_in_a_repr_or_an_error() -> None:
    (door,) = parse_config(fwknop_door(KEYS)).config.doors
    assert KEY not in repr(door) and str(bytes(range(32))) not in repr(door)
    secret = "c2VjcmV0IHNlY3JldCBzZWNyZXQ"
    for body in (
        f'key_base64: "{secret}!"\nhmac_key_base64: "{HMAC_KEY}"\n',
        f'key_base64: !tag "{secret}"\nhmac_key_base64: "{HMAC_KEY}"\n',
        f'key_base64: !!binary "{secret}"\nhmac_key_base64: "{HMAC_KEY}"\n',
        f'key: "{secret * 2}"\nhmac_key_base64: "{HMAC_KEY}"\n',
    ):
        for problem in errors_of(fwknop_door(body)):
            assert secret not in str(problem), problem


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        (
            f'key_base64: "not*base64"\nhmac_key_base64: "{HMAC_KEY}"\n',
            4,
            "doors.ssh.fwknop.key_base64",
            "not base64",
        ),
        (
            f'key_base64: "{LONG_KEY}"\nhmac_key_base64: "{HMAC_KEY}"\n',
            4,
            "doors.ssh.fwknop.key_base64",
            "33 bytes long; fwknop's keys are 1 to 32 bytes",
        ),
        (
            f'key: ""\nhmac_key_base64: "{HMAC_KEY}"\n',
            4,
            "doors.ssh.fwknop.key",
            "0 bytes long",
        ),
        (
            f'key_base64: "{KEY}"\nhmac_key_base64: "{base64.b64encode(bytes(137)).decode()}"\n',
            5,
            "doors.ssh.fwknop.hmac_key_base64",
            "1 to 136 bytes",
        ),
        (KEYS + "hmac_digest: sha224\n", 6, "doors.ssh.fwknop.hmac_digest", "not an HMAC digest"),
        (KEYS + "expires: 2027-02-30\n", 6, "doors.ssh.fwknop.expires", "not a date"),
        (KEYS + "expires: next year\n", 6, "doors.ssh.fwknop.expires", "not a date"),
        (KEYS + "source: [any, 198.18.0.0/15]\n", 6, "doors.ssh.fwknop.source", "any is listed"),
        (KEYS + "source: [198.18.0.300]\n", 6, "doors.ssh.fwknop.source[0]", "not an address"),
        # An empty list is no "any": it would take every source.
        (KEYS + "source: []\n", 6, "doors.ssh.fwknop.source", "source lists no network"),
        (KEYS + "require_source_address: maybe\n", 6, "", "not true or false"),
        (KEYS + "keys: x\n", 6, "doors.ssh.fwknop.keys", "unknown key"),
        (f'key_base64: "{KEY}"\n', 3, "doors.ssh.fwknop.hmac_key_base64", "no hmac_key_base64"),
        (
            KEYS + f'key: "{KEY}"\n',
            4,
            "doors.ssh.fwknop.key_base64",
            "give key or key_base64, not both",
        ),
        (
            f'key_base64: "{KEY}"\nhmac_key_base64: "{KEY}"\n',
            5,
            "doors.ssh.fwknop.hmac_key_base64",
            "the HMAC key is the same as the encryption key",
        ),
    ],
)
def test_a_bad_stanza_is_an_error_at_its_line(body: str, line: int, key: str, message: str) -> None:
    problem = only_error(fwknop_door(body))
    assert (problem.file, problem.line) == ("cfg.yaml", line)
    assert key in problem.key
    assert message in problem.message


@pytest.mark.parametrize(
    ("door", "line", "key", "message"),
    [
        (
            "    sequence: [7000, 8000, 9000]\n",
            6,
            "doors.ssh.sequence",
            "an SPA door (fwknop or clients) has no sequence",
        ),
        ("    seq_timeout: 5s\n", 6, "doors.ssh.seq_timeout", "has no seq_timeout"),
        ("    deny_for: 1h\n", 6, "doors.ssh.deny_for", "has no deny_for"),
        (
            "    max_open_for: 10s\n    open: [22/tcp]\n    open_for: 30s\n",
            6,
            "doors.ssh.max_open_for",
            "shorter than open_for",
        ),
        (
            f"    clients:\n      a:\n        public_key: '{PUBLIC}'\n",
            6,
            "doors.ssh.clients",
            "either fwknop or clients",
        ),
    ],
)
def test_an_spa_door_takes_only_its_keys(door: str, line: int, key: str, message: str) -> None:
    problem = only_error(fwknop_door(KEYS, door))
    assert (problem.line, problem.key) == (line, key)
    assert message in problem.message


def test_an_spa_door_needs_open() -> None:
    problem = only_error(fwknop_door(KEYS, "    start_command: 'true'\n", with_open=False))
    assert (problem.line, problem.key) == (2, "doors.ssh")
    assert "an SPA door needs open" in problem.message


def test_max_open_for_is_for_spa_doors() -> None:
    problem = only_error(
        "doors:\n  k:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n"
        "    open_for: 30s\n    max_open_for: 5m\n"
    )
    assert (problem.line, problem.key) == (6, "doors.k.max_open_for")


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ("public_key: 'AAAA'", "3 bytes, not 32"),
        ("public_key: 'AA*A'", "not base64"),
        (f"public_key: '{PUBLIC}'\n        expires: 2027-13-01", "not a date"),
        (f"public_key: '{PUBLIC}'\n        revoked: sometimes", "not true or false"),
        ("revoked: true", "no public_key"),
    ],
)
def test_a_bad_client_is_an_error(client: str, message: str) -> None:
    problem = only_error(
        f"doors:\n  k:\n    clients:\n      alice:\n        {client}\n"
        "    open: [22/tcp]\n    open_for: 30s\n"
    )
    assert problem.key.startswith("doors.k.clients.alice")
    assert message in problem.message
    assert problem.line in (4, 5, 6)


def test_a_client_name_must_be_usable_in_logs() -> None:
    problem = only_error(
        f"doors:\n  k:\n    clients:\n      'al ice;rm':\n        public_key: '{PUBLIC}'\n"
        "    open: [22/tcp]\n    open_for: 30s\n"
    )
    assert (problem.line, "not usable") == (4, "not usable")
    assert "not usable" in problem.message


@pytest.mark.parametrize(
    ("options", "line", "key", "message"),
    [
        ("  spa_nflog_group: 7\n", 2, "options.spa_nflog_group", "share NFLOG group 7"),
        ("  nflog_group: 8\n", 2, "options.nflog_group", "share NFLOG group 8"),
        ("  spa_port: 53\n", 2, "options.spa_port", "53/udp is the SPA port"),
        ("  spa_port: 0\n", 2, "options.spa_port", "not a number from 1 to 65535"),
        ("  spa_window: 2h\n", 2, "options.spa_window", "too long"),
        ("  spa_replay_cache: 0\n", 2, "options.spa_replay_cache", "not a number from 1"),
    ],
)
def test_spa_options_are_checked(options: str, line: int, key: str, message: str) -> None:
    door = "    open: [22/tcp, 53/udp]\n    open_for: 30s\n"
    problem = only_error("options:\n" + options + fwknop_door(KEYS, door))
    assert (problem.line, problem.key) == (line, key)
    assert message in problem.message


def test_the_knock_groups_may_meet_when_no_door_is_spa() -> None:
    parse_config(
        "options:\n  nflog_group: 8\ndoors:\n  k:\n    sequence: [7000, 9000/udp, 8000]\n"
        "    start_command: 'true'\n"
    )


def test_the_engine_and_ruleset_skip_spa_doors_for_knocks_but_gate_their_services() -> None:
    cfg = parse_config(SPA).config
    engine = Engine(cfg.doors)
    source = ipaddress.ip_address("198.18.0.2")
    destination = ipaddress.ip_address("198.18.0.1")
    # A packet to an SPA door's service, or to the SPA port, is no knock; the knock door works.
    for protocol, port in (("tcp", 22), ("udp", 62300), ("tcp", 2222)):
        packet = KnockPacket(source, destination, protocol, port, 2, 0, 1e3, sport=40000, seq=1)
        assert engine.on_knock(packet) == []
    assert engine.active_steps("ssh-fwknop") is None
    assert engine.active_steps("knock") == (("tcp", 7000), ("udp", 9000), ("tcp", 8000))
    script = render_ruleset(cfg)
    # Every door's open is gated, the SPA doors' services too; no door's name carries a key.
    assert "2222" in script and "53" in script
    assert KEY not in script and HMAC_KEY not in script


def test_the_example_config_s_spa_doors_load_when_uncommented() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("  # ssh-fwknop:")
    doors = "\n".join(
        line.replace("  # ", "  ", 1) if line.startswith("  #   ") or line.endswith(":") else line
        for line in text[start:].splitlines()
    )
    for name, value in (("key_base64", KEY), ("hmac_key_base64", HMAC_KEY), ("public_key", PUBLIC)):
        doors = doors.replace(f' {name}: "..."', f' {name}: "{value}"')
    cfg = parse_config(text[:start] + doors, "example").config
    assert [d.name for d in cfg.spa_doors] == ["ssh-fwknop", "ssh-keys"]


def test_check_names_the_spa_port_and_never_a_key(tmp_path: Path) -> None:
    config = tmp_path / "spa.yaml"
    config.write_text(SPA)
    result = CliRunner().invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "OK: 3 door(s), knock ports 7000/tcp, 8000/tcp, 9000/udp; SPA port 62300/udp;" in (
        result.stdout
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPA.replace("hmac_digest: SHA512", "hmac_digest: sha224"))
    result = CliRunner().invoke(app, ["check", "-c", str(bad)])
    assert result.exit_code == 2
    assert "doors.ssh-fwknop.fwknop.hmac_digest" in result.stderr
    assert KEY not in result.output and HMAC_KEY not in result.output
