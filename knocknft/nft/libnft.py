"""The libnftables adapter: the one place that talks to the kernel's ruleset.

`Nft` is the small interface the rest of knocknft uses: run an nft script as one transaction, read
a listing as JSON, and add or refresh grants. `LibNft` implements it with the distribution's
`nftables` binding (ctypes over libnftables.so.1), except grants, which take the short way of
`knocknft.netlink.setelem` when it works. Errors are mapped into knocknft's tree here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from knocknft.core.grants import ALLOW4, ALLOW6, Grant, parse_set_listing, render_grant, sort_grants
from knocknft.errors import NftError, TableMissing
from knocknft.netlink.setelem import SetElementSocket

log = logging.getLogger("knocknft")


class Nft(Protocol):
    def run(self, script: str) -> None:
        """Run an nft script as one transaction: every command or none."""

    def list_json(self, command: str) -> dict[str, Any]:
        """Run a list command and return the parsed JSON output."""

    def grant(self, table: str, grants: Sequence[Grant]) -> None:
        """Add or refresh `grants` in one transaction (see grants.render_grant)."""


class NftSnapshots(Nft, Protocol):
    """What saving a table and restoring it later needs beyond `Nft` (knocknft.admin.confirm)."""

    def list_text(self, command: str) -> str:
        """A listing as nft text, without set elements or counters: a script that re-declares
        the objects and adds nothing else."""

    def check(self, script: str) -> None:
        """Have the kernel validate a script without committing it, as `nft -c` does."""


class LibNft:
    """`Nft` over libnftables. One handle per instance; not thread-safe, like libnftables."""

    def __init__(self) -> None:
        try:
            import nftables
        except ImportError as exc:
            raise NftError(
                "the nftables Python binding is missing: install python3-nftables "
                "(Debian) and run knocknft from the virtual environment the Makefile builds"
            ) from exc
        self._nft = nftables.Nftables()
        self._nft.set_json_output(False)
        self._elements: SetElementSocket | None = None
        self._elements_failed = False

    def run(self, script: str) -> None:
        rc, _out, err = self._nft.cmd(script)
        if rc != 0:
            raise _classify(err, script)

    def grant(self, table: str, grants: Sequence[Grant]) -> None:
        if not self._elements_failed:
            try:
                if self._elements is None:
                    self._elements = SetElementSocket()
                self._elements.grant(table, grants)
                return
            except TableMissing:
                raise
            except NftError as exc:
                # Whatever the short way trips over, the script says the same thing in nft's own
                # words; it stays the way from now on, at its usual cost.
                self._elements_failed = True
                log.warning("direct set-element writes failed (%s); using libnftables", exc)
        self.run(render_grant(table, grants))

    def list_text(self, command: str) -> str:
        self._nft.set_terse_output(True)
        self._nft.set_stateless_output(True)
        try:
            rc, out, err = self._nft.cmd(command)
        finally:
            self._nft.set_terse_output(False)
            self._nft.set_stateless_output(False)
        if rc != 0:
            raise _classify(err, command)
        return str(out)

    def check(self, script: str) -> None:
        self._nft.set_dry_run(True)
        try:
            self.run(script)
        finally:
            self._nft.set_dry_run(False)

    def list_json(self, command: str) -> dict[str, Any]:
        self._nft.set_json_output(True)
        try:
            rc, out, err = self._nft.cmd(command)
        finally:
            self._nft.set_json_output(False)
        if rc != 0:
            raise _classify(err, command)
        parsed: dict[str, Any] = json.loads(out) if out.strip() else {"nftables": []}
        return parsed


def _classify(err: str, script: str) -> NftError:
    text = err.strip() or "libnftables failed without a message"
    if "No such file or directory" in text and ("table" in script or "set" in script):
        return TableMissing(text)
    if "Operation not permitted" in text:
        return NftError(f"{text}\n(nft needs root, or CAP_NET_ADMIN)")
    return NftError(text)


def read_grants(nft: Nft, table: str) -> list[Grant]:
    """Every grant in our two sets. Raises TableMissing if the table is not loaded."""
    grants: list[Grant] = []
    try:
        for name in (ALLOW4, ALLOW6):
            grants += parse_set_listing(nft.list_json(f"list set inet {table} {name}"))
    except TableMissing as exc:
        raise table_missing(table) from exc
    return sort_grants(grants)


def table_missing(table: str) -> TableMissing:
    return TableMissing(f"table inet {table} is not loaded: run `knocknft apply` first")


def chain_names(nft: Nft, table: str) -> list[str]:
    """The chains of our table as the kernel has them now; none when the table is missing."""
    listing = nft.list_json("list chains inet")
    return [
        item["chain"]["name"]
        for item in listing.get("nftables", [])
        if isinstance(item, dict)
        and isinstance(item.get("chain"), dict)
        and item["chain"].get("table") == table
    ]


def table_listed(nft: Nft, table: str) -> bool:
    """Whether our table exists, asking only for the list of tables: cheap enough to poll, as
    it reads no set element."""
    listing = nft.list_json("list tables inet")
    return any(
        isinstance(item, dict)
        and isinstance(item.get("table"), dict)
        and item["table"].get("name") == table
        for item in listing.get("nftables", [])
    )


def table_exists(nft: Nft, table: str) -> bool:
    try:
        nft.list_json(f"list table inet {table}")
    except TableMissing:
        return False
    return True
