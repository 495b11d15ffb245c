"""Named knock profiles for the `knock` client, so `knock home` replaces remembering
`knock -d 100 -4 server.example.org 7000 9000:udp 8000`.

The file is YAML, `$XDG_CONFIG_HOME/knocknft/client.yaml` (by default
`~/.config/knocknft/client.yaml`):

    profiles:
      home:
        host: server.example.org
        sequence: [7000/tcp, 9000/udp, 8000]   # or knockd's "7000,9000:udp,8000"
        delay: 100        # ms between knocks (knock -d); default 0
        family: 4         # 4, 6 or any (knock -4/-6); default any
        udp: false        # every knock UDP (knock -u); default false
        then_wait: 200    # ms between the last knock and `-- COMMAND`; default 200
      office:             # single packet authorization instead of a sequence: one signed packet
        host: gw.example.org
        door: ssh         # the door to open (knock --door)
        key: spa_ed25519  # the private key knocknft keygen wrote (--spa-key); relative paths
                          # are from this file's directory; default ~/.config/knocknft/spa_ed25519
        spa_port: 62201   # the server's SPA port (knock -p); default 62201
        address: source   # the address to grant (-a ADDR), or source (-s); default: this
                          # host's own address toward the server
        open_for: 5m      # ask for this long (-f), within the door's max_open_for

Checked with the config's walker, so every error says file:line and how to fix it. Pure apart
from `load_profiles`, which reads the file.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from knocknft.config import (
    DOOR_NAME_RE,
    MAX_GRANT_SECONDS,
    MAX_PORT,
    MAX_SEQUENCE_LENGTH,
    Invalid,
    IPAddress,
    PortSpec,
    Walker,
    compose_yaml,
    parse_address,
    parse_bool,
    parse_duration,
    parse_int,
    parse_one_time_line,
    parse_port_spec,
    read_config_text,
)
from knocknft.errors import ConfigError

# Long enough for knockd's ~30 ms and a slow link, short enough that nobody notices: a command
# that races the grant is not lost anyway, its SYN is retried by the kernel after 1 s.
DEFAULT_THEN_WAIT_MS = 200
MAX_MS = 600_000  # ten minutes: anything longer is a typo
KNOCK_KEYS = ("sequence", "delay", "udp")
SPA_KEYS = ("door", "key", "spa_port", "address", "open_for")
PROFILE_KEYS = ("host", *KNOCK_KEYS, *SPA_KEYS, "family", "then_wait")
DEFAULT_KEY_NAME = "spa_ed25519"
DEFAULT_SPA_PORT = 62201
# The address to grant is the packet's source, as the server sees it (a client behind NAT).
SOURCE: Literal["source"] = "source"
# Not starting with '-', so a profile name can never be read as an option.
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
_HOST_RE = re.compile(r"^[^\s/]+$")
_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6, "any": socket.AF_UNSPEC}


SpaAddress = IPAddress | Literal["source"]


@dataclass(frozen=True)
class Profile:
    """A knock sequence (`sequence`), or a signed SPA request (`door`): one or the other."""

    name: str
    host: str
    sequence: tuple[PortSpec, ...] = ()
    delay: int = 0  # ms
    family: int = socket.AF_UNSPEC
    udp: bool = False
    then_wait: int = DEFAULT_THEN_WAIT_MS  # ms
    door: str | None = None
    key: Path | None = None
    spa_port: int | None = None
    address: SpaAddress | None = None
    open_for: int | None = None  # seconds
    line: int | None = None


def default_profiles_path(env: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CONFIG_HOME/knocknft/client.yaml`, or `~/.config/...` when XDG_CONFIG_HOME is unset
    or relative (the XDG spec says to ignore a relative one)."""
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return Path(base) / "knocknft" / "client.yaml"


def default_key_path(env: Mapping[str, str] = os.environ) -> Path:
    """Where knocknft keygen writes the private key, and knock looks for it: beside the
    profiles, ~/.config/knocknft/spa_ed25519."""
    return default_profiles_path(env).parent / DEFAULT_KEY_NAME


def parse_door_name(text: str) -> str:
    name = text.strip()
    if not DOOR_NAME_RE.match(name):
        raise Invalid(f"{text[:40]!r} is not a door name", "the name of an SPA door, e.g. ssh")
    return name


def parse_spa_address(text: str) -> SpaAddress:
    """An address to grant, or `source`: the packet's source as the server sees it."""
    if text.strip().lower() == SOURCE:
        return SOURCE
    try:
        return parse_address(text)
    except Invalid as exc:
        raise Invalid(exc.message, "an IPv4 or IPv6 address, or source") from None


def parse_open_for(text: str) -> int:
    return parse_duration(text, MAX_GRANT_SECONDS)


def parse_spa_port(text: str) -> int:
    return parse_int(text, 1, MAX_PORT)


def parse_family(text: str) -> int:
    value = text.strip().lower().removeprefix("ipv")
    if value not in _FAMILIES:
        raise Invalid(f"{text!r} is not an address family", "write 4, 6 or any")
    return _FAMILIES[value]


def parse_sequence_text(text: str) -> tuple[PortSpec, ...]:
    """knockd's one-line form, `7000,9000:udp,8000` (spaces work too)."""
    steps = parse_one_time_line(text)
    if len(steps) > MAX_SEQUENCE_LENGTH:
        raise Invalid(f"more than {MAX_SEQUENCE_LENGTH} steps")
    return steps


def _parse_host(text: str) -> str:
    host = text.strip()
    if not _HOST_RE.match(host):
        raise Invalid(f"{text!r} is not a host name or address", "e.g. server.example.org")
    return host


def _parse_ms(text: str) -> int:
    try:
        return parse_int(text, 0, MAX_MS)
    except Invalid:
        raise Invalid(
            f"{text!r} is not a number of milliseconds", f"a whole number from 0 to {MAX_MS}"
        ) from None


def _parse_key_path(base: Path) -> Callable[[str], Path]:
    """A key file's path: ~ expanded, and relative to the profiles file's directory."""

    def parse(text: str) -> Path:
        if not text.strip():
            raise Invalid("the key path is empty", "the private key knocknft keygen wrote")
        return base / Path(text.strip()).expanduser()

    return parse


def _value_parsers(base: Path) -> dict[str, Callable[[str], object]]:
    return {
        "host": _parse_host,
        "family": parse_family,
        "udp": parse_bool,
        "delay": _parse_ms,
        "then_wait": _parse_ms,
        "door": parse_door_name,
        "key": _parse_key_path(base),
        "spa_port": parse_spa_port,
        "address": parse_spa_address,
        "open_for": parse_open_for,
    }


def _parse_profile(
    w: Walker, name: str, name_node: yaml.Node, node: yaml.Node, base_dir: Path
) -> Profile | None:
    base = f"profiles.{name}"
    errors_before = len(w.errors)
    if not PROFILE_NAME_RE.match(name):
        w.error(
            name_node,
            base,
            f"profile name {name!r} is not usable",
            "start with a letter or digit; no spaces (at most 64 characters)",
        )
    entries = w.mapping(node, base, PROFILE_KEYS)
    fields: dict[str, object] = {"name": name, "line": name_node.start_mark.line + 1}
    parsers = _value_parsers(base_dir)
    for key, (_, value) in entries.items():
        path = f"{base}.{key}"
        parsed: object
        if key != "sequence":
            parsed = w.scalar(value, path, parsers[key])
        elif isinstance(value, yaml.ScalarNode):
            parsed = w.scalar(value, path, parse_sequence_text)
        else:
            parsed = tuple(w.scalar_list(value, path, parse_port_spec)) or None
            if parsed is None and len(w.errors) == errors_before:
                w.error(value, path, "the sequence is empty", "e.g. [7000, 9000/udp, 8000]")
        if parsed is not None:
            fields[key] = parsed
    _check_kind(w, base, name_node, entries)
    if len(w.errors) != errors_before:
        return None
    return Profile(**fields)  # type: ignore[arg-type]  # keys and types checked above


def _check_kind(w: Walker, base: str, name_node: yaml.Node, entries: Mapping[str, object]) -> None:
    """A profile has a host, and either a sequence (a knock) or a door (SPA), with only the
    keys of its kind."""
    if "host" not in entries:
        w.error(name_node, base, "the profile has no host", "add host: server.example.org")
    if "sequence" in entries and "door" in entries:
        w.error(
            name_node,
            base,
            "the profile has both a sequence and a door",
            "a sequence knocks, a door sends one signed SPA packet: keep one",
        )
    elif "sequence" in entries or "door" not in entries:
        wrong = [k for k in SPA_KEYS if k in entries]
        if "sequence" not in entries:
            w.error(
                name_node,
                base,
                "the profile has no sequence and no door",
                "add sequence: [7000, 9000/udp] (a knock) or door: NAME (SPA)",
            )
        elif wrong:
            w.error(
                name_node,
                base,
                f"{', '.join(wrong)}: for SPA profiles only, and this one has a sequence",
                "remove them, or replace sequence with door: NAME",
            )
    else:
        wrong = [k for k in KNOCK_KEYS if k in entries]
        if wrong:
            w.error(
                name_node,
                base,
                f"{', '.join(wrong)}: for knock sequences only, and this profile sends SPA",
                "remove them",
            )


def parse_profiles(text: str, file: str = "<profiles>") -> dict[str, Profile]:
    """Every profile of the file, by name; raises ConfigError listing every problem."""
    w = Walker(file)
    root = compose_yaml(text, file)
    if root is None:
        return {}
    top = w.mapping(root, "", ("profiles",))
    profiles: dict[str, Profile] = {}
    if "profiles" in top:
        for name, (name_node, node) in w.mapping(top["profiles"][1], "profiles", None).items():
            profile = _parse_profile(w, name, name_node, node, Path(file).parent)
            if profile is not None:
                profiles[name] = profile
    if w.errors:
        raise ConfigError(w.errors)
    return profiles


def load_profiles(path: Path) -> dict[str, Profile]:
    """The profiles of a file; raises ConfigError (with file and line) when it is unusable."""
    text = read_config_text(path, "the profiles", "check the path (--profiles FILE)")
    return parse_profiles(text, str(path))
