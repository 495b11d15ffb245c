"""The verifier: one SPA packet's payload, its source and the time in; a request to grant, or why
not, out. The cheap tests come first and the cryptography last, in fwknopd's order: length and
characters, SOURCE, the replay cache (a digest of the raw payload), then the mode's own checks
(HMAC or signature, decryption, the timestamp window, the address, the ports). An accepted
packet's digest goes into the replay cache before the request is handed out.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import cast

from knocknft.config import Config, Door, IPAddress
from knocknft.spa.fwknop import MAX_PAYLOAD, check_fwknop, looks_like_fwknop, source_allowed
from knocknft.spa.replay import ReplayCache, replay_digest
from knocknft.spa.request import Rejection, SpaRequest

CheckPacket = Callable[[bytes, IPAddress, Sequence[Door], int, float], SpaRequest | Rejection]


# ---- HOOK: the signed mode (knocknft/spa/signed.py: MAGIC and check_signed) ------------------
# Until that module exists, no packet is taken for a signed one: a packet starting with its
# MAGIC (not base64) then fails looks_like_fwknop and is refused as malformed. Once it exists,
# this block can become `from knocknft.spa.signed import MAGIC, check_signed`.
def _signed_mode() -> tuple[bytes, CheckPacket] | None:
    try:
        signed = importlib.import_module("knocknft.spa.signed")
    except ModuleNotFoundError:
        return None
    return cast(bytes, signed.MAGIC), cast(CheckPacket, signed.check_signed)


SIGNED_MODE = _signed_mode()
# ---- end of the hook -------------------------------------------------------------------------


class SpaVerifier:
    """Judges SPA packets against a config's SPA doors, with a replay cache that outlives
    reloads (`replace`)."""

    def __init__(
        self,
        config: Config,
        replay: ReplayCache,
        signed_mode: tuple[bytes, CheckPacket] | None = SIGNED_MODE,
    ) -> None:
        self.replay = replay
        self.signed_mode = signed_mode
        # Authentic requests refused because the replay cache was full of live digests.
        self.refused_cache_full = 0
        self.replace(config)

    def replace(self, config: Config) -> None:
        """Take a reloaded config; the replay cache stays, so no packet accepted before the
        reload passes again after it."""
        self.window = config.options.spa_window
        self.fwknop_doors = tuple(d for d in config.doors if d.fwknop is not None)
        self.client_doors = tuple(d for d in config.doors if d.clients)

    def check(self, payload: bytes, source: IPAddress, now: float) -> SpaRequest | Rejection:
        """The packet's request, its digest now in the replay cache; or why it opens nothing."""
        route = self._route(payload, source)
        if isinstance(route, Rejection):
            return route
        check, doors = route
        digest = replay_digest(payload)
        if self.replay.seen(digest, now):
            return Rejection.REPLAY
        result = check(payload, source, doors, self.window, now)
        if isinstance(result, Rejection):
            return result
        # A mode may name its own replay key too (a signed packet's nonce, say): a packet
        # re-encoded into other bytes with the same meaning is then caught by that one.
        if result.digest != digest and self.replay.seen(result.digest, now):
            return Rejection.REPLAY
        if not self._remember(result, digest, now):
            self.refused_cache_full += 1
            return Rejection.NOT_ALLOWED
        return result

    def _route(
        self, payload: bytes, source: IPAddress
    ) -> tuple[CheckPacket, Sequence[Door]] | Rejection:
        """The mode a packet is in and the doors that may take it, from its first bytes, its
        length and its characters; or why it is none."""
        if not 0 < len(payload) <= MAX_PAYLOAD:
            return Rejection.MALFORMED
        if self.signed_mode is not None and payload.startswith(self.signed_mode[0]):
            return self.signed_mode[1], self.client_doors
        if not looks_like_fwknop(payload):
            return Rejection.MALFORMED
        # fwknopd's SOURCE test, before anything else is done for the packet.
        if not any(d.fwknop and source_allowed(d.fwknop, source) for d in self.fwknop_doors):
            return Rejection.NOT_ALLOWED
        return check_fwknop, self.fwknop_doors

    def _remember(self, result: SpaRequest, digest: bytes, now: float) -> bool:
        """Put the accepted packet's digests in the replay cache, kept while the packet could
        pass the window: its stamp plus the window; without a stamp, as long as any packet
        accepted now can (its stamp at most now + window). False if the cache has no room."""
        stamp = result.stamp if result.stamp is not None else now + self.window
        digests = list(dict.fromkeys((digest, result.digest)))
        if len(self.replay) + len(digests) > self.replay.capacity:
            return False
        return all([self.replay.add(d, stamp + self.window) for d in digests])
