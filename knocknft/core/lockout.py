"""Would this table lock the admin out? The SSH session `apply` (or `run`, started by hand)
runs in (sshd's SSH_CONNECTION: client address, client port, server address, server port) is
judged against the new config: a protected service on sshd's port, and a client address that
always_allow does not cover, mean a new connection from there is dropped until it knocks.

Pure: the caller reads the environment and prints.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from knocknft.config import Config, IPAddress, PortSpec
from knocknft.core.sources import as_shown, from_loopback, hears_loopback


@dataclass(frozen=True)
class Lockout:
    """The admin's own session, which the new table would shut out."""

    address: IPAddress
    service: PortSpec
    session_ends: bool  # close_sessions: the established session ends too, at its next grant end

    def warning(self, confirming: bool | None) -> str:
        """What to tell the admin: applying (`confirming` whether with --confirm), or None: the
        daemon, started by hand over SSH, loading it now."""
        ends = (
            "; close_sessions ends this session too once it holds no grant"
            if self.session_ends
            else ""
        )
        if confirming is None:
            fix = "or knock from a new session now to check that you get in"
        elif confirming:
            fix = "check from a NEW session before `knocknft confirm`"
        else:
            fix = "or apply with --confirm DURATION, so that a lockout rolls itself back"
        return (
            f"your SSH session comes from {self.address} to {self.service}, which the new table "
            f"drops for every source without a grant: {self.address} is not in always_allow, "
            f"so a new SSH connection from it needs a knock first{ends}. Add {self.address} "
            f"(or its network) to options.always_allow, {fix}"
        )


def ssh_lockout(config: Config, ssh_connection: str) -> Lockout | None:
    """The lockout the SSH_CONNECTION value describes under `config`, or None when there is
    none (sshd's port not protected, the client trusted, loopback not gated) or the value is
    not one sshd writes."""
    fields = ssh_connection.split()
    if len(fields) != 4 or not fields[3].isdigit():
        return None
    try:
        # A link-local client comes with its zone (fe80::1%eth0); the zone does not matter here.
        address = as_shown(ipaddress.ip_address(fields[0].split("%", 1)[0]))
    except ValueError:
        return None
    service = PortSpec(int(fields[3]), "tcp")
    if service not in config.protected:
        return None
    if from_loopback(address) and not hears_loopback(config.options.interfaces):
        return None  # loopback is accepted before our gate
    if trusted(config, address):
        return None
    return Lockout(address, service, service in config.sessions_closed)


def trusted(config: Config, address: IPAddress) -> bool:
    """Whether always_allow lets `address` in: a network of it, or an address a name of it
    resolved to."""
    networks = config.options.always_allow
    if any(address.version == n.version and address in n for n in networks):
        return True
    return any(address == resolved for _, resolved in config.always_allow_resolved)
