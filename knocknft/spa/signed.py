"""knocknft's own single packet: a request signed with the client's Ed25519 key.

The server holds only public keys (a door's `clients:`), so its config opens nothing for
whoever steals it: unlike fwknop's shared keys, no secret of the client's is on the server.

One UDP datagram, binary, all integers big-endian:

    offset  bytes  field
    0       3      MAGIC, 0xFF "KN": 0xFF is no base64 character, so the verifier tells this
                   packet from fwknop's (base64 text) by its first byte
    3       1      VERSION (1); another version is refused as malformed
    4       8      key id: the first 8 bytes of SHA-256 over the client's 32-byte public key, so
                   the server finds the key to check without trying every client's
    12      8      timestamp, Unix seconds
    20      16     nonce, random: two requests in the same second still differ
    36      4      open_for asked for, seconds; 0 for the door's own
    40      1      address kind: 0 the packet's source (the client is behind NAT), 4 or 6
    41      0/4/16 the address to grant (IPv4 or IPv6), as the kind says
    ..      1      length of the door's name, 1 to 32
    ..      n      the door's name, ASCII
    ..      64     Ed25519 signature over every byte before it

107 bytes at least, 168 at most. Nothing may follow the signature.

The checks go signature first (nothing unauthenticated is read further), then the timestamp
window, then whether the key may open the door it names (listed there, not revoked, not
expired). The replay digest is SHA-256 of the signed body: the same request is the same digest
however its bytes are re-sent. Pure: `now` and the nonce are the caller's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from knocknft.config import DOOR_NAME_RE, ClientKey, Door, IPAddress
from knocknft.spa.request import Rejection, SpaRequest, expired, granted_seconds

MAGIC = b"\xffKN"
VERSION = 1
KEY_ID_BYTES = 8
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAX_DOOR_NAME = 32  # DOOR_NAME_RE's limit
MAX_OPEN_FOR = 2**32 - 1

# MAGIC, VERSION, key id, timestamp, nonce, open_for: the fixed head of every packet.
_HEAD = struct.Struct(f">{len(MAGIC)}sB{KEY_ID_BYTES}sQ{NONCE_BYTES}sI")
_ADDRESS_BYTES = {0: 0, 4: 4, 6: 16}
MIN_PACKET = _HEAD.size + 1 + 1 + 1 + SIGNATURE_BYTES
MAX_PACKET = _HEAD.size + 1 + 16 + 1 + MAX_DOOR_NAME + SIGNATURE_BYTES


@dataclass(frozen=True)
class SignedPacket:
    """A packet's fields as parsed; nothing here is authenticated until the signature is."""

    key_id: bytes
    stamp: int
    nonce: bytes
    open_for: int  # 0: the door's
    address: IPAddress | None  # None: the packet's source
    door: str
    body: bytes  # every byte the signature covers
    signature: bytes


@lru_cache(maxsize=4096)
def key_id(public_key: bytes) -> bytes:
    """The id a packet names its key by (cached: the server computes each client's once)."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_BYTES]


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of the key's public half: what the server's config holds."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_request(
    private_key: Ed25519PrivateKey,
    door: str,
    address: IPAddress | None,
    open_for: int,
    *,
    now: float,
    nonce: bytes,
) -> bytes:
    """The packet asking for `door` to be opened for `address` (None: the packet's source) for
    `open_for` seconds (0: the door's own), stamped `now`. Raises ValueError for a field the
    format cannot hold (a door name no config accepts, a short nonce, a negative open_for)."""
    if not DOOR_NAME_RE.match(door) or not door.isascii():
        raise ValueError(f"{door!r} is not a door name")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
    if not 0 <= open_for <= MAX_OPEN_FOR:
        raise ValueError(f"open_for {open_for} is out of range")
    head = _HEAD.pack(MAGIC, VERSION, key_id(public_bytes(private_key)), int(now), nonce, open_for)
    where = b"\0" if address is None else bytes([address.version]) + address.packed
    body = head + where + bytes([len(door)]) + door.encode("ascii")
    return body + private_key.sign(body)


def replay_digest(payload: bytes) -> bytes:
    """The replay cache's key for a signed packet: SHA-256 of its signed body. Computed before
    any crypto, so the verifier can look it up first; equal to SpaRequest.digest on accept."""
    return hashlib.sha256(payload[:-SIGNATURE_BYTES]).digest()


def parse_signed(payload: bytes) -> SignedPacket | None:
    """The packet's fields, or None when it is not a well-formed version-1 packet."""
    if not MIN_PACKET <= len(payload) <= MAX_PACKET:
        return None
    magic, version, kid, stamp, nonce, open_for = _HEAD.unpack_from(payload)
    at = _HEAD.size
    size = _ADDRESS_BYTES.get(payload[at], -1)
    address = _address(payload[at + 1 : at + 1 + size]) if size > 0 else None
    at += 1 + size
    name = payload[at + 1 : at + 1 + payload[at]]
    at += 1 + len(name)
    door = name.decode("ascii") if name.isascii() else ""
    well_formed = (
        magic == MAGIC
        and version == VERSION
        and size >= 0
        and (size == 0 or address is not None)
        and len(payload) - at == SIGNATURE_BYTES
        and DOOR_NAME_RE.match(door) is not None
    )
    if not well_formed:
        return None
    return SignedPacket(kid, stamp, nonce, open_for, address, door, payload[:at], payload[at:])


def _address(raw: bytes) -> IPAddress | None:
    """The address to grant; None for the unspecified one: "the packet's source" has a kind of
    its own, and 0.0.0.0 or :: is no client."""
    address = ipaddress.ip_address(raw)
    return None if address.is_unspecified else address


def check_signed(
    payload: bytes, source: IPAddress, doors: Sequence[Door], window: int, now: float
) -> SpaRequest | Rejection:
    """What a signed packet from `source` asks for, or why it is refused. Never raises: any
    bytes at all are a Rejection at worst."""
    packet = parse_signed(payload)
    if packet is None:
        return Rejection.MALFORMED
    public_key = _signer(packet, doors)
    if public_key is None:
        return Rejection.BAD_AUTH
    if abs(now - packet.stamp) > window:
        return Rejection.STALE
    door = next((d for d in doors if d.name == packet.door and d.clients), None)
    client = _client(door, public_key) if door is not None else None
    open_for = granted_seconds(door, packet.open_for) if door is not None else None
    if door is None or client is None or open_for is None or not _valid(client, now):
        return Rejection.NOT_ALLOWED
    return SpaRequest(
        door=door.name,
        key=client.name,
        address=source if packet.address is None else packet.address,
        services=door.open,
        open_for=open_for,
        digest=hashlib.sha256(packet.body).digest(),
        mode="signed",
        stamp=packet.stamp,
    )


def _signer(packet: SignedPacket, doors: Sequence[Door]) -> bytes | None:
    """The public key, among every SPA door's clients, whose id the packet names and whose
    signature it carries; None when there is none. Ids that collide (a 64-bit prefix, so only
    on purpose) are each tried."""
    tried: set[bytes] = set()
    for door in doors:
        for client in door.clients:
            key = client.public_key
            if key in tried or key_id(key) != packet.key_id:
                continue
            tried.add(key)
            verifier = _public_key(key)
            if verifier is None:
                continue
            try:
                verifier.verify(packet.signature, packet.body)
            except InvalidSignature:
                continue
            return key
    return None


@lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None  # the config's parser checks keys; a broken one opens nothing anyway


def _client(door: Door, public_key: bytes) -> ClientKey | None:
    return next((c for c in door.clients if c.public_key == public_key), None)


def _valid(client: ClientKey, now: float) -> bool:
    return not client.revoked and not expired(client.expires, now)
