"""The `knock` client's command line and profiles file, as a user meets them: what a command line
will knock, which errors stop it (exit 2, with file:line for the profiles file). No packet is
sent here; tests/integration/test_knock_client.py knocks for real in namespaces.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from knocknft.client.knock import Plan, main, make_plan
from knocknft.client.profiles import (
    DEFAULT_THEN_WAIT_MS,
    Profile,
    default_profiles_path,
    parse_profiles,
)
from knocknft.config import PortSpec
from knocknft.errors import ConfigError, UsageError

T, U = "tcp", "udp"

PROFILES = """\
profiles:
  home:
    host: server.example.org
    sequence: [7000/tcp, 9000/udp, 8000]
    delay: 100
    family: 4
    then_wait: 50
  knockd-style:
    host: 2001:db8::1
    sequence: "7000,9000:udp,8000"
  alludp:
    host: 198.18.0.1
    sequence: [7000, 8000]
    udp: true
    family: any
  server.example.org:
    host: 198.18.0.1
    sequence: [1234]
"""


def steps(*specs: tuple[int, str]) -> tuple[PortSpec, ...]:
    return tuple(PortSpec(port, "udp" if proto == U else "tcp") for port, proto in specs)


# -- the profiles file ------------------------------------------------------------------------


def test_profiles_parse_with_defaults() -> None:
    profiles = parse_profiles(PROFILES, "client.yaml")
    assert profiles["home"] == Profile(
        "home",
        "server.example.org",
        steps((7000, T), (9000, U), (8000, T)),
        delay=100,
        family=socket.AF_INET,
        then_wait=50,
        line=2,
    )
    knockd = profiles["knockd-style"]
    assert knockd.sequence == profiles["home"].sequence, "knockd's one-line form works too"
    assert (knockd.delay, knockd.family, knockd.udp, knockd.then_wait) == (
        0,
        socket.AF_UNSPEC,
        False,
        DEFAULT_THEN_WAIT_MS,
    )


ONE = "profiles:\n  a:\n    host: h\n    sequence: [1]\n"  # a valid profile, to spoil


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (ONE.replace("sequence", "sequense"), 4, "did you mean 'sequence'?"),
        (ONE.replace("    host: h\n", ""), 2, "the profile has no host"),
        (ONE.replace("    sequence: [1]\n", ""), 2, "the profile has no sequence"),
        (ONE.replace("[1]", "[1, 70000]"), 4, "port 70000 is out of range"),
        (ONE.replace("[1]", "'1,2:icmp'"), 4, "protocol 'icmp'"),
        (ONE.replace("[1]", "[]"), 4, "the sequence is empty"),
        (ONE + "    family: 5\n", 5, "write 4, 6 or any"),
        (ONE + "    delay: -1\n", 5, "milliseconds"),
        (ONE + "    udp: maybe\n", 5, "true or false"),
        (ONE.replace("host: h", "host: a b"), 3, "not a host name"),
        (ONE.replace("  a:", "  -x:"), 2, "profile name '-x'"),
        ("profile:\n  a: {}\n", 1, "did you mean 'profiles'?"),
        (ONE + "  a:\n    host: g\n", 5, "given twice"),
        ("profiles:\n  a: [\n", 3, "not valid YAML"),
    ],
)
def test_profile_errors_say_file_and_line(text: str, line: int, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_profiles(text, "/home/me/.config/knocknft/client.yaml")
    text_of_errors = str(caught.value)
    assert f"/home/me/.config/knocknft/client.yaml:{line}: " in text_of_errors
    assert says in text_of_errors


@pytest.mark.parametrize(
    ("env", "path"),
    [
        ({"HOME": "/home/me"}, "/home/me/.config/knocknft/client.yaml"),
        ({"HOME": "/home/me", "XDG_CONFIG_HOME": "/xdg"}, "/xdg/knocknft/client.yaml"),
        ({"HOME": "/home/me", "XDG_CONFIG_HOME": ""}, "/home/me/.config/knocknft/client.yaml"),
        # the XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored
        ({"HOME": "/home/me", "XDG_CONFIG_HOME": "rel"}, "/home/me/.config/knocknft/client.yaml"),
    ],
)
def test_profiles_file_location(env: dict[str, str], path: str) -> None:
    assert default_profiles_path(env) == Path(path)


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "knocknft").mkdir()
    (tmp_path / "knocknft" / "client.yaml").write_text(PROFILES)
    return {"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"}


HOME = steps((7000, T), (9000, U), (8000, T))
SRV = "server.example.org"


def home(**changes: object) -> Plan:
    """The plan of `knock home`, with some fields changed."""
    plan = Plan(SRV, HOME, 100, socket.AF_INET, then_wait=50, profile="home")
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "plan"),
    [
        # knockd's own command lines
        (["h", "7000", "9000:udp", "8000"], Plan("h", HOME)),
        (["h", "7000", "9000/udp"], Plan("h", HOME[:2])),
        (["-u", "h", "7000", "8000:tcp"], Plan("h", steps((7000, U), (8000, U)))),
        (["-d", "250", "-4", "h", "1"], Plan("h", steps((1, T)), 250, socket.AF_INET)),
        (["-6", "-v", "h", "1"], Plan("h", steps((1, T)), family=socket.AF_INET6, verbose=True)),
        # a profile
        (["home"], home()),
        (["alludp"], Plan("198.18.0.1", steps((7000, U), (8000, U)), profile="alludp")),
        # the command line overrides the profile
        (["-d", "0", "-6", "home"], home(delay=0, family=socket.AF_INET6)),
        (["-u", "home"], home(steps=steps((7000, U), (9000, U), (8000, U)))),
        # a command after --; a later -- belongs to the command
        (["home", "--", "ssh", "me@srv", "--", "-v"], home(command=("ssh", "me@srv", "--", "-v"))),
        (["--then-wait", "0", "home", "--", "true"], home(command=("true",), then_wait=0)),
        (["h", "1", "--", "ssh", "h"], Plan("h", steps((1, T)), command=("ssh", "h"))),
        # a name that is a profile and a host: a host when ports follow, else the profile
        ([SRV, "22"], Plan(SRV, steps((22, T)))),
        ([SRV], Plan("198.18.0.1", steps((1234, T)), profile=SRV)),
    ],
)
def test_what_a_command_line_knocks(env: dict[str, str], argv: list[str], plan: Plan) -> None:
    assert make_plan(argv, env) == plan


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["nosuch"], "'nosuch' is not a profile in"),
        (["home", "--"], "nothing after --"),
        (["h", "7000", "x"], "'x' is not a port number"),
        (["h", "0"], "port 0 is out of range"),
        (["h", "1:icmp"], "protocol 'icmp'"),
        (["--delay=-5", "h", "1"], "--delay must be 0 or more"),
        (["--then-wait=-1", "home"], "--then-wait must be 0 or more"),
    ],
)
def test_usage_errors(env: dict[str, str], argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        make_plan(argv, env)


def test_no_profiles_file_says_so(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(UsageError, match=r"there is no profiles file .*client\.yaml"):
        make_plan(["home"], env)


def test_an_explicit_profiles_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the profiles"):
        make_plan(["--profiles", str(tmp_path / "none.yaml"), "home"], {})


def test_ports_given_never_read_the_profiles_file(tmp_path: Path) -> None:
    """A broken profiles file must not break a plain `knock host ports`."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("profiles: [\n")
    assert make_plan(["--profiles", str(broken), "h", "1"], {}) == Plan("h", steps((1, T)))


@pytest.mark.parametrize(
    "argv",
    [[], ["-4", "-6", "h", "1"], ["-d", "x", "h", "1"], ["--bogus", "h", "1"]],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: knock" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "out"), [(["-V"], "knock (knocknft) "), (["-h"], "usage: knock")])
def test_version_and_help(argv: list[str], out: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith(out)


def test_a_broken_profiles_file_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "client.yaml"
    bad.write_text("profiles:\n  home:\n    host: h\n    sequence: [7000, 99999]\n")
    with pytest.raises(SystemExit) as caught:
        main(["--profiles", str(bad), "home"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"knock: error: {bad}:4: profiles.home.sequence[1]: port 99999" in err
