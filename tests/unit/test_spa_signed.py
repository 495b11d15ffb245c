"""knocknft's signed SPA packet: the format, each reason a packet is refused, and hostile bytes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import string
from datetime import UTC, date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from knocknft.config import ClientKey, Door, IPAddress, PortSpec
from knocknft.spa import signed
from knocknft.spa.request import Rejection, SpaRequest
from knocknft.spa.signed import (
    MAGIC,
    MAX_PACKET,
    MIN_PACKET,
    SIGNATURE_BYTES,
    check_signed,
    key_id,
    parse_signed,
    public_bytes,
    replay_digest,
    sign_request,
)

NOW = 1_800_000_000.0
WINDOW = 120
SOURCE = ipaddress.IPv4Address("198.18.0.2")
SOURCE6 = ipaddress.IPv6Address("2001:db8::2")
NONCE = bytes(range(16))


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


ALICE = key(1)
BOB = key(2)
MALLORY = key(3)  # listed nowhere


def client(name: str, private: Ed25519PrivateKey, **kw: object) -> ClientKey:
    return ClientKey(name=name, public_key=public_bytes(private), **kw)  # type: ignore[arg-type]


SSH = Door(
    name="ssh",
    clients=(client("alice", ALICE), client("bob", BOB)),
    open=(PortSpec(22, "tcp"),),
    open_for=30,
    max_open_for=300,
)
WEB = Door(
    name="web",
    clients=(client("bob-web", BOB),),
    open=(PortSpec(443, "tcp"), PortSpec(443, "udp")),
    open_for=60,
)
KNOCK = Door(name="knock", sequence=(PortSpec(7000, "tcp"),), open=(PortSpec(22, "tcp"),))
DOORS = (KNOCK, SSH, WEB)


def request(
    private: Ed25519PrivateKey = ALICE,
    door: str = "ssh",
    address: IPAddress | None = SOURCE,
    open_for: int = 0,
    *,
    now: float = NOW,
    nonce: bytes = NONCE,
) -> bytes:
    return sign_request(private, door, address, open_for, now=now, nonce=nonce)


def check(payload: bytes, source: IPAddress = SOURCE, now: float = NOW) -> SpaRequest | Rejection:
    return check_signed(payload, source, DOORS, WINDOW, now)


# One packet frozen: ALICE's request for door ssh, for 198.18.0.2, 60 s, at NOW with NONCE.
# Ed25519 signatures are deterministic, so a change of the wire format fails here first: a
# new format is a new VERSION, and clients already out there keep speaking this one.
SAVED = bytes.fromhex(
    "ff4b4e01"  # MAGIC, VERSION
    + key_id(public_bytes(ALICE)).hex()
    + "000000006b49d200"  # 1 800 000 000
    + NONCE.hex()
    + "0000003c"  # open_for 60
    + "04c6120002"  # IPv4 198.18.0.2
    + "03"
    + b"ssh".hex()
)


def test_the_saved_packet_is_what_sign_request_writes() -> None:
    payload = request(open_for=60)
    assert payload[:-SIGNATURE_BYTES] == SAVED
    assert len(payload) == len(SAVED) + SIGNATURE_BYTES


def test_magic_is_told_from_fwknops_base64_by_the_first_byte() -> None:
    alphabet = (string.ascii_letters + string.digits + "+/=").encode()
    assert MAGIC[0] not in alphabet
    assert request().startswith(MAGIC)


@pytest.mark.parametrize(
    ("address", "source", "granted"),
    [
        (SOURCE, SOURCE, SOURCE),
        (SOURCE6, SOURCE6, SOURCE6),
        # The address inside wins over the packet's source: a client behind NAT names its own.
        (ipaddress.IPv4Address("198.19.7.7"), SOURCE, ipaddress.IPv4Address("198.19.7.7")),
        (None, SOURCE6, SOURCE6),  # "the packet's source"
        (None, SOURCE, SOURCE),
    ],
)
def test_a_signed_request_round_trips(
    address: IPAddress | None, source: IPAddress, granted: IPAddress
) -> None:
    payload = request(address=address)
    assert MIN_PACKET <= len(payload) <= MAX_PACKET
    result = check(payload, source)
    assert result == SpaRequest(
        door="ssh",
        key="alice",
        address=granted,
        services=(PortSpec(22, "tcp"),),
        open_for=30,
        digest=hashlib.sha256(payload[:-SIGNATURE_BYTES]).digest(),
        mode="signed",
        stamp=NOW,  # the replay cache keeps the digest until this leaves the window
    )


def test_the_key_named_is_the_client_of_the_door_asked_for() -> None:
    # BOB is "bob" in ssh and "bob-web" in web: logs and audit say which entry opened what.
    for door, name, services in (("ssh", "bob", SSH.open), ("web", "bob-web", WEB.open)):
        result = check(request(BOB, door))
        assert isinstance(result, SpaRequest)
        assert (result.door, result.key, result.services) == (door, name, services)


@pytest.mark.parametrize(
    ("door", "asked", "granted"),
    [
        ("ssh", 0, 30),  # the door's own
        ("ssh", 10, 10),
        ("ssh", 200, 200),
        ("ssh", 100_000, 300),  # capped by max_open_for
        ("web", 0, 60),
        ("web", 3600, 60),  # no max_open_for: the door's open_for is the most
        ("web", 5, 5),
    ],
)
def test_open_for_asked_for_is_capped(door: str, asked: int, granted: int) -> None:
    result = check(request(BOB, door, open_for=asked))
    assert isinstance(result, SpaRequest)
    assert result.open_for == granted


def test_the_replay_digest_is_known_before_any_crypto_and_differs_per_request() -> None:
    first, second = request(), request(nonce=bytes(16))
    result = check(first)
    assert isinstance(result, SpaRequest)
    assert replay_digest(first) == result.digest
    assert replay_digest(first) != replay_digest(second)
    # Same second, same everything but the nonce: still two requests.
    assert isinstance(check(second), SpaRequest)


def _resign(body: bytes, private: Ed25519PrivateKey = ALICE) -> bytes:
    return body + private.sign(body)


BODY = request()[:-SIGNATURE_BYTES]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(request()[:-1], id="truncated"),
        pytest.param(request() + b"\0", id="trailing byte"),
        pytest.param(b"\xfeKN" + request()[3:], id="magic"),
        pytest.param(_resign(BODY[:3] + b"\x02" + BODY[4:]), id="version 2"),
        pytest.param(_resign(BODY[:40] + b"\x05" + BODY[41:]), id="address kind"),
        pytest.param(_resign(BODY[:40] + b"\x04" + bytes(4) + BODY[45:]), id="address 0.0.0.0"),
        pytest.param(_resign(BODY[:-4] + b"\x03s h"), id="door name"),
        pytest.param(_resign(BODY[:-4] + b"\x04ssh"), id="door name length"),
        pytest.param(_resign(BODY[:-4] + b"\x03\xffsh"), id="door not ascii"),
        pytest.param(MAGIC + bytes(MAX_PACKET), id="too long"),
    ],
)
def test_malformed(payload: bytes) -> None:
    assert check(payload) is Rejection.MALFORMED


def test_an_unknown_key_is_bad_auth() -> None:
    assert check(request(MALLORY)) is Rejection.BAD_AUTH


def test_a_signature_by_another_key_is_bad_auth() -> None:
    # ALICE's key id, MALLORY's signature: the key found by its id does not verify it.
    assert check(_resign(BODY, MALLORY)) is Rejection.BAD_AUTH


@pytest.mark.parametrize("at", [3 + 1 + 8, 12, 20, 36, 41, len(BODY) - 1])
def test_any_changed_signed_byte_is_bad_auth(at: int) -> None:
    payload = bytearray(request())
    if at == 3 + 1 + 8:
        at = 4  # the key id: the key is then unknown
    payload[at] ^= 0x01
    assert check(bytes(payload)) is Rejection.BAD_AUTH


def test_a_changed_signature_is_bad_auth() -> None:
    payload = bytearray(request())
    payload[-1] ^= 0x80
    assert check(bytes(payload)) is Rejection.BAD_AUTH


@pytest.mark.parametrize(
    ("offset", "result"),
    [(-121, Rejection.STALE), (-120, "ok"), (120, "ok"), (121, Rejection.STALE)],
)
def test_the_timestamp_window_is_both_ways(offset: int, result: object) -> None:
    got = check(request(now=NOW + offset))
    assert (got if isinstance(got, Rejection) else "ok") == result


def test_a_bad_signature_is_said_before_a_stale_stamp() -> None:
    # Nothing unauthenticated is believed, the stamp included.
    assert check(_resign(request(now=0)[:-SIGNATURE_BYTES], MALLORY)) is Rejection.BAD_AUTH


def _doors_with_alice(**kw: object) -> tuple[Door, ...]:
    return (dataclasses.replace(SSH, clients=(client("alice", ALICE, **kw),)), WEB)


def test_not_allowed() -> None:
    # A door that does not list the key, a door that does not exist, a knock door.
    for door in ("web", "nosuchdoor", "knock"):
        assert check(request(ALICE, door)) is Rejection.NOT_ALLOWED
    revoked = _doors_with_alice(revoked=True)
    assert check_signed(request(), SOURCE, revoked, WINDOW, NOW) is Rejection.NOT_ALLOWED


def test_a_revoked_key_is_refused_only_where_it_is_revoked() -> None:
    doors = (
        dataclasses.replace(SSH, clients=(client("bob", BOB, revoked=True),)),
        WEB,
    )
    assert check_signed(request(BOB, "ssh"), SOURCE, doors, WINDOW, NOW) is Rejection.NOT_ALLOWED
    assert isinstance(check_signed(request(BOB, "web"), SOURCE, doors, WINDOW, NOW), SpaRequest)


def test_a_key_is_valid_through_its_expiry_date_in_utc() -> None:
    doors = _doors_with_alice(expires=date(2027, 1, 15))
    last = datetime(2027, 1, 15, 23, 59, 59, tzinfo=UTC).timestamp()
    after = datetime(2027, 1, 16, tzinfo=UTC).timestamp()
    assert isinstance(check_signed(request(now=last), SOURCE, doors, WINDOW, last), SpaRequest)
    assert check_signed(request(now=after), SOURCE, doors, WINDOW, after) is Rejection.NOT_ALLOWED


def test_the_key_is_found_by_its_id_without_trying_every_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    others = tuple(client(f"c{i}", key(10 + i)) for i in range(30))
    doors = (dataclasses.replace(SSH, clients=(*others, client("alice", ALICE))),)
    tried: list[bytes] = []
    real = signed._public_key  # counting the keys a check loads

    def counting(raw: bytes) -> object:
        tried.append(raw)
        return real(raw)

    monkeypatch.setattr(signed, "_public_key", counting)
    assert isinstance(check_signed(request(), SOURCE, doors, WINDOW, NOW), SpaRequest)
    assert tried == [public_bytes(ALICE)]
    assert key_id(public_bytes(ALICE)) == hashlib.sha256(public_bytes(ALICE)).digest()[:8]


def test_a_broken_public_key_in_the_config_opens_nothing() -> None:
    broken = ClientKey(name="broken", public_key=b"\x01")
    doors = (dataclasses.replace(SSH, clients=(broken, client("alice", ALICE))),)
    assert isinstance(check_signed(request(), SOURCE, doors, WINDOW, NOW), SpaRequest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"door": "no such"}, "door name"),
        ({"nonce": b"short"}, "nonce"),
        ({"open_for": -1}, "open_for"),
        ({"open_for": 2**32}, "open_for"),
    ],
)
def test_sign_request_refuses_what_the_format_cannot_hold(
    args: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        request(**args)  # type: ignore[arg-type]


def test_the_public_key_is_32_raw_bytes_as_the_config_holds_them() -> None:
    raw = public_bytes(ALICE)
    assert len(raw) == 32
    assert base64.b64decode(base64.b64encode(raw)) == raw


# Hostile input: any bytes at all, and near misses of a valid packet, are a Rejection.
VALID = request()


@given(st.binary(max_size=2 * MAX_PACKET))
def test_fuzz_any_bytes_are_refused(payload: bytes) -> None:
    assert isinstance(check(payload), Rejection)


@given(st.binary(min_size=MIN_PACKET - 4, max_size=MAX_PACKET))
def test_fuzz_bytes_after_the_magic_are_refused(tail: bytes) -> None:
    result = check(MAGIC + b"\x01" + tail)
    assert isinstance(result, Rejection)
    assert parse_signed(MAGIC + b"\x01" + tail) is None or result is not Rejection.MALFORMED


@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1))
def test_fuzz_a_changed_valid_packet_is_refused(flips: list[tuple[int, int]]) -> None:
    payload = bytearray(VALID)
    for at, mask in flips:
        payload[at] ^= mask
    result = check(bytes(payload))
    assert isinstance(result, Rejection) or bytes(payload) == VALID


@given(st.integers(0, len(VALID)), st.binary(max_size=40))
def test_fuzz_a_cut_or_padded_valid_packet_is_refused(cut: int, tail: bytes) -> None:
    payload = VALID[:cut] + tail
    result = check(payload)
    assert isinstance(result, Rejection) or payload == VALID
