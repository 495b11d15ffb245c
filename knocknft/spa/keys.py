"""A signed-SPA client's key pair as files hold it: the private key as unencrypted PKCS#8 PEM
(what `openssl genpkey -algorithm ed25519` writes too), the public key as one line of base64 over
its 32 raw bytes (what a door's `clients:` entry takes as `public_key:`).

Pure: bytes in, bytes out; knocknft keygen and the knock client read and write the files.
"""

from __future__ import annotations

import base64

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_ssh_private_key,
)

from knocknft.spa.signed import key_id, public_bytes

# A PEM Ed25519 key is about 120 bytes, an OpenSSH one about 400: a bigger file is not a key.
MAX_KEY_FILE = 16 << 10


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def public_key_line(private_key: Ed25519PrivateKey) -> str:
    """The public key as the config takes it: base64 of the 32 raw bytes, one line."""
    return base64.b64encode(public_bytes(private_key)).decode("ascii")


def fingerprint(private_key: Ed25519PrivateKey) -> str:
    """The key id a packet carries, in hex: how to tell two keys apart at a glance."""
    return key_id(public_bytes(private_key)).hex()


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, as keygen writes it) or OpenSSH's format
    (`ssh-keygen -t ed25519 -N ''`). Raises ValueError saying why not, never showing the data."""
    if len(data) > MAX_KEY_FILE:
        raise ValueError("too big to be a key file")
    loader = load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data else load_pem_private_key
    try:
        key = loader(data, password=None)
    except TypeError:
        raise ValueError("the key is encrypted; knock needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a private key in PEM or OpenSSH format") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key (write one with knocknft keygen)")
    return key
