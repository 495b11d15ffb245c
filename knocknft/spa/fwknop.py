"""fwknop 2.6's single packet authorization, Rijndael + HMAC mode, as its clients send it with
`--use-hmac`: written from fwknop's lib/fko_*.c and server/incoming_spa.c.

The packet is one line of unpadded base64, then the HMAC of that base64 (itself unpadded base64,
its length set by the digest: 43 characters for SHA-256). The HMAC covers the base64 with the
prefix the client strips, "U2FsdGVkX1" (OpenSSL's "Salted__"), put back. Decoded, it is
"Salted__", an 8-byte salt and AES-256-CBC ciphertext whose key and IV are OpenSSL's
EVP_BytesToKey (MD5, one round) over the stanza's key and the salt. The plaintext is colon-separated
fields: 16 random digits, base64 user name, timestamp, version, message type, base64 message
("ADDRESS,tcp/22,udp/53"), then by type a base64 NAT request, a base64 server-auth string and a
client timeout, and last a digest of all before it.

Served: access messages (type 1) and client-timeout access messages (type 3). Refused as
not_allowed: command messages (0) and every NAT type (2, 4, 5, 6), which knocknft does not do.
Not served: GnuPG packets, and encryption modes other than CBC (fwknop's default), including its
"legacy" IV mode; they fail the HMAC or the decryption, as with a wrong key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hmac import compare_digest

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from knocknft.config import Door, FwknopKey, HmacDigest, IPAddress, PortSpec
from knocknft.spa.replay import replay_digest
from knocknft.spa.request import Rejection, SpaRequest, expired, granted_seconds

# fwknopd's bounds on the UDP payload (server/fwknopd_common.h MIN_SPA_DATA_SIZE and
# MAX_SPA_PACKET_LEN): shorter or longer is no packet of its clients.
MIN_PAYLOAD = 140
MAX_PAYLOAD = 1500
# What the client strips from the front of the base64, and the HMAC is computed with again.
SALTED_B64 = b"U2FsdGVkX1"
_SALTED = b"Salted__"
# lib/fko_limits.h: an encoded message (or what is left of the packet before its HMAC) is at
# least this long.
_MIN_ENCODED = 36
_BASE64_CHARS = re.compile(rb"\A[A-Za-z0-9+/]+\Z")

_HMAC_HASHES: dict[HmacDigest, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_512": hashes.SHA3_512,
}
# The length of a digest's unpadded base64, as fwknop has them (lib/md5.h, sha1.h, sha2.h, sha3.h):
# the HMAC's length at the end of a packet.
_TAG_LENGTHS: dict[HmacDigest, int] = {
    "md5": 22,
    "sha1": 27,
    "sha256": 43,
    "sha384": 64,
    "sha512": 86,
    "sha3_256": 43,
    "sha3_512": 86,
}
# The plaintext's own last field: a digest of the fields before it, its kind told by its length;
# SHA-256 and SHA3-256 (and the 512s) share a length, and fwknop tries both (fko_decode.c).
_INNER_DIGESTS: dict[int, tuple[HmacDigest, ...]] = {
    22: ("md5",),
    27: ("sha1",),
    43: ("sha256", "sha3_256"),
    64: ("sha384",),
    86: ("sha512", "sha3_512"),
}

COMMAND_MSG, ACCESS_MSG, CLIENT_TIMEOUT_ACCESS_MSG = 0, 1, 3
# lib/fko.h's other message types: NAT 2, client-timeout NAT 4, local NAT 5 and 6.
_TYPES_SERVED = frozenset({ACCESS_MSG, CLIENT_TIMEOUT_ACCESS_MSG})
_TIMEOUT_TYPES = frozenset({3, 4, 6})
_NAT_TYPES = frozenset({2, 4, 5, 6})
# Fields a type may have after its own (the message, then by type NAT and timeout, then an
# optional server-auth string): fko_decode.c's parse_msg_type.
_MAX_FIELDS_AFTER_TYPE = {0: 2, 1: 2, 2: 3, 5: 3, 3: 3, 4: 4, 6: 4}
_MAX_MESSAGE = 256  # MAX_SPA_MESSAGE_SIZE, each base64 field
_MAX_CLIENT_TIMEOUT = 2 << 15  # fko_decode.c's parse_client_timeout
_ACCESS_RE = re.compile(r"\A(tcp|udp)/([0-9]{1,5})\Z")
_IPV4_RE = re.compile(r"\A[0-9.]{7,15}\Z")


@dataclass(frozen=True)
class FwknopMessage:
    """What an authenticated, decrypted packet says."""

    stamp: int  # the client's clock, seconds since the epoch
    message_type: int
    address: str  # as written: "198.18.0.2", or "0.0.0.0" for the client's -s
    access: tuple[str, ...]  # "tcp/22", ...
    client_timeout: int  # seconds; 0: none asked for


def looks_like_fwknop(payload: bytes) -> bool:
    """fwknopd's first test (preprocess_spa_data): a length its clients send and only base64
    characters. A packet starting with the salt prefix the client strips is refused: tacked on
    to a seen packet, it would be a new digest for the replay cache, and decrypt as the old one."""
    return (
        MIN_PAYLOAD <= len(payload) <= MAX_PAYLOAD
        and _BASE64_CHARS.match(payload) is not None
        and not payload.startswith(SALTED_B64)
    )


def source_allowed(stanza: FwknopKey, source: IPAddress) -> bool:
    """The stanza's SOURCE: empty means any."""
    return not stanza.source or any(source in network for network in stanza.source)


def check_fwknop(
    payload: bytes,
    source: IPAddress,
    doors: Sequence[Door],
    window: int,
    now: float,
) -> SpaRequest | Rejection:
    """Judge an fwknop packet against the doors' stanzas, in order, as fwknopd does: the first
    stanza that accepts it wins; when none does, the refusal of the one that got furthest."""
    furthest = (-1, Rejection.NOT_ALLOWED)
    for door in doors:
        if door.fwknop is None:
            continue
        result = _check_stanza(payload, source, door, door.fwknop, window=window, now=now)
        if isinstance(result, SpaRequest):
            return result
        furthest = max(furthest, result, key=lambda r: r[0])
    return furthest[1]


# How far a stanza got before refusing: the refusal of the furthest is the packet's.
_BEFORE_AUTH, _AUTH, _DECODE, _WINDOW, _RULES = range(5)


def _check_stanza(
    payload: bytes,
    source: IPAddress,
    door: Door,
    stanza: FwknopKey,
    *,
    window: int,
    now: float,
) -> SpaRequest | tuple[int, Rejection]:
    if not source_allowed(stanza, source) or expired(stanza.expires, now):
        return _BEFORE_AUTH, Rejection.NOT_ALLOWED
    body = _authenticated_body(payload, stanza)
    if body is None:
        return _AUTH, Rejection.BAD_AUTH
    message = _decode(_decrypt(body, stanza.key))
    if message is None:
        return _DECODE, Rejection.MALFORMED
    if abs(now - message.stamp) > window:
        return _WINDOW, Rejection.STALE
    address = _granted_address(message.address, source, stanza)
    services = _services(message.access, door)
    open_for = granted_seconds(door, message.client_timeout)
    if (
        address is None
        or services is None
        or open_for is None
        or message.message_type not in _TYPES_SERVED
    ):
        return _RULES, Rejection.NOT_ALLOWED
    return SpaRequest(
        door=door.name,
        key=door.name,
        address=address,
        services=services,
        open_for=open_for,
        digest=replay_digest(payload),
        mode="fwknop",
        stamp=message.stamp,
    )


def _authenticated_body(payload: bytes, stanza: FwknopKey) -> bytes | None:
    """The base64 before the HMAC if the HMAC is this stanza's, else None. Compared as the
    base64 text, in constant time: two spellings of one tag (the last character's unused bits)
    must not pass as one, or a packet could be changed past the replay cache."""
    tag_length = _TAG_LENGTHS[stanza.hmac_digest]
    if len(payload) - tag_length < _MIN_ENCODED:
        return None
    body, tag = payload[:-tag_length], payload[-tag_length:]
    mac = hmac.HMAC(stanza.hmac_key, _HMAC_HASHES[stanza.hmac_digest]())
    mac.update(SALTED_B64 + body)
    expected = _b64encode(mac.finalize())
    return body if compare_digest(expected, tag) else None


def _decrypt(body: bytes, key: bytes) -> bytes | None:
    """The plaintext of the authenticated base64, or None if it is no AES-256-CBC of `key`."""
    raw = _b64decode(SALTED_B64 + body)
    if raw is None or not raw.startswith(_SALTED) or len(raw) <= 16 or len(raw) % 16:
        return None
    salt, ciphertext = raw[8:16], raw[16:]
    cipher_key, iv = _bytes_to_key(key, salt)
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


def _bytes_to_key(key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5 and one round, as fwknop's rij_salt_and_iv: 32 bytes of
    key, then 16 of IV, from D_i = MD5(D_(i-1) || key || salt)."""
    derived = block = b""
    while len(derived) < 48:
        md5 = hashes.Hash(hashes.MD5())
        md5.update(block + key + salt)
        block = md5.finalize()
        derived += block
    return derived[:32], derived[32:48]


def _decode(plaintext: bytes | None) -> FwknopMessage | None:  # noqa: C901, PLR0911, PLR0912 - fko_decode.c's checks, one after another
    """The fields of a decrypted packet, checked as fko_decode.c does; None if any fails."""
    if plaintext is None or not _MIN_ENCODED <= len(plaintext) <= MAX_PAYLOAD:
        return None
    if any(not 0x20 <= byte <= 0x7E for byte in plaintext):
        return None
    text = plaintext.decode("ascii")
    if not (text[:16].isdigit() and text[16:17] == ":"):
        return None  # fwknop's test of a good decryption: 16 random digits and a colon
    encoded, _, digest = text.rpartition(":")
    if not _inner_digest_matches(encoded, digest):
        return None
    fields = encoded.split(":")
    if not 6 <= len(fields) <= 9:
        return None
    _, user, stamp, version, kind, *rest = fields
    # The text is printable ASCII by now: isdigit() means 0-9.
    if not (0 < len(stamp) <= 12 and stamp.isdigit()):
        return None
    if not 0 < len(version) <= 8 or not (len(kind) <= 2 and kind.isdigit()):
        return None
    message_type = int(kind)
    if (
        message_type not in _MAX_FIELDS_AFTER_TYPE
        or len(rest) > _MAX_FIELDS_AFTER_TYPE[message_type]
    ):
        return None
    if _b64field(user) is None:
        return None
    access = _b64field(rest[0])
    if access is None:
        return None
    extra = rest[1:]
    if message_type in _NAT_TYPES:
        if not extra or _b64field(extra[0]) is None:
            return None
        extra = extra[1:]
    client_timeout = 0
    if message_type in _TIMEOUT_TYPES:
        if not extra:
            return None
        timeout_text = extra[-1]
        if not (0 < len(timeout_text) <= _MAX_MESSAGE and timeout_text.isdigit()):
            return None
        if int(timeout_text) > _MAX_CLIENT_TIMEOUT:
            return None
        client_timeout = int(timeout_text)
        extra = extra[:-1]
    if extra and _b64field(extra[0]) is None:  # the server-auth string: read, not used
        return None
    parsed = _access_message(access, command=message_type == COMMAND_MSG)
    if parsed is None:
        return None
    address, requests = parsed
    return FwknopMessage(int(stamp), message_type, address, requests, client_timeout)


def _inner_digest_matches(encoded: str, digest: str) -> bool:
    names = _INNER_DIGESTS.get(len(digest))
    if names is None:
        return False
    data, wanted = encoded.encode("ascii"), digest.encode("ascii")
    for name in names:
        hasher = hashes.Hash(_HMAC_HASHES[name]())
        hasher.update(data)
        if compare_digest(_b64encode(hasher.finalize()), wanted):
            return True
    return False


def _access_message(text: bytes, *, command: bool) -> tuple[str, tuple[str, ...]] | None:
    """fko_message.c's validate_access_msg: "ADDRESS,proto/port[,proto/port...]"; for a
    command message (validate_cmd_msg), "ADDRESS,COMMAND", the command not kept: never run."""
    if any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    address, *requests = text.decode("ascii").split(",")
    if not _IPV4_RE.match(address) or not requests:
        return None
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if command:
        return address, ()
    for request in requests:
        match = _ACCESS_RE.match(request)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            return None
    return address, tuple(requests)


def _granted_address(text: str, source: IPAddress, stanza: FwknopKey) -> IPAddress | None:
    """The address inside the packet; for 0.0.0.0 (the client's -s), the packet's source,
    unless the stanza requires an address (REQUIRE_SOURCE_ADDRESS)."""
    if text == "0.0.0.0":
        return None if stanza.require_source_address else source
    return ipaddress.IPv4Address(text)


def _services(access: tuple[str, ...], door: Door) -> tuple[PortSpec, ...] | None:
    """The requested services if every one is in the door's open (OPEN_PORTS), else None: a
    request naming any other port is refused as a whole."""
    services: list[PortSpec] = []
    for request in access:
        protocol, _, port = request.partition("/")
        spec = PortSpec(int(port), "tcp" if protocol == "tcp" else "udp")
        if spec not in door.open:
            return None
        services.append(spec)
    return tuple(dict.fromkeys(services))


def _b64field(text: str) -> bytes | None:
    """A base64 field of the plaintext: 1 to 256 characters, unpadded, as fwknop writes them."""
    if not 0 < len(text) <= _MAX_MESSAGE:
        return None
    return _b64decode(text.encode("ascii"))


def _b64decode(data: bytes) -> bytes | None:
    if len(data) % 4 == 1 or _BASE64_CHARS.match(data) is None:
        return None
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error:
        return None


def _b64encode(data: bytes) -> bytes:
    """Unpadded base64, as fwknop writes its digests (strip_b64_eq)."""
    return base64.b64encode(data).rstrip(b"=")
