"""The fwknop codec against packets Debian's fwknop 2.6.10 client saved: every HMAC digest, client
timeouts, the "any address" form, several ports; and what fwknopd refuses, refused for the same
reason here."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import replace

import pytest

from knocknft.config import PortSpec
from knocknft.spa.fwknop import MIN_PAYLOAD, check_fwknop, looks_like_fwknop
from knocknft.spa.replay import replay_digest
from knocknft.spa.request import Rejection, SpaRequest
from tests.unit.spa_support import (
    CASES,
    CLIENT,
    encrypt,
    plaintext,
    saved,
    spa_config,
)

WINDOW = 120
DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512", "sha3_256", "sha3_512")


def check(
    name: str,
    *,
    config_keys: str = "main",
    digest: str | None = None,
    extra: str = "",
    door: str | None = None,
) -> SpaRequest | Rejection:
    """The saved packet `name` at the time it was made, against one stanza of `config_keys`
    (with the packet's own HMAC digest unless `digest`), `extra` stanza lines and `door` keys."""
    payload, made_at = saved(name)
    door_keys = {} if door is None else {"door": door}
    cfg = spa_config(config_keys, digest or CASES[name]["hmac_digest"], extra=extra, **door_keys)
    return check_fwknop(payload, CLIENT, cfg.doors, WINDOW, made_at)


@pytest.mark.parametrize("digest", DIGESTS)
def test_each_hmac_digest_of_the_real_client_is_served(digest: str) -> None:
    payload, _ = saved(digest)
    result = check(digest)
    assert result == SpaRequest(
        door="ssh",
        key="ssh",
        address=ipaddress.ip_address("198.18.0.2"),
        services=(PortSpec(22, "tcp"),),
        open_for=30,
        digest=replay_digest(payload),
        mode="fwknop",
        stamp=result.stamp if isinstance(result, SpaRequest) else None,
    )
    # The HMAC is the last part of the payload, unpadded base64 of the digest.
    tag = {"md5": 22, "sha1": 27, "sha384": 64, "sha512": 86, "sha3_512": 86}.get(digest, 43)
    assert b"=" not in payload and len(payload) > tag + MIN_PAYLOAD // 2


@pytest.mark.parametrize("digest", DIGESTS)
def test_a_digest_the_stanza_does_not_name_fails_the_hmac(digest: str) -> None:
    other = "sha512" if digest != "sha512" else "sha256"
    assert check(digest, digest=other) is Rejection.BAD_AUTH


def test_the_packets_own_digest_may_be_any_fwknop_makes() -> None:
    assert isinstance(check("inner_sha512"), SpaRequest)
    assert isinstance(check("inner_md5"), SpaRequest)


def test_the_stamp_is_the_clients_clock_and_the_window_holds_both_ways() -> None:
    payload, made_at = saved("sha256")
    cfg = spa_config()
    result = check_fwknop(payload, CLIENT, cfg.doors, WINDOW, made_at)
    assert isinstance(result, SpaRequest) and result.stamp is not None
    assert abs(result.stamp - made_at) <= 2
    stamp = result.stamp
    for now in (stamp + WINDOW, stamp - WINDOW):
        assert isinstance(check_fwknop(payload, CLIENT, cfg.doors, WINDOW, now), SpaRequest)
    for now in (stamp + WINDOW + 1, stamp - WINDOW - 1):
        assert check_fwknop(payload, CLIENT, cfg.doors, WINDOW, now) is Rejection.STALE


def test_a_packet_dated_back_by_the_client_is_stale() -> None:
    assert check("stale") is Rejection.STALE  # --time-offset-minus 300sec


def test_a_wrong_hmac_key_is_bad_auth_and_nothing_is_decrypted() -> None:
    assert check("other_keys") is Rejection.BAD_AUTH
    # The right HMAC key and the wrong Rijndael key: authentic, but not decryptable.
    door = spa_config().doors[0]
    assert door.fwknop is not None
    bad = replace(door, fwknop=replace(door.fwknop, key=b"x" * 32))
    payload, made_at = saved("sha256")
    assert check_fwknop(payload, CLIENT, [bad], WINDOW, made_at) is Rejection.MALFORMED


def test_a_passphrase_key_works_as_access_conf_key() -> None:
    assert isinstance(check("passphrase", config_keys="passphrase"), SpaRequest)
    assert check("passphrase") is Rejection.MALFORMED  # right HMAC key, wrong KEY


def test_a_port_outside_open_refuses_the_whole_request() -> None:
    assert check("outside_open") is Rejection.NOT_ALLOWED  # tcp/22,tcp/23; open has 22 only
    result = check("two_ports")
    assert isinstance(result, SpaRequest)
    assert result.services == (PortSpec(22, "tcp"), PortSpec(53, "udp"))


def test_a_client_timeout_is_honoured_up_to_max_open_for() -> None:
    short, long = check("timeout_60"), check("timeout_3600")
    assert isinstance(short, SpaRequest) and isinstance(long, SpaRequest)
    assert (short.open_for, long.open_for) == (60, 600)
    # Without max_open_for the door's own open_for is the cap.
    door = "    open: [22/tcp]\n    open_for: 45s\n"
    capped = check("timeout_3600", door=door)
    assert isinstance(capped, SpaRequest) and capped.open_for == 45


def test_the_address_granted_is_the_one_inside_the_packet() -> None:
    result = check("other_address")
    assert isinstance(result, SpaRequest)
    assert result.address == ipaddress.ip_address("198.18.7.7")


def test_the_any_address_form_grants_the_source_unless_an_address_is_required() -> None:
    payload, made_at = saved("any_address")
    source = ipaddress.ip_address("198.18.3.4")
    result = check_fwknop(payload, source, spa_config().doors, WINDOW, made_at)
    assert isinstance(result, SpaRequest) and result.address == source
    strict = spa_config(extra="require_source_address: true").doors
    assert check_fwknop(payload, source, strict, WINDOW, made_at) is Rejection.NOT_ALLOWED
    sha256, _ = saved("sha256")
    assert isinstance(check_fwknop(sha256, source, strict, WINDOW, made_at), SpaRequest)


def test_nat_requests_are_refused() -> None:
    assert check("nat") is Rejection.NOT_ALLOWED


def test_source_and_expiry_refuse_before_any_cryptography() -> None:
    assert check("sha256", extra="source: [198.19.0.0/16]") is Rejection.NOT_ALLOWED
    assert isinstance(check("sha256", extra="source: [198.18.0.0/24]"), SpaRequest)
    # Made in December 2026; a stanza serves through its last day.
    assert check("sha256", extra="expires: 2026-01-31") is Rejection.NOT_ALLOWED
    assert isinstance(check("sha256", extra="expires: 2099-01-31"), SpaRequest)


def test_the_next_stanza_is_tried_and_the_furthest_refusal_is_the_answer() -> None:
    payload, made_at = saved("sha256")
    other = spa_config("other").doors[0]
    main = spa_config().doors[0]
    narrow = replace(main, name="narrow", open=(PortSpec(23),))
    assert isinstance(check_fwknop(payload, CLIENT, [other, main], WINDOW, made_at), SpaRequest)
    result = check_fwknop(payload, CLIENT, [other, narrow, main], WINDOW, made_at)
    assert isinstance(result, SpaRequest) and result.door == "ssh"
    # One stanza's key fails, the other's ports: the packet was authentic, and refused for that.
    assert check_fwknop(payload, CLIENT, [other, narrow], WINDOW, made_at) is Rejection.NOT_ALLOWED
    assert check_fwknop(payload, CLIENT, [narrow, other], WINDOW, made_at) is Rejection.NOT_ALLOWED
    assert check_fwknop(payload, CLIENT, [other], WINDOW, made_at) is Rejection.BAD_AUTH
    assert check_fwknop(payload, CLIENT, [], WINDOW, made_at) is Rejection.NOT_ALLOWED


def test_the_hmac_is_compared_as_text_so_a_respelled_tag_fails() -> None:
    # The tag's last base64 character carries unused bits: another spelling decodes to the same
    # bytes. Accepted, it would be a new replay digest for an old packet.
    payload, made_at = saved("sha256")
    last = payload[-1:]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1 : (alphabet.index(last) ^ 1) + 1]
    respelled = payload[:-1] + twin
    assert base64.b64decode(respelled[-43:] + b"=") == base64.b64decode(payload[-43:] + b"=")
    assert check_fwknop(respelled, CLIENT, spa_config().doors, WINDOW, made_at) is (
        Rejection.BAD_AUTH
    )


def test_any_change_to_a_packet_fails_the_hmac() -> None:
    payload, made_at = saved("sha256")
    doors = spa_config().doors
    for index in (0, 50, len(payload) - 44, len(payload) - 1):
        flipped = bytearray(payload)
        flipped[index] = ord("A") if flipped[index] != ord("A") else ord("B")
        assert check_fwknop(bytes(flipped), CLIENT, doors, WINDOW, made_at) is Rejection.BAD_AUTH
    assert check_fwknop(payload[1:], CLIENT, doors, WINDOW, made_at) is Rejection.BAD_AUTH


def test_the_prefix_put_back_by_an_attacker_is_no_packet() -> None:
    payload, _ = saved("sha256")
    assert looks_like_fwknop(payload)
    assert not looks_like_fwknop(b"U2FsdGVkX1" + payload)
    assert not looks_like_fwknop(payload[: MIN_PAYLOAD - 1])
    assert not looks_like_fwknop(payload + b"\n")
    assert not looks_like_fwknop(payload[:-2] + b"==")


@pytest.mark.parametrize(
    ("message", "message_type", "after", "expected"),
    [
        ("198.18.0.2,tcp/22", 1, (), "ok"),
        ("198.18.0.2,tcp/22", 1, ("c2VydmVyIGF1dGg",), "ok"),  # a server-auth string: ignored
        ("198.18.0.2,tcp/22", 3, ("90",), "ok"),
        ("198.18.0.2,tcp/22", 3, ("c2VydmVyIGF1dGg", "90"), "ok"),
        ("198.18.0.2,echo hi", 0, (), Rejection.NOT_ALLOWED),  # a command message
        ("198.18.0.2,tcp/22", 2, ("MTk4LjE4LjAuOSwyMg",), Rejection.NOT_ALLOWED),
        ("198.18.0.2,tcp/22", 7, (), Rejection.MALFORMED),
        ("198.18.0.2,tcp/22", 1, ("a", "b"), Rejection.MALFORMED),  # too many fields
        ("198.18.0.2,tcp/22", 3, (), Rejection.MALFORMED),  # no timeout
        ("198.18.0.2,tcp/22", 3, ("65537",), Rejection.MALFORMED),
        ("198.18.0.2,tcp/22", 3, ("9x",), Rejection.MALFORMED),
        ("198.18.0.2,icmp/0", 1, (), Rejection.MALFORMED),
        ("198.18.0.2,tcp/0", 1, (), Rejection.MALFORMED),
        ("198.18.0.2,tcp/70000", 1, (), Rejection.MALFORMED),
        ("198.18.0.2", 1, (), Rejection.MALFORMED),
        ("198.18.0.300,tcp/22", 1, (), Rejection.MALFORMED),
        ("2001:db8::2,tcp/22", 1, (), Rejection.MALFORMED),  # fwknop's messages are IPv4
        ("198.18.0.2,tcp/22,", 1, (), Rejection.MALFORMED),
    ],
)
def test_decoded_fields_follow_fko_decode(
    message: str, message_type: int, after: tuple[str, ...], expected: object
) -> None:
    now = 1_800_000_000
    packet = encrypt(plaintext(message, stamp=now, message_type=message_type, after=after))
    result = check_fwknop(packet, CLIENT, spa_config().doors, WINDOW, now)
    if expected == "ok":
        assert isinstance(result, SpaRequest), result
        assert result.open_for == (90 if message_type == 3 else 30)
    else:
        assert result is expected


def test_a_wrong_inner_digest_is_malformed() -> None:
    now = 1_800_000_000
    good = plaintext(stamp=now)
    bad = good[:-1] + (b"A" if good[-1:] != b"A" else b"B")
    doors = spa_config().doors
    assert isinstance(check_fwknop(encrypt(good), CLIENT, doors, WINDOW, now), SpaRequest)
    assert check_fwknop(encrypt(bad), CLIENT, doors, WINDOW, now) is Rejection.MALFORMED
    for inner in ("md5", "sha1", "sha384", "sha512", "sha3_256", "sha3_512"):
        packet = encrypt(plaintext(stamp=now, inner=inner))
        assert isinstance(check_fwknop(packet, CLIENT, doors, WINDOW, now), SpaRequest), inner
