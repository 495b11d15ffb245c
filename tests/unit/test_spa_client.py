"""SPA from the client's side: `knocknft keygen`'s files, the key formats `knock` reads, what an
SPA command line or profile sends, and the packet it signs. No packet leaves the process here;
tests/integration/test_spa_signed.py sends them for real in namespaces.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import socket
import stat
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from typer.testing import CliRunner

from knocknft.admin.cli import app
from knocknft.client.knock import Plan, main, make_plan
from knocknft.client.profiles import parse_profiles
from knocknft.client.spa import SpaPlan, send_spa
from knocknft.config import ClientKey, Door, PortSpec, parse_config
from knocknft.errors import ConfigError, UsageError
from knocknft.spa.keys import load_private_key, private_key_pem, public_key_line
from knocknft.spa.request import SpaRequest
from knocknft.spa.signed import check_signed, public_bytes, sign_request

runner = CliRunner()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


# -- knocknft keygen ----------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "alice"
    result = runner.invoke(app, ["keygen", "-o", str(path), "--name", "alice-laptop"])
    assert result.exit_code == 0, result.output
    public = tmp_path / "keys" / "alice.pub"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = load_private_key(path.read_bytes())
    line = public.read_text()
    assert line == public_key_line(key) + "\n"  # one line: `public_key: $(cat alice.pub)`
    # The snippet printed is YAML that names the client and its key, ready to paste.
    snippet = yaml.safe_load(result.stdout)
    assert snippet == {"clients": {"alice-laptop": {"public_key": line.strip()}}}
    assert f"wrote {path}" in result.stderr


def test_keygen_never_overwrites_a_key_without_force(tmp_path: Path) -> None:
    path = tmp_path / "k"
    assert runner.invoke(app, ["keygen", "-o", str(path)]).exit_code == 0
    before = path.read_bytes(), (tmp_path / "k.pub").read_bytes()
    refused = runner.invoke(app, ["keygen", "-o", str(path)])
    assert refused.exit_code == 2
    assert "exists: give --force" in refused.stderr
    assert (path.read_bytes(), (tmp_path / "k.pub").read_bytes()) == before
    # A lone .pub (the private key moved away) is not overwritten either.
    path.unlink()
    assert runner.invoke(app, ["keygen", "-o", str(path)]).exit_code == 2
    assert not path.exists()
    assert runner.invoke(app, ["keygen", "-o", str(path), "--force"]).exit_code == 0
    assert (tmp_path / "k.pub").read_bytes() != before[1]


def test_keygen_refuses_a_name_the_config_would_refuse(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keygen", "-o", str(tmp_path / "k"), "--name", "alice laptop"])
    assert result.exit_code == 2
    assert "not a client name" in result.stderr
    assert not (tmp_path / "k").exists()


def test_keygen_writes_where_knock_looks_by_default(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    result = runner.invoke(app, ["keygen"], env=env)
    assert result.exit_code == 0, result.output
    key = tmp_path / "knocknft" / "spa_ed25519"
    plan = make_plan(["--door", "ssh", "198.18.0.1"], env)
    assert isinstance(plan, SpaPlan)
    assert public_bytes(plan.key) == public_bytes(load_private_key(key.read_bytes()))


# -- the key files knock reads ------------------------------------------------------------------


def test_an_openssh_ed25519_key_works_too() -> None:
    data = KEY.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    assert public_bytes(load_private_key(data)) == public_bytes(KEY)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")),
            "encrypted",
        ),
        (
            generate_private_key(SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            "not an Ed25519 key",
        ),
        (b"not a key", "not a private key"),
        (b"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n", "not a private key"),
        (b"x" * 100_000, "too big"),
    ],
)
def test_keys_knock_cannot_use_are_refused_with_why(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        load_private_key(data)


# -- what an SPA command line sends ------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A config home with a profiles file and a key beside it, as keygen leaves it."""
    home = tmp_path / "knocknft"
    home.mkdir()
    (home / "spa_ed25519").write_bytes(private_key_pem(KEY))
    (home / "client.yaml").write_text(
        "profiles:\n"
        "  office:\n"
        "    host: gw.example.org\n"
        "    door: ssh\n"
        "    key: spa_ed25519\n"  # beside the profiles file
        "    spa_port: 6000\n"
        "    address: source\n"
        "    open_for: 5m\n"
        "    family: 6\n"
        "  home:\n"
        "    host: server.example.org\n"
        "    sequence: [7000]\n"
    )
    return {"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"}


def spa_fields(plan: object) -> dict[str, object]:
    """A plan's fields, its key by its public half (keys do not compare)."""
    assert isinstance(plan, SpaPlan)
    fields = dataclasses.asdict(dataclasses.replace(plan, key=KEY))
    fields["key"] = public_bytes(plan.key)
    return fields


def spa(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "host": "h",
        "door": "ssh",
        "key": public_bytes(KEY),
        "address": None,
        "open_for": 0,
        "port": 62201,
        "family": socket.AF_UNSPEC,
        "verbose": False,
        "command": (),
        "then_wait": 200,
        "profile": None,
    }
    return fields | changes


V4 = ipaddress.IPv4Address("198.18.0.9")


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        (["--door", "ssh", "h"], spa()),
        (
            ["--door", "ssh", "-a", "198.18.0.9", "-f", "90", "-p", "1", "h"],
            spa(address=V4, open_for=90, port=1),
        ),
        (
            ["--door", "ssh", "-s", "-6", "-v", "h"],
            spa(address="source", family=socket.AF_INET6, verbose=True),
        ),
        (["--door", "ssh", "h", "--", "ssh", "h"], spa(command=("ssh", "h"))),
        # a profile with a door
        (
            ["office"],
            spa(host="gw.example.org", address="source", open_for=300, port=6000,
                family=socket.AF_INET6, profile="office"),
        ),
        # the command line overrides it
        (
            ["-4", "-a", "198.18.0.9", "-p", "7", "--door", "web", "office"],
            spa(host="gw.example.org", door="web", address=V4, open_for=300, port=7,
                family=socket.AF_INET, profile="office"),
        ),
        # --door with a name that is no profile: a host
        (["--door", "web", "nosuch.example.org"], spa(host="nosuch.example.org", door="web")),
    ],
)  # fmt: skip
def test_what_an_spa_command_line_sends(
    env: dict[str, str], argv: list[str], fields: dict[str, object]
) -> None:
    assert spa_fields(make_plan(argv, env)) == fields


def test_knockds_command_lines_still_knock(env: dict[str, str]) -> None:
    assert isinstance(make_plan(["home"], env), Plan)
    assert isinstance(make_plan(["-u", "-d", "10", "h", "1", "2"], env), Plan)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--door", "ssh", "h", "22"], "give HOST without ports"),
        (["--door", "ssh", "-u", "h"], "-u and -d are for knock sequences"),
        (["--door", "ssh", "-d", "5", "office"], "-u and -d are for knock sequences"),
        (["--spa-key", "k", "h"], "needs --door NAME"),
        (["-a", "198.18.0.1", "h"], "needs --door NAME"),
        (["--door", "ssh", "--spa-key", "/nonexistent/key", "h"], "cannot read the SPA key"),
    ],
)
def test_spa_usage_errors(env: dict[str, str], argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        make_plan(argv, env)


def test_a_missing_default_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="write one with knocknft keygen"):
        make_plan(["--door", "ssh", "h"], {"XDG_CONFIG_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    "argv",
    [
        ["--door", "no such", "h"],
        ["--door", "ssh", "-a", "not-an-address", "h"],
        ["--door", "ssh", "-a", "198.18.0.1", "-s", "h"],
        ["--door", "ssh", "-f", "forever", "h"],
        ["--door", "ssh", "-p", "70000", "h"],
    ],
)
def test_bad_spa_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: knock" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        ("    sequence: [1]\n    door: ssh\n", "both a sequence and a door"),
        ("    sequence: [1]\n    spa_port: 1\n", "spa_port: for SPA profiles only"),
        ("    door: ssh\n    delay: 5\n", "delay: for knock sequences only"),
        ("    door: no such\n", "is not a door name"),
        ("    door: ssh\n    address: nowhere\n", "an IPv4 or IPv6 address, or source"),
        ("    door: ssh\n    open_for: 8d\n", "open_for"),
        ("    family: 4\n", "no sequence and no door"),
    ],
)
def test_spa_profile_errors(profile: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_profiles("profiles:\n  p:\n    host: h\n" + profile, "client.yaml")


# -- the packet sent ----------------------------------------------------------------------------


class FakeSocket:
    """A UDP socket that sends nothing: it keeps what would have gone out."""

    def __init__(self, local: str) -> None:
        self.local = local
        self.sent: list[tuple[tuple[str, int], bytes]] = []
        self.peer = ("", 0)

    def connect(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def getsockname(self) -> tuple[str, int]:
        return (self.local, 40000)

    def send(self, data: bytes) -> int:
        self.sent.append((self.peer, data))
        return len(data)

    def close(self) -> None:
        pass


DOOR = Door(
    name="ssh",
    clients=(ClientKey("alice", public_bytes(KEY)),),
    open=(PortSpec(22, "tcp"),),
    open_for=30,
    max_open_for=600,
)


def sent(plan: SpaPlan, local: str, source: str) -> SpaRequest:
    fake = FakeSocket(local)
    family = socket.AF_INET6 if ":" in local else socket.AF_INET
    packet = send_spa(plan, family, "server", lambda *_: fake, clock=lambda: 1_800_000_000.5)  # type: ignore[arg-type]
    assert fake.sent == [(("server", plan.port), packet)]
    result = check_signed(packet, ipaddress.ip_address(source), (DOOR,), 120, 1_800_000_001)
    assert isinstance(result, SpaRequest)
    return result


PLAN = SpaPlan(host="server", door="ssh", key=KEY)


@pytest.mark.parametrize(
    ("plan", "local", "source", "granted"),
    [
        # By default the address this host sends from: a copy sent from elsewhere grants it.
        (PLAN, "198.18.0.2", "198.18.5.5", "198.18.0.2"),
        (PLAN, "2001:db8::2", "2001:db8::99", "2001:db8::2"),
        # A link-local address is no use to the server: the packet's source then.
        (PLAN, "fe80::1%veth0", "2001:db8::7", "2001:db8::7"),
        (dataclasses.replace(PLAN, address="source"), "198.18.0.2", "198.18.5.5", "198.18.5.5"),
        (dataclasses.replace(PLAN, address=V4), "198.18.0.2", "198.18.0.2", "198.18.0.9"),
    ],
)
def test_the_packet_names_the_address_to_grant(
    plan: SpaPlan, local: str, source: str, granted: str
) -> None:
    assert sent(plan, local, source).address == ipaddress.ip_address(granted)


def test_the_packet_asks_for_the_door_and_time_of_the_plan() -> None:
    result = sent(dataclasses.replace(PLAN, open_for=90, port=6000), "198.18.0.2", "198.18.0.2")
    assert (result.door, result.key, result.open_for) == ("ssh", "alice", 90)


def test_each_packet_has_a_nonce_of_its_own() -> None:
    first, second = (sent(PLAN, "198.18.0.2", "198.18.0.2") for _ in range(2))
    assert first.digest != second.digest


def test_keygen_and_knock_fit_together_through_a_file(tmp_path: Path) -> None:
    """A key keygen wrote signs what the public line it printed verifies."""
    path = tmp_path / "k"
    assert runner.invoke(app, ["keygen", "-o", str(path), "--name", "bob"]).exit_code == 0
    plan = make_plan(["--door", "ssh", "--spa-key", str(path), "h"], {})
    assert isinstance(plan, SpaPlan)
    door = dataclasses.replace(DOOR, clients=(ClientKey("bob", _public_from(path)),))
    fake = FakeSocket("198.18.0.2")
    packet = send_spa(plan, socket.AF_INET, "h", lambda *_: fake)  # type: ignore[arg-type]
    result = check_signed(packet, ipaddress.ip_address("198.18.0.2"), (door,), 120, time.time())
    assert isinstance(result, SpaRequest)
    assert result.key == "bob"


def test_the_lines_keygen_prints_are_a_door_the_server_accepts(tmp_path: Path) -> None:
    """Pasted under a door as printed, the server's config takes them, and the key keygen wrote
    opens that door: what an admin does, with nothing retyped."""
    path = tmp_path / "k"
    printed = runner.invoke(app, ["keygen", "-o", str(path), "--name", "carol"])
    assert printed.exit_code == 0
    snippet = "".join(f"    {line}\n" for line in printed.stdout.splitlines())
    text = f"doors:\n  ssh-keys:\n{snippet}    open: [22/tcp]\n    open_for: 30s\n"
    config = parse_config(text, "config.yaml").config
    key = load_private_key(path.read_bytes())
    packet = sign_request(key, "ssh-keys", None, 0, now=1e9, nonce=bytes(16))
    result = check_signed(packet, ipaddress.ip_address("198.18.0.2"), config.doors, 120, 1e9)
    assert isinstance(result, SpaRequest)
    assert (result.door, result.key) == ("ssh-keys", "carol")


def _public_from(path: Path) -> bytes:
    return base64.b64decode(path.with_name(path.name + ".pub").read_text())


def test_the_private_key_file_is_pem_pkcs8_as_openssl_writes_it() -> None:
    assert private_key_pem(KEY).startswith(b"-----BEGIN PRIVATE KEY-----")
