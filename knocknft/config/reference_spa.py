"""The reference of the SPA keys (single packet authorization): the options, the SPA doors' own
keys, and the two mappings under them, an fwknop stanza and a public-key client. Kept apart from
`reference` only for size; `reference` puts them into its sections. Pure: data only.
"""

from __future__ import annotations

from typing import Any

from knocknft.config import valueschema as v
from knocknft.config.keydoc import Key, Section
from knocknft.config.model import (
    DEFAULT_SPA_NFLOG_GROUP,
    DEFAULT_SPA_PORT,
    DEFAULT_SPA_REPLAY_CACHE,
    DEFAULT_SPA_WINDOW,
    HMAC_DIGESTS,
    MAX_GRANT_SECONDS,
    MAX_NFLOG_GROUP,
    MAX_PORT,
    MAX_SPA_REPLAY_CACHE,
    MAX_SPA_WINDOW,
)
from knocknft.config.spa import CLIENT_KEYS, FWKNOP_KEYS

SPA_OPTIONS = (
    Key(
        "spa_port",
        str(DEFAULT_SPA_PORT),
        "The UDP port SPA packets come to (fwknopd's default). Used when a door has fwknop or "
        "clients; may not be a knock port or a udp service of any door.",
        v.integer(1, MAX_PORT),
    ),
    Key(
        "spa_nflog_group",
        str(DEFAULT_SPA_NFLOG_GROUP),
        "The NFLOG group SPA packets are copied to, whole; with SPA doors it must differ from "
        "nflog_group.",
        v.integer(0, MAX_NFLOG_GROUP),
    ),
    Key(
        "spa_window",
        f"{DEFAULT_SPA_WINDOW}s",
        "How far an SPA packet's timestamp may be from the server's clock, either way "
        "(fwknopd's MAX_SPA_PACKET_AGE); 1s to 1h. A replay is refused while the packet could "
        "still count.",
        v.duration(MAX_SPA_WINDOW),
    ),
    Key(
        "spa_replay_cache",
        str(DEFAULT_SPA_REPLAY_CACHE),
        f"Accepted SPA packets remembered at most (1 to {MAX_SPA_REPLAY_CACHE}), shared "
        "evenly among the keys (each fwknop stanza, each signed door's client); when a key's "
        "share is full of packets still inside the window, its new requests are refused, and "
        "the other keys' are not.",
        v.integer(1, MAX_SPA_REPLAY_CACHE),
    ),
)


def _key_text() -> v.Schema:
    return v.text()


FWKNOP = Section(
    "doors.NAME.fwknop",
    "fwknop (an SPA door's access.conf stanza)",
    "The keys of an fwknop access.conf stanza: the door is opened by one packet of an fwknop "
    "2.6 client (--use-hmac, Rijndael). Keys are secrets: keep the config readable by root only.",
    (
        Key(
            "key_base64",
            "required (or key)",
            "KEY_BASE64, what fwknop --key-gen prints: the Rijndael key, 1 to 32 bytes.",
            _key_text(),
        ),
        Key(
            "key", "required (or key_base64)", "KEY: the key as text, its UTF-8 bytes.", _key_text()
        ),
        Key(
            "hmac_key_base64",
            "required (or hmac_key)",
            "HMAC_KEY_BASE64: 1 to 136 bytes, not the key itself. Only HMAC-authenticated "
            "packets are served.",
            _key_text(),
        ),
        Key(
            "hmac_key",
            "required (or hmac_key_base64)",
            "HMAC_KEY: the HMAC key as text.",
            _key_text(),
        ),
        Key(
            "hmac_digest",
            "sha256",
            "HMAC_DIGEST_TYPE, the client's --hmac-digest-type: " + ", ".join(HMAC_DIGESTS) + ".",
            {"type": "string", "pattern": v.nocase_words(*HMAC_DIGESTS, "sha3-256", "sha3-512")},
        ),
        Key(
            "source",
            "any",
            "SOURCE: the networks packets may come from, or any.",
            v.one_or_list(v.network_or_name()),
        ),
        Key(
            "require_source_address",
            "false",
            "REQUIRE_SOURCE_ADDRESS: refuse a request that names 0.0.0.0 (the client's -s).",
            v.boolean(),
        ),
        Key(
            "expires",
            "never",
            "ACCESS_EXPIRE as YYYY-MM-DD: after that day (UTC) the stanza's packets are refused.",
            v.date(),
        ),
    ),
    FWKNOP_KEYS,
)

CLIENT = Section(
    "doors.NAME.clients.CLIENT",
    "clients (an SPA door's public-key clients)",
    "Each key under clients is a client's name (letters, digits, _ . -, at most 32), which the "
    "log and audit lines name; its value holds the client's Ed25519 public key.",
    (
        Key(
            "public_key",
            "required",
            "The line of the .pub file knocknft keygen wrote: base64 of the 32-byte key.",
            {"type": "string", "pattern": r"^\s*[A-Za-z0-9+/]{42,43}=?\s*$"},
        ),
        Key("expires", "never", "After this day (YYYY-MM-DD) the client is refused.", v.date()),
        Key("revoked", "false", "true refuses the client; it still loads.", v.boolean()),
    ),
    CLIENT_KEYS,
)


def _mapping(section: Section, **rules: Any) -> v.Schema:
    return {
        "type": "object",
        "properties": {k.name: {"description": k.meaning, **k.value} for k in section.keys},
        "additionalProperties": False,
        **rules,
    }


SPA_DOOR_KEYS = (
    Key(
        "fwknop",
        "none",
        "Instead of a sequence: an fwknop access.conf stanza (see below). The door needs open "
        "and open_for, and has no sequence, seq_timeout, tcpflags, close or deny_for.",
        _mapping(
            FWKNOP,
            allOf=[
                {"oneOf": [{"required": ["key_base64"]}, {"required": ["key"]}]},
                {"oneOf": [{"required": ["hmac_key_base64"]}, {"required": ["hmac_key"]}]},
            ],
        ),
    ),
    Key(
        "clients",
        "none",
        "Instead of a sequence: public-key clients, NAME: {public_key: BASE64}. A revoked or "
        "expired client still loads and is refused.",
        {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {v.door_name_pattern(): _mapping(CLIENT, required=["public_key"])},
            "additionalProperties": False,
        },
    ),
    Key(
        "max_open_for",
        "open_for",
        "SPA doors: the longest grant a client may ask for (fwknop's -f, MAX_FW_TIMEOUT); a "
        "longer request is cut to it. At least open_for.",
        v.duration(MAX_GRANT_SECONDS),
    ),
)
