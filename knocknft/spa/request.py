"""What judging an SPA packet gives: a request to grant, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Literal

from knocknft.config import Door, IPAddress, PortSpec

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


# -- the rules both modes apply to an authentic packet ------------------------------------------


def granted_seconds(door: Door, asked: int) -> int | None:
    """How long the grant lasts: the door's open_for (FW_ACCESS_TIMEOUT), or what the client
    asked for (fwknop -f, knock -f; 0: nothing asked) capped by the door's max_open_for
    (MAX_FW_TIMEOUT; its open_for without one). None without an open_for, which a parsed config
    never lets an SPA door lack."""
    if door.open_for is None or asked <= 0:
        return door.open_for
    return min(asked, door.max_open_for or door.open_for)


def expired(expires: date | None, now: float) -> bool:
    """An fwknop stanza's ACCESS_EXPIRE, a client key's expires: served through that day (UTC),
    refused after it."""
    return expires is not None and datetime.fromtimestamp(now, UTC).date() > expires
