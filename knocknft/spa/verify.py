"""The verifier: one SPA packet's payload, its source and the time in; a request to grant, or why
not, out. The cheap tests come first and the cryptography last, in fwknopd's order: length and
characters, SOURCE, the replay cache (a digest of the raw payload), then the mode's own checks
(HMAC or signature, decryption, the timestamp window, the address, the ports). An accepted
packet's digest goes into the replay cache before the request is handed out.

Modes: fwknop's base64 text (knocknft.spa.fwknop), and knocknft's own signed packets
(knocknft.spa.signed), told apart by the signed packet's first bytes, which no base64 has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from knocknft.config import Config, Door, IPAddress
from knocknft.spa import signed
from knocknft.spa.fwknop import MAX_PAYLOAD, check_fwknop, looks_like_fwknop, source_allowed
from knocknft.spa.replay import ReplayCache, replay_digest
from knocknft.spa.request import Rejection, SpaRequest

# Authentic packets last refused as stale, by digest: a captured packet sent again and again once
# its window is past costs a lookup, not an HMAC and a decryption each time (about 20 times
# more). Only STALE is kept: it depends on the packet and the clock, not on who sends it. Bounded;
# the oldest is forgotten first, which costs only the cryptography again.
STALE_REMEMBERED = 4096

CheckPacket = Callable[[bytes, IPAddress, Sequence[Door], int, float], SpaRequest | Rejection]
Digest = Callable[[bytes], bytes]
# A mode of packets other than fwknop's: the first bytes that mark them, their check, and their
# replay key, computed before any cryptography (and equal to the accepted request's digest).
SignedMode = tuple[bytes, CheckPacket, Digest]
# The signed mode (knocknft.spa.signed): Ed25519-signed packets for the doors with clients.
SIGNED_MODE: SignedMode = (signed.MAGIC, signed.check_signed, signed.replay_digest)


def owner(request: SpaRequest) -> str:
    """Whose share of the replay cache a request's digest takes: its key, by mode (an fwknop
    stanza and a client may share a name, not a share)."""
    return f"{request.mode}:{request.key}"


class SpaVerifier:
    """Judges SPA packets against a config's SPA doors, with a replay cache that outlives
    reloads (`replace`)."""

    def __init__(
        self,
        config: Config,
        replay: ReplayCache,
        signed_mode: SignedMode | None = SIGNED_MODE,
    ) -> None:
        self.replay = replay
        self.signed_mode = signed_mode
        # Authentic requests refused because the replay cache was full of live digests.
        self.refused_cache_full = 0
        self._stale: dict[bytes, None] = {}
        self.replace(config)

    def replace(self, config: Config) -> None:
        """Take a reloaded config; the replay cache stays, so no packet accepted before the
        reload passes again after it."""
        self.window = config.options.spa_window
        self._stale.clear()  # judged under the old window
        self.fwknop_doors = tuple(d for d in config.doors if d.fwknop is not None)
        self.client_doors = tuple(d for d in config.doors if d.clients)
        # The keys that share the replay cache, as `owner` names them.
        clients = {c.name for d in self.client_doors for c in d.clients}
        self.replay.owners = len(self.fwknop_doors) + len(clients)

    def check(self, payload: bytes, source: IPAddress, now: float) -> SpaRequest | Rejection:
        """The packet's request, its digest now in the replay cache; or why it opens nothing."""
        route = self._route(payload, source)
        if isinstance(route, Rejection):
            return route
        check, doors, digest_of = route
        digest = digest_of(payload)
        if self.replay.seen(digest, now):
            return Rejection.REPLAY
        if digest in self._stale:
            return Rejection.STALE
        result = check(payload, source, doors, self.window, now)
        if isinstance(result, Rejection):
            if result is Rejection.STALE:
                self._remember_stale(digest)
            return result
        # Kept while the packet could pass the window: its stamp plus the window; without a
        # stamp, as long as any packet accepted now can (its stamp at most now + window).
        stamp = result.stamp if result.stamp is not None else now + self.window
        if not self.replay.add(digest, stamp + self.window, owner(result)):
            self.refused_cache_full += 1
            return Rejection.NOT_ALLOWED
        return result

    def _remember_stale(self, digest: bytes) -> None:
        if len(self._stale) >= STALE_REMEMBERED:
            del self._stale[next(iter(self._stale))]
        self._stale[digest] = None

    def _route(
        self, payload: bytes, source: IPAddress
    ) -> tuple[CheckPacket, Sequence[Door], Digest] | Rejection:
        """The mode a packet is in, the doors that may take it and its replay key, from its
        first bytes, its length and its characters; or why it is none."""
        if not 0 < len(payload) <= MAX_PAYLOAD:
            return Rejection.MALFORMED
        if self.signed_mode is not None and payload.startswith(self.signed_mode[0]):
            _, check, digest_of = self.signed_mode
            return check, self.client_doors, digest_of
        if not looks_like_fwknop(payload):
            return Rejection.MALFORMED
        # fwknopd's SOURCE test, before anything else is done for the packet.
        if not any(d.fwknop and source_allowed(d.fwknop, source) for d in self.fwknop_doors):
            return Rejection.NOT_ALLOWED
        return check_fwknop, self.fwknop_doors, replay_digest
