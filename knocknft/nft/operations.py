"""What the admin's commands do, independent of the command line: apply the table, grant, revoke,
list. Each takes an `Nft` so tests can run it against the real kernel or the stateful fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from knocknft.config import Config, Door, Invalid, IPAddress, parse_address
from knocknft.core.bans import Ban, lift_transaction
from knocknft.core.grants import Grant, revoke_transaction
from knocknft.core.ruleset import ruleset_transaction
from knocknft.errors import UsageError
from knocknft.nft.lastgood import last_good_path, save_last_good
from knocknft.nft.libnft import Nft
from knocknft.nft.queries import read_bans, read_grants, table_exists, table_missing


@dataclass(frozen=True)
class ApplyResult:
    replaced: bool  # the table existed before
    grants_kept: int
    grants: tuple[Grant, ...] = ()  # those kept, as listed right after the apply
    saved: Path | None = None  # the last-known-good copy for the boot guard
    save_error: str | None = None  # why it could not be saved (the table is loaded all the same)


def apply_config(nft: Nft, config: Config) -> ApplyResult:
    """Install or replace our table in one transaction; grants in the sets are kept.

    Once the kernel has accepted the script it is kept as the last-known-good ruleset that
    `knocknft guard` loads at boot. Failing to save does not undo or fail the apply: the kernel
    holds what was asked for, and the caller reports `save_error`.
    """
    table = config.options.table
    existed = table_exists(nft, table)
    tx = ruleset_transaction(config)
    nft.apply(tx)
    kept = tuple(read_grants(nft, table)) if existed else ()
    try:
        saved = save_last_good(config.options.state_dir, tx.render())
    except OSError as exc:
        where = last_good_path(config.options.state_dir)
        return ApplyResult(existed, len(kept), kept, save_error=f"{where}: {exc.strerror or exc}")
    return ApplyResult(existed, len(kept), kept, saved)


def parse_client_address(text: str) -> IPAddress:
    try:
        address = parse_address(text)
    except Invalid:
        raise UsageError(
            f"{text!r} is not an IP address (e.g. 198.18.0.2 or 2001:db8::2)"
        ) from None
    if address.is_unspecified or address.is_multicast:
        raise UsageError(f"{address} cannot be a client address")
    return address


def find_door(config: Config, name: str) -> Door:
    door = config.door(name)
    if door is None:
        known = ", ".join(d.name for d in config.doors) or "none"
        raise UsageError(f"no door named {name!r} in {config.source} (doors: {known})")
    return door


def granting_door(config: Config, name: str | None) -> Door:
    """The door `knocknft open` grants: the one named, or the config's only door with services
    to grant (a closing, banning or command-only door grants nothing). With no name and not
    exactly one such door, the error lists those there are."""
    if name is not None:
        return find_door(config, name)
    granting = [d for d in config.doors if d.open and d.deny_for is None]
    if len(granting) == 1:
        return granting[0]
    known = ", ".join(d.name for d in granting) or "none"
    raise UsageError(
        f"--door is needed: {config.source} has {len(granting)} doors that grant services ({known})"
    )


def open_grant(
    nft: Nft, config: Config, address: IPAddress, door: Door, seconds: int | None
) -> list[Grant]:
    """Grant (or refresh) every service of `door` to `address` for `seconds` (default open_for)."""
    if door.deny_for is not None:
        raise UsageError(f"door {door.name!r} bans its knockers: it has no services to grant")
    if not door.open:
        raise UsageError(f"door {door.name!r} has no open: services; it only runs commands")
    timeout = seconds if seconds is not None else door.open_for
    if timeout is None:  # Door validation makes open imply open_for; keep mypy and readers sure.
        raise UsageError(f"door {door.name!r} has no open_for; pass --for")
    grants = [Grant(address, service, door.name, timeout) for service in door.open]
    _require_table(nft, config.options.table)
    refused = nft.grant(config.options.table, grants)
    if refused:  # the admin asked for all of them: say which did not go in, and why
        raise refused[0].error
    return grants


def close_grants(nft: Nft, table: str, address: IPAddress, door: str | None) -> list[Grant]:
    """Revoke `address`'s grants (only those of `door` if given). Returns what was revoked."""
    current = [
        g
        for g in read_grants(nft, table)
        if g.address == address and (door is None or g.door == door)
    ]
    if current:
        nft.apply(revoke_transaction(table, [(g.address, g.service) for g in current]))
    return current


def lift_bans(nft: Nft, table: str, address: IPAddress, door: str | None) -> list[Ban]:
    """Lift `address`'s bans (only those of `door` if given). Returns what was lifted."""
    current = [
        b
        for b in read_bans(nft, table)
        if b.address == address and (door is None or b.door == door)
    ]
    if current:
        nft.apply(lift_transaction(table, current))
    return current


def _require_table(nft: Nft, table: str) -> None:
    if not table_exists(nft, table):
        raise table_missing(table)
