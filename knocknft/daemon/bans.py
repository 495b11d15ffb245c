"""Bans carried out: the knocker of a banning door put on the kernel's deny list, logged and
audited.

`Banner` is the executor's hand for `BanSources` and `ReportBan` (knocknft.core.decide): one
nft transaction per batch; when the kernel refuses it (a deny set full of forged completions,
say), the batch's bans are logged as failed, never reported as done. Log lines go through the
executor's rate limit for OPEN and grant lines (`allow`); the audit log gets every ban.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from knocknft.config import IPAddress
from knocknft.core.bans import Ban, ban_transaction
from knocknft.errors import KnocknftError
from knocknft.nft.libnft import Nft

log = logging.getLogger("knocknft")


class Banner:
    """Adds bans for the executor; remembers the last batch's failures so none is reported."""

    def __init__(
        self,
        nft: Nft,
        *,
        allow: Callable[[], bool],
        audit: Callable[..., None],
        who: Callable[[IPAddress], object],
    ) -> None:
        self.nft = nft
        self._allow = allow
        self._audit = audit
        self._who = who
        self._failed: set[Ban] = set()
        self.banned = 0
        self.failed = 0

    def ban(self, table: str, bans: Sequence[Ban]) -> None:
        self._failed = set()
        try:
            self.nft.apply(ban_transaction(table, bans))
        except KnocknftError as exc:
            self._failed = set(bans)
            self.failed += len(bans)
            if self._allow():
                who = ", ".join(str(self._who(b.address)) for b in bans)
                log.error("could not ban %s: %s", who, exc)
            for b in bans:
                self._audit("ban_failed", source=b.address, door=b.door, error=str(exc))
        else:
            self.banned += len(bans)

    def report(self, ban: Ban) -> None:
        if ban in self._failed:
            return
        if self._allow():
            log.info(
                "%s: %s: banned from %s for %ds",
                self._who(ban.address),
                ban.door,
                "the protected services" if ban.scope == "services" else "this host",
                ban.timeout,
            )
        self._audit("ban", source=ban.address, door=ban.door, deny=ban.scope, timeout=ban.timeout)
