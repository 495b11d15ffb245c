"""The `knock` client, with knockd's command line:
`knock [-u] [-d ms] [-4|-6] [-v] [-V] [-h] host port[:proto]...`, plus named profiles
(`knock home`, see knocknft.client.profiles), a command to run once the knock is sent
(`knock home -- ssh me@server`), and single packet authorization instead of a sequence
(`knock --door ssh server`, see knocknft.client.spa).

A TCP knock is exactly one SYN: a non-blocking connect() and an immediate close(), so the kernel
never retransmits it (a blocking connect does, after 1 s and 3 s, and a repeated SYN breaks a
sequence). A UDP knock is one datagram with a one-byte payload. The host is resolved once.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from knocknft import __version__
from knocknft.client.profiles import (
    DEFAULT_THEN_WAIT_MS,
    Profile,
    default_profiles_path,
    load_profiles,
)
from knocknft.client.spa import (
    SPA_FLAGS,
    SPA_HELP,
    SpaPlan,
    add_spa_options,
    make_spa_plan,
    send_spa,
    wants_spa,
)
from knocknft.config import Invalid, PortSpec, parse_port_spec
from knocknft.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Target:
    family: int
    address: str


def resolve(host: str, family: int) -> Target:
    """The first address of `host` in `family` (AF_UNSPEC: whatever the resolver prefers)."""
    infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address for {host}")
    fam, _, _, _, sockaddr = infos[0]
    return Target(fam, str(sockaddr[0]))


SocketFactory = Callable[[int, int], socket.socket]


def knock_once(
    target: Target,
    step: PortSpec,
    source: str | None = None,
    make_socket: SocketFactory = socket.socket,
) -> None:
    """Send one knock: one SYN for TCP, one datagram for UDP (optionally from `source`)."""
    kind = socket.SOCK_DGRAM if step.protocol == "udp" else socket.SOCK_STREAM
    sock = make_socket(target.family, kind)
    try:
        if source:
            sock.bind((source, 0))
        if step.protocol == "udp":
            sock.sendto(b"\0", (target.address, step.port))
            return
        sock.setblocking(False)
        # EINPROGRESS is the expected answer: the SYN is on its way and we do not wait for it.
        sock.connect_ex((target.address, step.port))
    finally:
        sock.close()


def knock(
    target: Target, steps: Sequence[PortSpec], delay_ms: int = 0, verbose: bool = False
) -> None:
    for index, step in enumerate(steps):
        if verbose:
            host = f"[{target.address}]" if ":" in target.address else target.address
            print(f"hitting {step.protocol} {host}:{step.port}", flush=True)
        knock_once(target, step)
        if delay_ms and index < len(steps) - 1:
            time.sleep(delay_ms / 1000)


USAGE = """\
knock [-u] [-d MS] [-4|-6] [-v] HOST PORT[:PROTO]... [-- COMMAND [ARG]...]
       knock [-u] [-d MS] [-4|-6] [-v] PROFILE [-- COMMAND [ARG]...]
       knock [-4|-6] [-v] --door NAME [--spa-key FILE] [-a ADDR|-s] [-f TIME] [-p PORT]
             HOST|PROFILE [-- COMMAND [ARG]...]"""

DESCRIPTION = (
    """\
Send a port-knock sequence to HOST, as knockd's knock does (same options, same output with -v).
Each PORT is PORT[:PROTO] (or PORT/PROTO), PROTO tcp or udp, tcp by default. A TCP knock is a
single SYN (a non-blocking connect, closed at once, so it is never retransmitted); a UDP knock
is a single one-byte datagram. HOST is resolved once, before the first knock.

PROFILE, given without ports, is a named knock from the profiles file (default
$XDG_CONFIG_HOME/knocknft/client.yaml, i.e. ~/.config/knocknft/client.yaml): its host, sequence,
delay, family and udp. Options given on the command line override the profile's. A name that is
both a profile and a host is the profile when no ports follow it, the host when they do.

After --, COMMAND is run once the last knock is sent and then_wait milliseconds have passed
(the profile's then_wait, or --then-wait; default 200): knock replaces itself with COMMAND, so
the exit status is COMMAND's, e.g. knock home -- ssh me@server.example.org

"""
    + SPA_HELP
)

EPILOG = """\
profiles file:
  profiles:
    home:
      host: server.example.org
      sequence: [7000/tcp, 9000/udp, 8000]   # or "7000,9000:udp,8000"
      delay: 100        # ms, like -d (default 0)
      family: 4         # 4, 6 or any, like -4/-6 (default any)
      udp: false        # every knock UDP, like -u (default false)
      then_wait: 200    # ms before -- COMMAND (default 200)
    office:             # SPA: one signed packet instead of a sequence
      host: gw.example.org
      door: ssh         # like --door
      key: spa_ed25519  # like --spa-key, from this file's directory
      spa_port: 62201   # like -p
      address: source   # an address like -a, or source like -s
      open_for: 5m      # like -f

exit status: 0 knocks (or the SPA packet) sent; 1 HOST could not be resolved or a packet not sent;
2 invalid arguments or profiles file; after --, COMMAND's own status (127: not found,
126: cannot be run).

examples:
  knock -v 198.18.0.1 7000 9000:udp 8000
  knock home -- ssh me@server.example.org
  knock --door ssh -6 server.example.org -- ssh me@server.example.org"""

EXIT_NETWORK = 1
EXIT_USAGE = 2
EXIT_COMMAND_NOT_FOUND = 127  # the shell's and env(1)'s convention
EXIT_COMMAND_NOT_RUNNABLE = 126


def program_name(argv0: str | None = None) -> str:
    """The name the client was run as: knocknft-knock where it is installed beside Debian
    knockd's knock, knock in a checkout's venv; its usage lines say that name."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return name if name.startswith("knock") else "knock"


def _parser(name: str | None = None) -> argparse.ArgumentParser:
    prog = name or program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=re.sub(r"(?m)^(\s*)knock\b", lambda m: m.group(1) + prog, USAGE),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-u", "--udp", action="store_true", default=None, help="make every knock UDP"
    )
    parser.add_argument(
        "-d", "--delay", type=int, metavar="MS", help="wait MS milliseconds between knocks"
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument(
        "-4", "--ipv4", dest="family", action="store_const", const=socket.AF_INET,
        help="use IPv4 only",
    )  # fmt: skip
    family.add_argument(
        "-6", "--ipv6", dest="family", action="store_const", const=socket.AF_INET6,
        help="use IPv6 only",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each knock as it is sent"
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"knock (knocknft) {__version__}"
    )
    parser.add_argument(
        "--profiles",
        type=Path,
        metavar="FILE",
        help="the profiles file (default: $XDG_CONFIG_HOME/knocknft/client.yaml)",
    )
    parser.add_argument(
        "--then-wait",
        type=int,
        metavar="MS",
        help="milliseconds between the last knock and -- COMMAND (default: the profile's, "
        f"else {DEFAULT_THEN_WAIT_MS})",
    )
    parser.add_argument("host", metavar="HOST|PROFILE", help="the host to knock on, or a profile")
    parser.add_argument(
        "ports", nargs="*", default=[], metavar="PORT[:PROTO]", help="the sequence, in order"
    )
    add_spa_options(parser)
    return parser


@dataclass(frozen=True)
class Plan:
    """What one `knock` invocation will do, decided before any packet is sent."""

    host: str
    steps: tuple[PortSpec, ...]
    delay: int = 0  # ms
    family: int = socket.AF_UNSPEC
    verbose: bool = False
    command: tuple[str, ...] = ()
    then_wait: int = DEFAULT_THEN_WAIT_MS  # ms
    profile: str | None = None


def split_command(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...] | None]:
    """knock's own words, and the command after the first `--` (None: no `--` at all)."""
    words = list(argv)
    if "--" not in words:
        return words, None
    cut = words.index("--")
    return words[:cut], tuple(words[cut + 1 :])


def make_plan(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> Plan | SpaPlan:
    """Parse knock's command line (and the profile it names). argparse's own errors exit 2;
    others raise UsageError, or ConfigError for a broken profiles file."""
    words, command = split_command(argv)
    args = _parser().parse_args(words)
    if command == ():
        raise UsageError("nothing after --: name the command to run after knocking")
    for flag, value in (("--delay", args.delay), ("--then-wait", args.then_wait)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be 0 or more milliseconds")
    profile = None
    if args.ports:
        try:
            steps = tuple(parse_port_spec(p) for p in args.ports)
        except Invalid as exc:
            raise UsageError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
    elif any(getattr(args, flag) is not None for flag in SPA_FLAGS):
        # `knock --door ssh NAME`: NAME is a profile if there is one, else a host.
        profile = _lookup(args.host, args.profiles, env, required=False)
    else:
        profile = _lookup(args.host, args.profiles, env, required=True)
    if wants_spa(args, profile):
        return make_spa_plan(args, profile, command or (), env)
    if profile is not None:
        steps = profile.sequence
    if args.udp or (profile is not None and profile.udp):
        steps = tuple(PortSpec(s.port, "udp") for s in steps)
    then_wait = profile.then_wait if profile else None
    return Plan(
        host=profile.host if profile else args.host,
        steps=steps,
        delay=_first(args.delay, profile.delay if profile else None, 0),
        family=_first(args.family, profile.family if profile else None, socket.AF_UNSPEC),
        verbose=args.verbose,
        command=command or (),
        then_wait=_first(args.then_wait, then_wait, DEFAULT_THEN_WAIT_MS),
        profile=profile.name if profile else None,
    )


def _first(given: int | None, from_profile: int | None, default: int) -> int:
    """The command line's value, else the profile's, else the default."""
    if given is not None:
        return given
    return default if from_profile is None else from_profile


def _lookup(name: str, path: Path | None, env: Mapping[str, str], required: bool) -> Profile | None:
    """The profile `name`; when not `required`, None if there is none (a host name then)."""
    file = path or default_profiles_path(env)
    if path is None and not file.exists():
        if not required:
            return None
        raise UsageError(
            f"no ports given, and there is no profiles file {file} for a profile {name!r}: "
            "give PORT[:PROTO]... or create the file (see --help)"
        )
    profiles = load_profiles(file)
    if name not in profiles and required:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(
            f"no ports given, and {name!r} is not a profile in {file} (profiles: {known})"
        )
    return profiles.get(name)


def run_command(command: Sequence[str], then_wait: int, verbose: bool = False) -> NoReturn:
    """Replace this process with `command`: its exit status becomes knock's."""
    if then_wait:
        # Give the server time to open the door, so the command's first packet is let in.
        time.sleep(then_wait / 1000)
    if verbose:
        print(f"running {shlex.join(command)}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], list(command))
    except FileNotFoundError:
        print(f"knock: {command[0]}: command not found", file=sys.stderr)
        sys.exit(EXIT_COMMAND_NOT_FOUND)
    except OSError as exc:
        print(f"knock: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(EXIT_COMMAND_NOT_RUNNABLE)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        plan = make_plan(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"knock: error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except UsageError as exc:
        _parser().error(str(exc))  # prints the usage too, exits 2
    try:
        target = resolve(plan.host, plan.family)
        if isinstance(plan, SpaPlan):
            send_spa(plan, target.family, target.address)
        else:
            knock(target, plan.steps, plan.delay, plan.verbose)
    except OSError as exc:
        print(f"knock: {plan.host}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(EXIT_NETWORK)
    if plan.command:
        run_command(plan.command, plan.then_wait, plan.verbose)


if __name__ == "__main__":
    main()
