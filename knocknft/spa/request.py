"""What judging an SPA packet gives: a request to grant, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from knocknft.config import IPAddress, PortSpec

SpaMode = Literal["fwknop", "signed"]


class Rejection(StrEnum):
    """Why a packet opened nothing; the values name the counters and log lines."""

    MALFORMED = "malformed"  # not an SPA packet of either mode, or fields that do not parse
    BAD_AUTH = "bad_auth"  # no key's HMAC or signature matches
    STALE = "stale"  # the timestamp is outside the window
    REPLAY = "replay"  # this very packet was accepted before
    # The packet is authentic, but its source, a port outside the door's open, an expired or
    # revoked key, 0.0.0.0 with require_source_address, or an unknown door refuse it.
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True)
class SpaRequest:
    """An authenticated, allowed request: grant `address` `services` for `open_for` seconds."""

    door: str
    # Who asked: the door's name for an fwknop stanza, the client's name for a public key.
    key: str
    # The address to grant: the one inside the packet, or its source when it named 0.0.0.0.
    address: IPAddress
    services: tuple[PortSpec, ...]  # within the door's open
    open_for: int  # seconds: the door's, or the client's capped by max_open_for
    digest: bytes  # the replay cache's key for this packet
    mode: SpaMode
    # The packet's timestamp (the client's clock): the verifier keeps `digest` until it leaves
    # the window. None: kept for as long as any packet accepted now could still pass (now plus
    # twice the window).
    stamp: float | None = None
