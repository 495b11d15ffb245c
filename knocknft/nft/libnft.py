"""The libnftables adapter: the one place that talks to the kernel's ruleset.

`Nft` is the small interface the rest of knocknft uses: apply a transaction (knocknft.core.
transaction) all or nothing, read a listing as JSON, add or refresh grants, and load a script
knocknft saved earlier (the boot guard's last-good.nft, which is a file, so it stays text).
`LibNft` implements it with the distribution's `nftables` binding (ctypes over libnftables.so.1),
except grants, which take the short way of `knocknft.netlink.setelem` when it works. Errors are
classified into knocknft's tree here. The reads built on `list_json` are knocknft.nft.queries;
the stateful stand-in for tests is knocknft.nft.fake.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.transaction import Transaction
from knocknft.errors import NftError, TableMissing
from knocknft.netlink.setelem import SetElementSocket

log = logging.getLogger("knocknft")


class Nft(Protocol):
    def apply(self, tx: Transaction) -> None:
        """Apply `tx` as one kernel transaction: every command or none."""

    def load_script(self, script: str) -> None:
        """Load a script knocknft saved earlier, as it is (knocknft.nft.lastgood checks it)."""

    def list_json(self, command: str) -> dict[str, Any]:
        """Run a list command and return the parsed JSON output."""

    def grant(self, table: str, grants: Sequence[Grant]) -> None:
        """Add or refresh `grants` in one transaction (see grants.render_grant)."""


class NftSnapshots(Nft, Protocol):
    """What saving a table and restoring it later needs beyond `Nft` (knocknft.admin.confirm)."""

    def list_text(self, command: str) -> str:
        """A listing as nft text, without set elements or counters: a script that re-declares
        the objects and adds nothing else."""

    def check(self, tx: Transaction) -> None:
        """Have the kernel validate `tx` without committing it, as `nft -c` does."""


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

    def apply(self, tx: Transaction) -> None:
        self._run(tx.render())

    def load_script(self, script: str) -> None:
        self._run(script)

    def _run(self, script: str) -> None:
        rc, _out, err = self._nft.cmd(script)
        if rc != 0:
            raise classify(err, script)

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
        self.apply(grant_transaction(table, grants))

    def list_text(self, command: str) -> str:
        self._nft.set_terse_output(True)
        self._nft.set_stateless_output(True)
        try:
            rc, out, err = self._nft.cmd(command)
        finally:
            self._nft.set_terse_output(False)
            self._nft.set_stateless_output(False)
        if rc != 0:
            raise classify(err, command)
        return str(out)

    def check(self, tx: Transaction) -> None:
        self._nft.set_dry_run(True)
        try:
            self.apply(tx)
        finally:
            self._nft.set_dry_run(False)

    def list_json(self, command: str) -> dict[str, Any]:
        self._nft.set_json_output(True)
        try:
            rc, out, err = self._nft.cmd(command)
        finally:
            self._nft.set_json_output(False)
        if rc != 0:
            raise classify(err, command)
        parsed: dict[str, Any] = json.loads(out) if out.strip() else {"nftables": []}
        return parsed


def classify(err: str, script: str) -> NftError:
    """libnftables' error text as knocknft's error: a missing table or set is TableMissing."""
    text = err.strip() or "libnftables failed without a message"
    if "No such file or directory" in text and ("table" in script or "set" in script):
        return TableMissing(text)
    if "Operation not permitted" in text:
        return NftError(f"{text}\n(nft needs root, or CAP_NET_ADMIN)")
    return NftError(text)
