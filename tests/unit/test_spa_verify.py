"""The verifier: fwknopd's order (length and characters, SOURCE, replay, then cryptography), the
replay cache filled only by accepted packets, and the hook for the signed mode."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from knocknft.config import ClientKey, Door, IPAddress, PortSpec
from knocknft.spa import verify
from knocknft.spa.fwknop import MAX_PAYLOAD, check_fwknop
from knocknft.spa.replay import ReplayCache, replay_digest
from knocknft.spa.request import Rejection, SpaRequest
from knocknft.spa.signed import public_bytes, sign_request
from knocknft.spa.verify import SpaVerifier
from tests.unit.spa_support import CLIENT, encrypt, plaintext, saved, spa_config

OTHER = ipaddress.ip_address("198.18.9.9")
MAGIC = b"\x00KNS"


def fake_digest(payload: bytes) -> bytes:
    """The fake mode's replay key: its last three bytes, as a nonce would be."""
    return b"nonce:" + payload[-3:]


def verifier(capacity: int = 100, **kw: str) -> SpaVerifier:
    return SpaVerifier(spa_config(**kw), ReplayCache(capacity), signed_mode=None)


def test_an_accepted_packet_is_refused_when_it_comes_again_from_anywhere() -> None:
    payload, now = saved("sha256")
    v = verifier()
    assert isinstance(v.check(payload, CLIENT, now), SpaRequest)
    assert v.check(payload, CLIENT, now + 1) is Rejection.REPLAY
    assert v.check(payload, OTHER, now + 1) is Rejection.REPLAY


def test_the_digest_is_kept_until_the_stamp_leaves_the_window() -> None:
    payload, now = saved("sha256")
    v = verifier()
    result = v.check(payload, CLIENT, now)
    assert isinstance(result, SpaRequest) and result.stamp is not None
    ((digest, until),) = v.replay.entries(now)
    assert (digest, until) == (replay_digest(payload), result.stamp + 120)
    # At the window's edge it is still a replay; past it, refused for its age, and forgotten.
    assert v.check(payload, CLIENT, until) is Rejection.REPLAY
    assert v.check(payload, CLIENT, until + 0.5) is Rejection.STALE
    assert len(v.replay) == 0


def test_the_replay_check_comes_before_any_cryptography() -> None:
    payload, now = saved("sha256")
    v = verifier()
    assert isinstance(v.check(payload, CLIENT, now), SpaRequest)
    # New keys after a reload: the old packet no longer authenticates, yet it is a replay.
    v.replace(spa_config("other"))
    assert v.check(payload, CLIENT, now + 1) is Rejection.REPLAY


def test_source_comes_before_the_replay_check_and_characters_before_source() -> None:
    payload, now = saved("sha256")
    v = verifier(extra="source: [198.18.0.0/24]")
    assert isinstance(v.check(payload, CLIENT, now), SpaRequest)
    assert v.check(payload, OTHER, now) is Rejection.NOT_ALLOWED
    assert v.check(b"!" * 200, OTHER, now) is Rejection.MALFORMED
    assert v.check(b"", CLIENT, now) is Rejection.MALFORMED
    assert v.check(b"A" * (MAX_PAYLOAD + 1), CLIENT, now) is Rejection.MALFORMED


def test_refused_packets_never_enter_the_cache() -> None:
    v = verifier()
    for name, why in (
        ("other_keys", Rejection.BAD_AUTH),
        ("stale", Rejection.STALE),
        ("outside_open", Rejection.NOT_ALLOWED),
        ("nat", Rejection.NOT_ALLOWED),
    ):
        payload, now = saved(name)
        assert v.check(payload, CLIENT, now) is why
        assert v.check(payload, CLIENT, now) is why  # again: the same answer, not a replay
    assert len(v.replay) == 0


def test_a_full_cache_refuses_authentic_requests_until_room_comes() -> None:
    now = 1_800_000_000
    v = verifier(capacity=1)
    first = encrypt(plaintext(stamp=now))
    second = encrypt(plaintext(stamp=now))
    assert isinstance(v.check(first, CLIENT, now), SpaRequest)
    assert v.check(second, CLIENT, now) is Rejection.NOT_ALLOWED
    assert v.refused_cache_full == 1
    assert v.check(second, CLIENT, now + 121) is Rejection.STALE
    third = encrypt(plaintext(stamp=now + 121))
    assert isinstance(v.check(third, CLIENT, now + 121), SpaRequest)


def test_a_reload_keeps_the_cache_and_takes_the_new_doors() -> None:
    payload, now = saved("two_ports")
    v = verifier()
    v.replace(spa_config(door="    open: [22/tcp]\n    open_for: 30s\n"))
    assert v.check(payload, CLIENT, now) is Rejection.NOT_ALLOWED
    v.replace(spa_config(options="  spa_window: 5s\n"))
    assert v.window == 5


class FakeSigned:
    """A signed mode standing in for knocknft.spa.signed: records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int]] = []

    def __call__(
        self, payload: bytes, source: IPAddress, doors: Sequence[Door], window: int, now: float
    ) -> SpaRequest | Rejection:
        self.calls.append((payload, len(doors)))
        if payload.endswith(b"bad"):
            return Rejection.BAD_AUTH
        return SpaRequest(
            door=doors[0].name,
            key="alice",
            address=source,
            services=doors[0].open,
            open_for=30,
            digest=fake_digest(payload),
            mode="signed",
            stamp=now,
        )


def test_the_signed_hook_takes_magic_packets_with_the_client_doors() -> None:
    signed = FakeSigned()
    cfg = spa_config()
    keys = replace(cfg.doors[0], name="keys", fwknop=None, clients=(ClientKey("alice", bytes(32)),))
    cfg = replace(cfg, doors=(*cfg.doors, keys))
    v = SpaVerifier(cfg, ReplayCache(10), signed_mode=(MAGIC, signed, fake_digest))
    now = 1_800_000_000.0
    result = v.check(MAGIC + b"one", CLIENT, now)
    assert isinstance(result, SpaRequest) and result.door == "keys"
    assert signed.calls == [(MAGIC + b"one", 1)]
    # A replay never reaches the mode's check; nor does a refused packet enter the cache.
    assert v.check(MAGIC + b"one", OTHER, now) is Rejection.REPLAY
    assert v.check(MAGIC + b"bad", CLIENT, now) is Rejection.BAD_AUTH
    assert len(signed.calls) == 2
    # The mode's own replay key, looked up first, catches a re-encoded packet with the same
    # nonce before the mode's check runs.
    assert v.check(MAGIC + b"xone", CLIENT, now) is Rejection.REPLAY
    assert len(signed.calls) == 2
    # Without the mode, a magic packet is no packet at all.
    assert verifier().check(MAGIC + b"one", CLIENT, now) is Rejection.MALFORMED


def test_the_config_port_spec_survives_the_request() -> None:
    payload, now = saved("two_ports")
    result = verifier().check(payload, CLIENT, now)
    assert isinstance(result, SpaRequest)
    assert result.services == (PortSpec(22), PortSpec(53, "udp"))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=MAX_PAYLOAD + 10),
        st.text(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=400
        ).map(str.encode),
        st.tuples(
            st.sampled_from(["sha256", "md5", "nat", "two_ports"]),
            st.integers(0, 300),
            st.binary(max_size=4),
        ).map(lambda t: saved(t[0])[0][: t[1]] + t[2] + saved(t[0])[0][t[1] + len(t[2]) :]),
    ),
    st.sampled_from([CLIENT, OTHER, ipaddress.ip_address("2001:db8::2")]),
)
def test_any_payload_is_a_request_or_a_rejection_never_an_exception(
    payload: bytes, source: IPAddress
) -> None:
    v = verifier()
    _, now = saved("sha256")
    result = v.check(payload, source, now)
    assert isinstance(result, SpaRequest | Rejection)
    if isinstance(result, SpaRequest):  # only an unchanged packet of the door's keys
        assert payload in (saved("sha256")[0], saved("two_ports")[0])


FIELD = st.one_of(
    st.text(max_size=20).map(lambda s: s.encode("utf-8", "replace")),
    st.sampled_from([b"", b"0", b"999999", b"tcp/22", b"YWJj", b":", b"1", b"65536"]),
)
B64_TEXT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        # Anything at all behind a good HMAC,
        st.lists(FIELD, max_size=12).map(lambda fields: b":".join(fields) or b"x"),
        # and well-formed packets (good inner digest) with odd messages, types and fields.
        st.tuples(
            st.text(max_size=40),
            st.integers(-1, 12),
            st.lists(st.one_of(B64_TEXT, st.text(max_size=8)), max_size=5),
        ).map(lambda t: plaintext(t[0], stamp=1_800_000_000, message_type=t[1], after=tuple(t[2]))),
    )
)
def test_any_authentic_plaintext_is_a_request_or_a_rejection(text: bytes) -> None:
    # Packets that pass the HMAC whatever they hold: the decoder behind the HMAC is fuzzed.
    now = 1_800_000_000
    result = verifier().check(encrypt(text), CLIENT, now)
    assert isinstance(result, SpaRequest | Rejection)
    assert result is not Rejection.BAD_AUTH


def test_signed_and_fwknop_packets_meet_one_verifier() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    cfg = spa_config()
    keys = replace(
        cfg.doors[0], name="keys", fwknop=None, clients=(ClientKey("alice", public_bytes(private)),)
    )
    v = SpaVerifier(replace(cfg, doors=(*cfg.doors, keys)), ReplayCache(10))
    fwknop, now = saved("sha256")
    packet = sign_request(private, "keys", None, 0, now=now, nonce=bytes(16))
    accepted = v.check(packet, CLIENT, now)
    assert isinstance(accepted, SpaRequest)
    assert (accepted.mode, accepted.key, accepted.address) == ("signed", "alice", CLIENT)
    assert isinstance(v.check(fwknop, CLIENT, now), SpaRequest)
    assert v.check(packet, OTHER, now + 1) is Rejection.REPLAY
    assert v.check(fwknop, OTHER, now + 1) is Rejection.REPLAY
    # Each digest is kept while its packet's own timestamp is in the window, and no longer.
    assert len(v.replay.entries(now + 119)) == 2
    assert len(v.replay.entries(now + 121)) == 0


def test_a_key_flooding_valid_packets_fills_its_share_and_another_key_still_gets_in() -> None:
    now = 1_800_000_000
    two = spa_config(door="    open: [22/tcp]\n    open_for: 30s\n")
    other = replace(two.doors[0], name="other")
    v = SpaVerifier(replace(two, doors=(*two.doors, other)), ReplayCache(4), signed_mode=None)
    assert v.replay.share == 2
    # Both stanzas hold the same keys: the first (ssh) takes every packet, as fwknopd would.
    flood = [v.check(encrypt(plaintext(stamp=now)), CLIENT, now) for _ in range(5)]
    assert [isinstance(r, SpaRequest) for r in flood] == [True, True, False, False, False]
    assert v.refused_cache_full == 3
    # The other key's share is untouched: a request of its own is accepted.
    v.replace(replace(two, doors=(other, two.doors[0])))
    accepted = v.check(encrypt(plaintext(stamp=now)), CLIENT, now)
    assert isinstance(accepted, SpaRequest) and accepted.key == "other"


def test_a_packet_accepted_after_the_clock_steps_back_is_not_replayed() -> None:
    now = 1_800_000_000
    v = verifier()
    # A packet judged while the clock ran 10 minutes fast (stale, but the cache saw that time).
    assert v.check(encrypt(plaintext(stamp=now)), CLIENT, now + 600) is Rejection.STALE
    packet = encrypt(plaintext(stamp=now))
    assert isinstance(v.check(packet, CLIENT, now), SpaRequest)
    assert v.check(packet, OTHER, now + 1) is Rejection.REPLAY


def test_a_stale_authentic_packet_sent_again_costs_no_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = 1_800_000_000
    v = verifier()
    calls: list[bytes] = []

    def counted(payload: bytes, *args: object) -> SpaRequest | Rejection:
        calls.append(payload)
        return check_fwknop(payload, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "check_fwknop", counted)
    stale = encrypt(plaintext(stamp=now - 600))
    assert [v.check(stale, CLIENT, now) for _ in range(50)] == [Rejection.STALE] * 50
    assert len(calls) == 1  # a flood of it is a lookup per packet
    # From another source too: staleness is the packet's, not its sender's.
    assert v.check(stale, OTHER, now) is Rejection.STALE
    # Refused packets of other kinds are judged each time: the answer may depend on the sender.
    forged = encrypt(plaintext(stamp=now), keys="other")
    assert [v.check(forged, CLIENT, now) for _ in range(3)] == [Rejection.BAD_AUTH] * 3
    assert len(calls) == 4
    # Bounded: the oldest stale packet is forgotten first, and is then judged again.
    for n in range(verify.STALE_REMEMBERED):
        v.check(encrypt(plaintext(stamp=now - 600 - n)), CLIENT, now)
    assert v.check(stale, CLIENT, now) is Rejection.STALE
    assert len(calls) == 4 + verify.STALE_REMEMBERED + 1
    # A fresh packet is judged as ever.
    assert isinstance(v.check(encrypt(plaintext(stamp=now)), CLIENT, now), SpaRequest)


def test_each_stanza_s_source_and_ports_hold_whatever_the_order() -> None:
    now = 1_800_000_000
    base = spa_config(door="    open: [22/tcp]\n    open_for: 30s\n")
    stanza = base.doors[0].fwknop
    assert stanza is not None
    inside = replace(
        base.doors[0],
        name="inside",
        fwknop=replace(stanza, source=(ipaddress.ip_network("198.18.5.0/24"),)),
    )
    anywhere = replace(base.doors[0], name="anywhere", open=(PortSpec(53, "udp"),))
    near = ipaddress.ip_address("198.18.5.7")
    for doors in ((inside, anywhere), (anywhere, inside)):
        v = SpaVerifier(replace(base, doors=doors), ReplayCache(10), signed_mode=None)
        # Outside inside's SOURCE, for inside's port: no stanza may grant it.
        ssh = encrypt(plaintext(stamp=now))
        assert v.check(ssh, CLIENT, now) is Rejection.NOT_ALLOWED
        # Within it: inside grants its own port, and only anywhere grants its own.
        granted = v.check(encrypt(plaintext(stamp=now)), near, now)
        assert isinstance(granted, SpaRequest) and granted.door == "inside"
        dns = v.check(encrypt(plaintext("198.18.0.2,udp/53", stamp=now)), near, now)
        assert isinstance(dns, SpaRequest) and dns.door == "anywhere"
        both = encrypt(plaintext("198.18.0.2,tcp/22,udp/53", stamp=now))
        assert v.check(both, near, now) is Rejection.NOT_ALLOWED, "no stanza holds both"
