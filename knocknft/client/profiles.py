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

Checked with the config's walker, so every error says file:line and how to fix it. Pure apart
from `load_profiles`, which reads the file.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from knocknft.config import (
    MAX_SEQUENCE_LENGTH,
    Invalid,
    PortSpec,
    Walker,
    compose_yaml,
    parse_bool,
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
PROFILE_KEYS = ("host", "sequence", "delay", "family", "udp", "then_wait")
# Not starting with '-', so a profile name can never be read as an option.
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
_HOST_RE = re.compile(r"^[^\s/]+$")
_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6, "any": socket.AF_UNSPEC}


@dataclass(frozen=True)
class Profile:
    name: str
    host: str
    sequence: tuple[PortSpec, ...]
    delay: int = 0  # ms
    family: int = socket.AF_UNSPEC
    udp: bool = False
    then_wait: int = DEFAULT_THEN_WAIT_MS  # ms
    line: int | None = None


def default_profiles_path(env: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CONFIG_HOME/knocknft/client.yaml`, or `~/.config/...` when XDG_CONFIG_HOME is unset
    or relative (the XDG spec says to ignore a relative one)."""
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return Path(base) / "knocknft" / "client.yaml"


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


def _parse_profile(w: Walker, name: str, name_node: yaml.Node, node: yaml.Node) -> Profile | None:  # noqa: C901, PLR0912 - one branch per profile key, each with its own message
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
    for key, (_, value) in entries.items():
        path = f"{base}.{key}"
        parsed: object
        if key == "sequence":
            if isinstance(value, yaml.ScalarNode):
                parsed = w.scalar(value, path, parse_sequence_text)
            else:
                parsed = tuple(w.scalar_list(value, path, parse_port_spec)) or None
                if parsed is None and len(w.errors) == errors_before:
                    w.error(value, path, "the sequence is empty", "e.g. [7000, 9000/udp, 8000]")
        elif key == "host":
            parsed = w.scalar(value, path, _parse_host)
        elif key == "family":
            parsed = w.scalar(value, path, parse_family)
        elif key == "udp":
            parsed = w.scalar(value, path, parse_bool)
        else:  # delay, then_wait
            parsed = w.scalar(value, path, _parse_ms)
        if parsed is not None:
            fields[key] = parsed
    for required, example in (("host", "server.example.org"), ("sequence", "[7000, 9000/udp]")):
        if required not in entries:
            w.error(name_node, base, f"the profile has no {required}", f"add {required}: {example}")
    if len(w.errors) != errors_before:
        return None
    return Profile(**fields)  # type: ignore[arg-type]  # keys and types checked above


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
            profile = _parse_profile(w, name, name_node, node)
            if profile is not None:
                profiles[name] = profile
    if w.errors:
        raise ConfigError(w.errors)
    return profiles


def load_profiles(path: Path) -> dict[str, Profile]:
    """The profiles of a file; raises ConfigError (with file and line) when it is unusable."""
    text = read_config_text(path, "the profiles", "check the path (--profiles FILE)")
    return parse_profiles(text, str(path))
