"""An fwknopd setup -> knocknft YAML: one `fwknop:` door per stanza fwknopd would use, the SPA
port, window and interface from fwknopd.conf, and comments naming the line each came from.

Pure: the parsed files in, the YAML text and what could not be carried over out. The keys are
written quoted, and appear in no message.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

# knocknft's defaults are fwknopd's: PCAP_FILTER's udp port 62201, MAX_SPA_PACKET_AGE 120 s.
from knocknft.config import (
    DEFAULT_SPA_PORT,
    DEFAULT_SPA_WINDOW,
    MAX_SPA_WINDOW,
    Invalid,
    format_duration,
    parse_config,
)
from knocknft.config.emit import CommentedYaml, quoted, scalar, write_interface
from knocknft.errors import ConfigError, Problem
from knocknft.fwknop.daemonconf import FwknopdConf
from knocknft.fwknop.grammar import AccessConf, Directive
from knocknft.fwknop.keywords import Secret
from knocknft.fwknop.stanza import FwknopDoor, check_stanza
from knocknft.fwknop.values import parse_seconds, parse_yes

# The PCAP_FILTER forms that name one UDP port: `udp port N`, `udp dst port N`, `udp and ...`.
_FILTER_RE = re.compile(r"^(?:udp\s+(?:and\s+)?)?(?:dst\s+)?port\s+([0-9]{1,5})$", re.IGNORECASE)
# An interface name, as the kernel takes it (no wildcard: pcap has none).
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")
# fwknopd.conf settings this import maps, or reads to map another.
_MAPPED = frozenset(
    {"PCAP_FILTER", "PCAP_INTF", "MAX_SPA_PACKET_AGE", "ENABLE_UDP_SERVER", "UDPSERV_PORT"}
)
# fwknopd.conf settings with an effect on who gets in, and why knocknft does without them.
_SETTING_REASONS = {
    "ENABLE_SPA_PACKET_AGING": "knocknft always checks the packet's time (options.spa_window)",
    "ENABLE_SPA_OVER_HTTP": "knocknft hears SPA over UDP only",
    "ENABLE_TCP_SERVER": "knocknft hears SPA over UDP only",
    "ENABLE_X_FORWARDED_FOR": "knocknft hears SPA over UDP only",
    "ENABLE_NFQ_CAPTURE": "knocknft copies SPA packets through NFLOG, on options.spa_port",
    "ACCESS_FOLDER": "fwknopd read that folder instead of access.conf: import its files",
    "ACCESS_FILE": "fwknopd read that file as its access.conf: import it",
}


@dataclass(frozen=True)
class ImportedSetup:
    yaml: str
    doors: int
    # Stanzas knocknft cannot serve (with the line and why), and the lines it does without.
    refused: tuple[Problem, ...]
    not_mapped: tuple[Problem, ...]


def import_fwknop(access: AccessConf, fwknopd: FwknopdConf | None) -> ImportedSetup:
    """The knocknft YAML for an fwknopd setup. Raises ConfigError when fwknopd would refuse to
    start with these files, or when no stanza can be served (each one's reason listed)."""
    errors = list(access.errors)
    checked = [check_stanza(raw, errors) for raw in access.stanzas]
    if errors:
        # In reading order: access.conf's lines first, each included file's after.
        raise ConfigError(
            sorted(errors, key=lambda p: (p.file != access.file, p.file, p.line or 0))
        )
    refused = [p for c in checked for p in c.refused]
    not_mapped = list(access.ignored) + [p for c in checked for p in c.not_mapped]
    doors = [c.door for c in checked if c.door is not None]
    if not doors:
        raise ConfigError(
            [
                *refused,
                Problem(
                    access.file,
                    None,
                    "",
                    "no stanza can be served by knocknft: nothing to write",
                    "see the reason given for each stanza above",
                ),
            ]
        )
    out = CommentedYaml()
    options = CommentedYaml()
    _write_options(options, fwknopd, not_mapped)
    _write_header(out, access, fwknopd, refused, not_mapped)
    out.lines += ["", "options:", *options.lines, "", "doors:"]
    for door in doors:
        _write_door(out, door)
    text = out.text()
    # The output must pass `knocknft check`: a failure here is a bug in this package, not in
    # the admin's files.
    parse_config(text, "<imported>")
    return ImportedSetup(text, len(doors), tuple(refused), tuple(not_mapped))


def _write_header(
    out: CommentedYaml,
    access: AccessConf,
    fwknopd: FwknopdConf | None,
    refused: list[Problem],
    not_mapped: list[Problem],
) -> None:
    made_from = access.file + (f" and {fwknopd.file}" if fwknopd else "")
    out.comment(f"Made by `knocknft import` from {made_from}.")
    out.comment(
        "It holds the stanzas' keys: keep it private (root, mode 0600), as access.conf was."
    )
    out.comment("Check it with `knocknft check -c FILE`; load it with `knocknft apply -c FILE`.")
    out.comment(
        "\nThe fwknop clients keep working unchanged, e.g. `fwknop -A tcp/22 -a ADDRESS "
        "--use-hmac -D HOST` with the keys of their ~/.fwknoprc. Before you stop fwknopd: "
        "knocknft drops new connections to the services under `open` for every address "
        "without a grant, in its own nft table, so your own firewall must now let those "
        "services through."
    )
    if refused:
        out.comment("\nNot imported: stanzas knocknft cannot serve without letting in more:")
        for problem in refused:
            out.comment(f"  {_located(problem)}: {problem.message}")
    if not_mapped:
        out.comment("\nNot mapped: lines knocknft does without:")
        for problem in not_mapped:
            out.comment(f"  {_located(problem)}: {problem.message}")


def _located(problem: Problem) -> str:
    where = f"{problem.file}:{problem.line}" if problem.line is not None else problem.file
    return f"{where}: {problem.key}" if problem.key else where


def _setting(fwknopd: FwknopdConf | None, name: str) -> Directive | None:
    return fwknopd.settings.get(name) if fwknopd is not None else None


def _write_options(
    out: CommentedYaml, fwknopd: FwknopdConf | None, not_mapped: list[Problem]
) -> None:
    if fwknopd is None:
        out.comment(
            "No fwknopd.conf beside the access.conf: fwknopd's defaults apply, SPA on UDP "
            f"port {DEFAULT_SPA_PORT} with a {DEFAULT_SPA_WINDOW}s window.",
            2,
        )
        out.key("spa_port", str(DEFAULT_SPA_PORT), 2)
    else:
        _write_port(out, fwknopd, not_mapped)
        _write_window(out, fwknopd, not_mapped)
    interface = _setting(fwknopd, "PCAP_INTF")
    udp_server = _setting(fwknopd, "ENABLE_UDP_SERVER")
    sniffed = udp_server is None or not parse_yes(udp_server.value)
    named = interface is not None and sniffed and _IFNAME_RE.match(interface.value)
    write_interface(
        out,
        interface.value if named and interface is not None else None,
        f"PCAP_INTF, {interface.file} line {interface.line}" if interface else "",
        "fwknopd heard SPA on the interface of PCAP_INTF or its -i option, eth0 by default.",
        "SPA packets",
    )
    if fwknopd is None:
        return
    for name, directive in fwknopd.settings.items():
        if name in _MAPPED:
            continue
        reason = _SETTING_REASONS.get(
            name, "fwknopd's own setting (its firewall, capture, files or logs): no counterpart"
        )
        if name == "ENABLE_SPA_PACKET_AGING" and parse_yes(directive.value):
            continue  # aging on is what knocknft does
        not_mapped.append(directive.problem(reason))


def _spa_port(fwknopd: FwknopdConf, not_mapped: list[Problem]) -> tuple[int, str] | None:
    """The UDP port fwknopd heard SPA on, and where that was set; None for its default."""
    udp_server = _setting(fwknopd, "ENABLE_UDP_SERVER")
    if udp_server is not None and parse_yes(udp_server.value):
        server_port = _setting(fwknopd, "UDPSERV_PORT")
        if server_port is None:
            return None
        if re.fullmatch(r"[0-9]{1,5}", server_port.value) and 0 < int(server_port.value) < 65536:
            return int(server_port.value), f"UDPSERV_PORT, {fwknopd.file} line {server_port.line}"
        not_mapped.append(server_port.problem("not a UDP port: the default port is written"))
        return None
    pcap_filter = _setting(fwknopd, "PCAP_FILTER")
    if pcap_filter is None:
        return None
    match = _FILTER_RE.match(pcap_filter.value.strip())
    if match and 0 < int(match.group(1)) < 65536:
        return (
            int(match.group(1)),
            f"PCAP_FILTER {pcap_filter.value}, {fwknopd.file} line {pcap_filter.line}",
        )
    not_mapped.append(
        pcap_filter.problem(
            f"only `udp port N` has a counterpart (options.spa_port); port {DEFAULT_SPA_PORT} "
            "is written: change it to the port your clients use"
        )
    )
    return None


def _write_port(out: CommentedYaml, fwknopd: FwknopdConf, not_mapped: list[Problem]) -> None:
    found = _spa_port(fwknopd, not_mapped)
    if found is None:
        out.comment(f"fwknopd's default SPA port (PCAP_FILTER udp port {DEFAULT_SPA_PORT}).", 2)
        out.key("spa_port", str(DEFAULT_SPA_PORT), 2)
    else:
        out.comment(f"{found[1]}.", 2)
        out.key("spa_port", str(found[0]), 2)


def _write_window(out: CommentedYaml, fwknopd: FwknopdConf, not_mapped: list[Problem]) -> None:
    age = _setting(fwknopd, "MAX_SPA_PACKET_AGE")
    aging = _setting(fwknopd, "ENABLE_SPA_PACKET_AGING")
    if aging is not None and not parse_yes(aging.value):
        out.comment(
            f"ENABLE_SPA_PACKET_AGING {aging.value} (line {aging.line}): fwknopd took packets of "
            "any age; knocknft takes them within this window only.",
            2,
        )
    if age is None:
        return
    try:
        seconds = parse_seconds(age.value, 1)
    except Invalid as exc:
        not_mapped.append(age.problem(f"{exc.message}: knocknft's default window is kept"))
        return
    out.comment(f"MAX_SPA_PACKET_AGE, {age.file} line {age.line}.", 2)
    if seconds > MAX_SPA_WINDOW:
        out.comment(f"{seconds}s is over knocknft's longest window, 1h.", 2)
    out.key("spa_window", format_duration(min(seconds, MAX_SPA_WINDOW)), 2)


def _write_door(out: CommentedYaml, door: FwknopDoor) -> None:
    source = door.source
    out.lines.append("")
    out.comment(
        f"Stanza #{door.number}, {source.file} line {source.line}: SOURCE {source.value}", 2
    )
    notes = sorted(door.notes)
    for line, note in notes:
        out.comment(f"line {line}: {note}", 2)
    out.lines.append(f"  fwknop-{door.number}:")
    out.lines.append("    fwknop:")
    networks = [
        str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in door.networks
    ] or ["any"]
    out.key("source", "[" + ", ".join(networks) + "]", 6)
    _write_secret(out, "key", door.key)
    _write_secret(out, "hmac_key", door.hmac_key)
    out.key("hmac_digest", door.hmac_digest, 6)
    out.key("require_source_address", "true" if door.require_source_address else "false", 6)
    if door.expires is not None:
        out.key("expires", door.expires.isoformat(), 6)
    out.key("open", "[" + ", ".join(map(str, door.open)) + "]", 4)
    out.key("open_for", format_duration(door.open_for), 4)
    out.key("max_open_for", format_duration(door.max_open_for), 4)
    if door.start_command is not None:
        out.key("start_command", scalar(door.start_command), 4)
    if door.stop_command is not None:
        out.key("stop_command", scalar(door.stop_command), 4)
        if door.cmd_timeout is not None:
            out.key("cmd_timeout", format_duration(door.cmd_timeout), 4)


def _write_secret(out: CommentedYaml, name: str, secret: Secret) -> None:
    """A key as access.conf gave it: its text (KEY), or its bytes in base64 (KEY_BASE64,
    written back padded, as fwknop --key-gen prints it)."""
    if secret.text is not None:
        out.key(name, quoted(secret.text), 6)
    else:
        out.key(f"{name}_base64", quoted(base64.b64encode(secret.raw).decode("ascii")), 6)
