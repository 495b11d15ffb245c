"""Trusted lists: always_allow's host names and always_allow_file (knockd.trusted's format), the
resolver that keeps a name's last addresses, the named sets they fill, and import's mapping."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

import pytest

from knocknft.config import Config, parse_config
from knocknft.core.ruleset import render_ruleset
from knocknft.core.trusted import ALWAYS_ALLOW4, ALWAYS_ALLOW6
from knocknft.daemon.trusted import NameResolver, ResolverThread, refill, resolve_config
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import read_knockd_conf
from knocknft.knockd.writer import import_knockd, trusted_file
from knocknft.nft.fake import FakeNft
from knocknft.nft.lastgood import saved_table
from tests.unit.fakes import loaded_nft

FILE = "/etc/knocknft/config.yaml"
TRUSTED = Path("/etc/knockd/knockd.trusted")
DOORS = "doors:\n  ssh:\n    sequence: [7000, 8000, 9000]\n    open: [22]\n    open_for: 30s\n"
# The university's knockd.trusted (shared/reference/004), as written.
UNIVERSITY = """\
# machines autorisées sans contrôle de
# knocking sur le serveur ssh :

ssh.maths.fr # i.e. ssh.maths.fr
29.123.4.0/24 #
29.123.21.0/24 #
30.28.121.188 #
"""


def _parse(options: str, trusted: str | None = None) -> Config:
    def read(path: Path) -> str:
        assert path == TRUSTED
        if trusted is None:
            raise FileNotFoundError(2, "No such file or directory")
        return trusted

    return parse_config(f"options:\n{options}{DOORS}", FILE, read_file=read).config


def _errors(options: str, trusted: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _parse(options, trusted)
    return [str(p) for p in caught.value.problems]


def test_always_allow_takes_host_names_beside_networks() -> None:
    options = _parse("  always_allow: [198.51.100.0/24, Ssh.Example.ORG., 2001:db8::/32]\n").options
    assert [str(n) for n in options.always_allow] == ["198.51.100.0/24", "2001:db8::/32"]
    assert options.always_allow_names == ("ssh.example.org",)


@pytest.mark.parametrize("entry", ["bad..name", "198.51.100.300", "-lead.example", "a_b.example"])
def test_a_bad_entry_is_an_error_at_its_config_line(entry: str) -> None:
    (error,) = _errors(f"  always_allow:\n    - 198.51.100.0/24\n    - '{entry}'\n")
    assert error.startswith(f"{FILE}:4: options.always_allow[1]: '{entry}' is not an address")


def test_the_universitys_trusted_file_is_read_as_the_init_script_did() -> None:
    options = _parse(f"  always_allow_file: {TRUSTED}\n", UNIVERSITY).options
    assert options.always_allow_file == TRUSTED
    assert [str(n) for n in options.always_allow] == [
        "29.123.4.0/24",
        "29.123.21.0/24",
        "30.28.121.188/32",
    ]
    assert options.always_allow_names == ("ssh.maths.fr",)


def test_a_bad_line_of_the_trusted_file_is_an_error_at_that_files_line() -> None:
    text = UNIVERSITY + "not_a host\n\n29.123.300.0/24 # typo\n"
    errors = _errors(f"  always_allow_file: {TRUSTED}\n", text)
    assert errors[0].startswith(f"{TRUSTED}:8: always_allow_file: 'not_a host' is more than one")
    assert errors[1].startswith(f"{TRUSTED}:10: always_allow_file: '29.123.300.0/24' is not an")
    assert len(errors) == 2


def test_an_unreadable_trusted_file_is_an_error_at_the_option() -> None:
    (error,) = _errors(f"  always_allow_file: {TRUSTED}\n")
    assert error.startswith(f"{FILE}:2: options.always_allow_file: cannot read {TRUSTED}")


class FakeLookup:
    """A resolver whose answers the test sets; an OSError when it has none for a name."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str) -> Iterable[str]:
        self.asked.append(name)
        if name not in self.answers:
            raise OSError(-2, "Name or service not known")
        return self.answers[name]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_a_name_that_stops_resolving_keeps_its_last_addresses_and_says_so() -> None:
    lookup = FakeLookup({"a.example": ["198.51.100.7", "2001:db8::7", "198.51.100.7"]})
    said: list[str] = []
    resolver = NameResolver(lookup, warn=said.append)
    first = resolver.resolve(["a.example", "never.example"])
    assert first == (("a.example", _ip("198.51.100.7")), ("a.example", _ip("2001:db8::7")))
    assert said == ["always_allow: never.example does not resolve: it is not let in yet"]
    lookup.answers.clear()
    assert resolver.resolve(["a.example"]) == first
    assert said[-1] == (
        "always_allow: a.example no longer resolves; keeping 198.51.100.7, 2001:db8::7"
    )
    lookup.answers["a.example"] = ["198.51.100.8"]
    assert resolver.resolve(["a.example"]) == (("a.example", _ip("198.51.100.8")),)
    # A name no longer configured is forgotten, and comes back with no address of old.
    resolver.resolve([])
    lookup.answers.clear()
    assert resolver.resolve(["a.example"]) == ()


def test_an_address_that_could_not_go_into_a_ruleset_is_left_out() -> None:
    lookup = FakeLookup({"b.example": ["fe80::1%eth0", "not an address", "2001:db8::9"]})
    said: list[str] = []
    resolved = NameResolver(lookup, warn=said.append).resolve(["b.example"])
    assert resolved == (("b.example", _ip("2001:db8::9")),)
    assert said == [
        "always_allow: b.example resolved to 'fe80::1%eth0': left out",
        "always_allow: b.example resolved to 'not an address': left out",
    ]


def test_the_thread_hands_over_only_a_change() -> None:
    lookup = FakeLookup({"a.example": ["198.51.100.7"]})
    resolver = NameResolver(lookup, warn=lambda _: None)
    resolver.resolve(["a.example"])
    thread = ResolverThread(resolver, ["a.example"], interval=3600)
    try:
        thread.step()
        assert thread.take() is None, "the same addresses: nothing to refill"
        lookup.answers["a.example"] = ["198.51.100.9"]
        thread.step()
        assert thread.take() == (("a.example", _ip("198.51.100.9")),)
        assert thread.take() is None
    finally:
        thread.close()


def test_names_fill_named_sets_and_a_change_refills_them_in_one_transaction() -> None:
    config = _parse("  always_allow: [198.51.100.0/24, a.example]\n")
    lookup = FakeLookup({"a.example": ["198.18.0.2", "2001:db8::2"]})
    config = resolve_config(config, NameResolver(lookup, warn=lambda _: None))
    script = render_ruleset(config)
    assert 'add element inet knocknft always_allow4 { 198.18.0.2 comment "a.example" }' in script
    assert f"ip saddr @{ALWAYS_ALLOW4} meta l4proto . th dport {{ tcp . 22 }} meta mark" in script
    assert "ip saddr { 198.51.100.0/24 }" in script, "networks stay anonymous sets, as before"
    assert saved_table(script) == "knocknft", "the boot guard loads it back, names' sets too"
    nft = loaded_nft(config)
    table = nft.tables[("inet", "knocknft")]
    assert list(table.sets[ALWAYS_ALLOW4].elements) == [(_ip("198.18.0.2"), None)]
    assert len(table.sets[ALWAYS_ALLOW6].elements) == 1

    moved = (("a.example", _ip("198.18.0.3")),)
    config = refill(config, nft, moved)
    assert config.always_allow_resolved == moved
    table = nft.tables[("inet", "knocknft")]  # the fake swaps in a new copy per transaction
    assert [a for a, _ in table.sets[ALWAYS_ALLOW4].elements] == [_ip("198.18.0.3")]
    assert not table.sets[ALWAYS_ALLOW6].elements
    assert len(nft.transactions) == 1, "one transaction: never a moment half-filled"
    assert refill(config, nft, moved) is config and len(nft.transactions) == 1


def test_a_config_without_names_renders_as_before() -> None:
    config = _parse("  always_allow: [198.51.100.0/24]\n")
    assert "always_allow4" not in render_ruleset(config)
    nft = FakeNft()
    assert refill(config, nft, ()) is config and not nft.transactions


def test_import_maps_the_trusted_list_a_command_names() -> None:
    conf = read_knockd_conf(
        "[trust]\nsequence = 1228,1227\ncommand = /etc/rc.d/init.d/knockd trust "
        "/etc/knockd/knockd.trusted\n",
        "knockd.conf",
    )
    found = trusted_file(conf)
    assert found == TRUSTED
    text = import_knockd(conf, "knockd.conf", found).yaml
    assert f"  always_allow_file: {TRUSTED}\n" in text
    assert trusted_file(read_knockd_conf("[a]\nsequence = 1,2\ncommand = true\n")) is None


def test_import_maps_the_universitys_knockd_trusted_next_to_the_conf(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knocknft.admin.cli import app

    conf = tmp_path / "knockd.conf"
    conf.write_text("[opencloseSSH]\nsequence = 1228,1227\ncommand = /bin/true %IP%\n")
    runner = CliRunner()
    assert "always_allow_file" not in runner.invoke(app, ["import", str(conf)]).stdout
    (tmp_path / "knockd.trusted").write_text(UNIVERSITY)
    result = runner.invoke(app, ["import", str(conf)])
    assert result.exit_code == 0, result.output
    assert f"  always_allow_file: {tmp_path / 'knockd.trusted'}\n" in result.stdout


def test_a_named_host_is_never_banned_nor_cut_off_as_networks_are_not() -> None:
    doors = DOORS + "    close_sessions: true\n  trap:\n    sequence: [1220, 1221, 1222]\n"
    doors += "    deny_for: 1h\n    deny: host\n"
    text = f"options:\n  always_allow: [a.example]\n{doors}"
    script = render_ruleset(parse_config(text, FILE).config)
    banned = [line for line in script.splitlines() if 'comment "banned"' in line]
    closing = [line for line in script.splitlines() if 'comment "close_sessions"' in line]
    assert banned and closing
    for line in banned + closing:
        v6 = "ip6 saddr" in line
        assert ("ip6 saddr != @always_allow6 " if v6 else "ip saddr != @always_allow4 ") in line
