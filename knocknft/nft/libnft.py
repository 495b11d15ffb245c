"""The libnftables adapter: the one place that talks to the kernel's ruleset.

`Nft` is the small interface the rest of knocknft uses: apply a transaction (knocknft.core.
transaction) all or nothing, read a listing as JSON, add or refresh grants, and load a script
knocknft saved earlier (the boot guard's last-good.nft, which is a file, so it stays text).
`LibNft` implements it with the distribution's `nftables` binding (ctypes over libnftables.so.1),
except grants, which take the short way of `knocknft.netlink.setelem` when it works. Errors are
classified into knocknft's tree here.

Grants fail one by one, never all: a grant the kernel refuses (a full set) is reported with
its reason, and the others of its call go in. The short way is given up for the daemon's life
only for a failure the script does not have: the kernel refused the batch itself, or a grant for
a reason other than a full set (BatchRefused: the encoding is what it did not take), and the
script then did the same work. A timeout, a full set or a missing table proves nothing against
the short way, so it stays. The reads built on `list_json` are knocknft.nft.queries;
the stateful stand-in for tests is knocknft.nft.fake.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from knocknft.config import IPAddress, PortSpec
from knocknft.core.grants import Grant, Refusal, grant_transaction, revoke_transaction
from knocknft.core.transaction import Transaction
from knocknft.errors import BatchRefused, NftError, SetFull, TableMissing
from knocknft.netlink.setelem import SetElementSocket
from knocknft.nft.binding import import_nftables

log = logging.getLogger("knocknft")


class Nft(Protocol):
    def apply(self, tx: Transaction) -> None:
        """Apply `tx` as one kernel transaction: every command or none."""

    def load_script(self, script: str) -> None:
        """Load a script knocknft saved earlier, as it is (knocknft.nft.lastgood checks it)."""

    def list_json(self, command: str) -> dict[str, Any]:
        """Run a list command and return the parsed JSON output."""

    def grant(
        self,
        table: str,
        grants: Sequence[Grant],
        evictions: Sequence[tuple[IPAddress, PortSpec]] = (),
    ) -> list[Refusal]:
        """Remove `evictions` (whether or not they are there), then add or refresh `grants`
        (see grants.grant_transaction); returns the grants the kernel refused, each with its
        reason (SetFull for a full set): the others went in. Raises TableMissing."""


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
        self._nft = import_nftables().Nftables()
        self._nft.set_json_output(False)
        self._elements: SetElementSocket | None = None
        self._elements_off = False

    def apply(self, tx: Transaction) -> None:
        self._run(tx.render())

    def load_script(self, script: str) -> None:
        self._run(script)

    def _run(self, script: str) -> None:
        rc, _out, err = self._nft.cmd(script)
        if rc != 0:
            raise classify(err, script)

    def grant(
        self,
        table: str,
        grants: Sequence[Grant],
        evictions: Sequence[tuple[IPAddress, PortSpec]] = (),
    ) -> list[Refusal]:
        if not grants and not evictions:
            return []
        if self._elements_off:
            return self._script_grant(table, grants, evictions)
        try:
            if self._elements is None:
                self._elements = SetElementSocket()
            refused = self._elements.grant(table, grants, evictions)
        except TableMissing:
            raise
        except BatchRefused as exc:
            refused = self._script_grant(table, grants, evictions)  # raises if it fails too
            self._give_up_short_way(exc)
            return refused
        except NftError as exc:  # a timeout, a lost socket: the next batch may well work
            log.warning("direct set-element write failed (%s); this once through libnftables", exc)
            return self._script_grant(table, grants, evictions)
        odd = [r for r in refused if isinstance(r.error, BatchRefused)]
        if not odd:
            return refused
        # Refused for a reason that is not a full set: ask the script; if it takes them, the
        # fault was the short way's.
        again = self._script_grant(table, [r.grant for r in odd])
        if len(again) < len(odd):
            self._give_up_short_way(odd[0].error)
        return [r for r in refused if r not in odd] + again

    def _give_up_short_way(self, exc: NftError) -> None:
        self._elements_off = True
        log.warning(
            "direct set-element writes failed where libnftables did not (%s): "
            "grants go through libnftables from now on",
            exc,
        )

    def _script_grant(
        self,
        table: str,
        grants: Sequence[Grant],
        evictions: Sequence[tuple[IPAddress, PortSpec]] = (),
    ) -> list[Refusal]:
        """The script's way: one transaction; if it fails, the evictions alone and each grant in
        a transaction of its own, so that the script too fails grants one by one."""
        tx = revoke_transaction(table, evictions).extend(grant_transaction(table, grants))
        try:
            self.apply(tx)
            return []
        except TableMissing:
            raise
        except NftError:
            pass
        if evictions:
            try:
                self.apply(revoke_transaction(table, evictions))
            except TableMissing:
                raise
            except NftError as exc:
                log.warning("could not evict %d grant(s): %s", len(evictions), exc)
        refused = []
        for grant in grants:
            try:
                self.apply(grant_transaction(table, [grant]))
            except TableMissing:
                raise
            except NftError as exc:
                refused.append(Refusal(grant, exc))
        return refused

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


# strerror of ENFILE (what the kernel says for a full set), ENOSPC and E2BIG, as nft prints them.
_SET_FULL_WORDS = (
    "Too many open files in system",
    "No space left on device",
    "Argument list too long",
)


def classify(err: str, script: str) -> NftError:
    """libnftables' error text as knocknft's error: a missing table or set is TableMissing."""
    text = err.strip() or "libnftables failed without a message"
    if "No such file or directory" in text and ("table" in script or "set" in script):
        return TableMissing(text)
    if any(words in text for words in _SET_FULL_WORDS):
        return SetFull(f"an allowlist set is full: {text.splitlines()[0]}")
    if "Operation not permitted" in text:
        return NftError(f"{text}\n(nft needs root, or CAP_NET_ADMIN)")
    return NftError(text)
