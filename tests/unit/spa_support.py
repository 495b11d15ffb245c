"""SPA test material the unit tests share: the packets Debian's fwknop client saved (made by
scripts/spa_packets.py, kept in tests/data/spa with their keys and the time each was made), configs
holding those keys, and an encoder for packets no client option makes (a command message, a bad
inner digest, ...), written from fwknop's format and checked against the saved packets."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from knocknft.config import Config, IPAddress, parse_config

DATA = Path(__file__).resolve().parents[1] / "data" / "spa"
KEYS: dict[str, dict[str, str]] = json.loads((DATA / "keys.json").read_text(encoding="utf-8"))
CASES: dict[str, dict[str, Any]] = json.loads((DATA / "cases.json").read_text(encoding="utf-8"))
CLIENT: IPAddress = ipaddress.ip_address("198.18.0.2")


def saved(name: str) -> tuple[bytes, float]:
    """A saved packet's payload, and the time it was made: the `now` it is fresh at."""
    return (DATA / f"{name}.spa").read_bytes(), float(CASES[name]["made_at"])


def stanza_yaml(
    keys: str = "main", digest: str = "sha256", *, extra: str = "", indent: str = "    "
) -> str:
    """A door's `fwknop:` block with the named keys of keys.json; `extra` adds stanza lines."""
    k = KEYS[keys]
    key = f'key: "{k["key"]}"' if "key" in k else f'key_base64: "{k["key_base64"]}"'
    lines = [key, f'hmac_key_base64: "{k["hmac_key_base64"]}"', f"hmac_digest: {digest}"]
    lines += [line for line in extra.splitlines() if line]
    return f"{indent}fwknop:\n" + "".join(f"{indent}  {line}\n" for line in lines)


def spa_config(
    keys: str = "main",
    digest: str = "sha256",
    *,
    extra: str = "",
    door: str = "    open: [22/tcp, 53/udp]\n    open_for: 30s\n    max_open_for: 10m\n",
    options: str = "",
) -> Config:
    """A config whose one door, `ssh`, is an fwknop stanza with the named keys."""
    text = f"options:\n{options}" if options else ""
    text += "doors:\n  ssh:\n" + stanza_yaml(keys, digest, extra=extra) + door
    return parse_config(text).config


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def plaintext(
    message: str = "198.18.0.2,tcp/22",
    *,
    stamp: int,
    message_type: int = 1,
    after: tuple[str, ...] = (),
    user: str = "alice",
    inner: str = "sha256",
) -> bytes:
    """fwknop's encoded message: random digits, base64 user, stamp, version, type, base64
    message, the fields `after` it as given, and the digest of all of it (`inner`)."""
    digits = "".join(secrets.choice("0123456789") for _ in range(16))
    fields = [digits, _b64(user.encode()), str(stamp), "2.0.2", str(message_type)]
    fields += [_b64(message.encode()), *after]
    encoded = ":".join(fields)
    return f"{encoded}:{_b64(hashlib.new(inner, encoded.encode()).digest())}".encode()


def encrypt(text: bytes, keys: str = "main", digest: str = "sha256") -> bytes:
    """A packet as the client sends it: AES-256-CBC under EVP_BytesToKey(MD5), base64 without
    its "U2FsdGVkX1" prefix and padding, then the HMAC of it with the prefix."""
    k = KEYS[keys]
    key = k["key"].encode() if "key" in k else base64.b64decode(k["key_base64"])
    salt = secrets.token_bytes(8)
    derived = block = b""
    while len(derived) < 48:
        block = hashlib.md5(block + key + salt).digest()
        derived += block
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text) + padder.finalize()
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CBC(derived[32:48])).encryptor()
    sealed = b"Salted__" + salt + encryptor.update(padded) + encryptor.finalize()
    body = _b64(sealed).encode()
    assert body.startswith(b"U2FsdGVkX1")
    body = body[len(b"U2FsdGVkX1") :]
    algorithm = getattr(hashes, digest.upper())()
    mac = hmac.HMAC(base64.b64decode(k["hmac_key_base64"]), algorithm)
    mac.update(b"U2FsdGVkX1" + body)
    return body + _b64(mac.finalize()).encode()
