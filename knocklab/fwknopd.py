"""Debian's fwknopd, the SPA server knocknft is compared with: run in the server namespace on a
config of its own, equivalent to a knocknft fwknop door (`Stanza`), and read through its log.

fwknopd runs in the foreground, with fwknopd.conf, access.conf, its pid file, run directory and
digest cache all in the caller's folder, sniffing the server's veth interface; it changes only
that namespace's iptables (its FWKNOP_INPUT chain, added at start and removed on exit). Nothing
of the host's /etc/fwknop is read, and its systemd service is never started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from knocklab.daemons import LabDaemon
from knocklab.fwknop import SPA_PORT, FwknopKeys
from knocklab.lab import Host

FWKNOPD = Path("/usr/sbin/fwknopd")
FWKNOPD_READY = "Starting fwknopd main event loop."


@dataclass(frozen=True)
class Stanza:
    """One access.conf stanza, and the knocknft door that serves the same: the keys, the ports
    it may open (fwknop's `tcp/22` form), for how long, and its checks."""

    keys: FwknopKeys
    open_ports: Sequence[str] = ("tcp/22",)
    source: str = "ANY"
    access_timeout: int = 30
    max_timeout: int | None = None
    require_source_address: bool = False

    def access_conf(self) -> str:
        lines = [
            f"SOURCE {self.source}",
            f"OPEN_PORTS {', '.join(self.open_ports)}",
            f"KEY_BASE64 {self.keys.key_base64}",
            f"HMAC_KEY_BASE64 {self.keys.hmac_key_base64}",
            f"HMAC_DIGEST_TYPE {self.keys.hmac_digest}",
            f"FW_ACCESS_TIMEOUT {self.access_timeout}",
        ]
        if self.max_timeout is not None:
            lines.append(f"MAX_FW_TIMEOUT {self.max_timeout}")
        if self.require_source_address:
            lines.append("REQUIRE_SOURCE_ADDRESS Y")
        return "\n".join(lines) + "\n"

    def knocknft_door(self, name: str) -> str:
        """The same as a knocknft door (YAML, indented to go under `doors:`)."""
        source = "any" if self.source.upper() == "ANY" else self.source
        services = ", ".join(f"{port}/{proto}" for proto, port in _ports(self.open_ports))
        require = str(self.require_source_address).lower()
        max_timeout = f"    max_open_for: {self.max_timeout}s\n" if self.max_timeout else ""
        return (
            f"  {name}:\n"
            f"{self.keys.door_yaml(source=source)}"
            f"      require_source_address: {require}\n"
            f"    open: [{services}]\n"
            f"    open_for: {self.access_timeout}s\n"
            f"{max_timeout}"
        )


def _ports(open_ports: Sequence[str]) -> list[tuple[str, str]]:
    return [(proto, port) for proto, port in (spec.split("/") for spec in open_ports)]


def fwknopd_conf(workdir: Path, interface: str, port: int = SPA_PORT, window: int = 120) -> str:
    """fwknopd.conf with every path in `workdir`."""
    return (
        f"PCAP_INTF {interface};\n"
        f"PCAP_FILTER udp port {port};\n"
        f"MAX_SPA_PACKET_AGE {window};\n"
        f"FWKNOP_RUN_DIR {workdir};\n"
        f"FWKNOP_CONF_DIR {workdir};\n"
        f"FWKNOP_PID_FILE {workdir}/fwknopd.pid;\n"
        f"DIGEST_FILE {workdir}/digest.cache;\n"
    )


def start_fwknopd(
    host: Host,
    workdir: Path,
    stanzas: Sequence[Stanza],
    *,
    port: int = SPA_PORT,
    window: int = 120,
    verbose: bool = False,
    cpu: int | None = None,
) -> LabDaemon:
    """fwknopd on `host`'s lab interface, logging to workdir/fwknopd.log. It only ever accepts:
    what is not granted must be dropped by a rule of the caller's own. Started again on the same
    `workdir`, it reads back the digest cache it kept there."""
    workdir.mkdir(parents=True, exist_ok=True)
    config, access = workdir / "fwknopd.conf", workdir / "access.conf"
    # fwknopd refuses files others may read: they hold keys.
    for path, text in (
        (config, fwknopd_conf(workdir, host.ifname, port, window)),
        (access, "\n".join(stanza.access_conf() for stanza in stanzas)),
    ):
        path.touch(mode=0o600)
        path.write_text(text)
    argv = [
        str(FWKNOPD),
        "-f",
        *("-c", str(config), "-a", str(access)),
        *("-d", str(workdir / "digest.cache"), "-p", str(workdir / "fwknopd.pid")),
        *("-r", str(workdir), "-i", host.ifname),
        *(["-v"] if verbose else []),
    ]
    return LabDaemon(host, argv, workdir / "fwknopd.log", FWKNOPD_READY, cpu=cpu, timeout=20)


# What fwknopd logs (at its default verbosity) of each packet, by what became of it. A packet
# that passed its length and character checks is either a replay (checked before any stanza) or
# `seen` once per stanza whose SOURCE matched, and then, for that stanza, one of the rest (a bad
# HMAC in one of two wordings, depending on where the comparison failed).
FWKNOPD_LOG: dict[str, tuple[str, ...]] = {
    "seen": ("received with access source match",),
    "replay": ("Replay detected from source IP",),
    "accepted": ("Added access rule to",),
    "bad_auth": ("Non-corresponding HMAC for this stanza", "HMAC_COMPAREFAIL"),
    "stale": ("SPA data time difference is too great",),
    "no_source_address": ("Got 0.0.0.0 when valid source IP was required",),
    "port_denied": ("One or more requested protocol/ports was denied",),
}


def fwknopd_counts(log: str) -> dict[str, int]:
    """How many packets fwknopd logged under each of FWKNOPD_LOG's outcomes."""
    return {name: sum(log.count(text) for text in texts) for name, texts in FWKNOPD_LOG.items()}
