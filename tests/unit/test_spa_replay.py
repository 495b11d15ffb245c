"""The replay cache: bounded, each digest kept exactly while its packet can pass the window."""

from __future__ import annotations

import pytest

from knocknft.spa.replay import ReplayCache, replay_digest


def digest(n: int) -> bytes:
    return replay_digest(str(n).encode())


def test_a_digest_is_seen_until_its_time_and_not_after() -> None:
    cache = ReplayCache(10)
    assert not cache.seen(digest(1), 100.0)
    assert cache.add(digest(1), until=220.0)
    assert cache.seen(digest(1), 100.0)
    assert cache.seen(digest(1), 220.0)  # through its last second: the window's edge passes
    assert not cache.seen(digest(1), 220.001)
    assert len(cache) == 0  # dropped once run out: memory follows the live digests


def test_when_full_of_live_digests_it_refuses_and_keeps_every_one() -> None:
    cache = ReplayCache(3)
    cache.seen(b"", 0.0)
    for n in range(3):
        assert cache.add(digest(n), until=100.0 + n)
    assert not cache.add(digest(9), until=500.0)
    assert not cache.seen(digest(9), 50.0)
    assert all(cache.seen(digest(n), 50.0) for n in range(3))
    # Once one has run out, there is room again.
    assert not cache.seen(digest(9), 100.5)  # digest(0) ran out at 100
    assert cache.add(digest(9), until=500.0)
    assert len(cache) == 3


def test_a_flood_of_accepted_packets_stays_within_capacity() -> None:
    cache = ReplayCache(100)
    accepted = 0
    for n in range(10_000):
        now = n * 0.1
        cache.seen(digest(n), now)
        accepted += cache.add(digest(n), until=now + 5)
        assert len(cache) <= 100
    # 5 s of 10 packets a second is 50 live digests: every one fits.
    assert accepted == 10_000


def test_adding_again_extends_never_shortens() -> None:
    cache = ReplayCache(2)
    cache.add(digest(1), until=200.0)
    cache.add(digest(1), until=150.0)
    assert cache.seen(digest(1), 199.0)
    cache.add(digest(1), until=300.0)
    assert cache.seen(digest(1), 300.0) and not cache.seen(digest(1), 300.5)
    assert len(cache) == 0


def test_a_digest_already_out_of_the_window_is_not_kept() -> None:
    cache = ReplayCache(1)
    cache.seen(digest(0), 1000.0)
    assert cache.add(digest(1), until=999.0)
    assert len(cache) == 0
    assert cache.add(digest(2), until=1001.0)


def test_entries_and_load_carry_the_live_digests_over_a_restart() -> None:
    cache = ReplayCache(10)
    for n in range(5):
        cache.add(digest(n), until=100.0 + 10 * n)
    saved = cache.entries(now=115.0)
    assert saved == [(digest(n), 100.0 + 10 * n) for n in range(2, 5)]
    loaded = ReplayCache.load(saved, capacity=10, now=125.0)
    assert [cache_n for cache_n in range(5) if loaded.seen(digest(cache_n), 125.0)] == [3, 4]
    # A smaller cache keeps those that stay live longest.
    smaller = ReplayCache.load(saved, capacity=1, now=0.0)
    assert smaller.capacity == 1 and len(smaller) == 1
    assert smaller.seen(digest(4), 0.0)


def test_a_cache_holds_at_least_one_digest() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplayCache(0)


def test_the_replay_key_is_the_raw_payloads_sha256() -> None:
    assert len(replay_digest(b"x")) == 32
    assert replay_digest(b"x") != replay_digest(b"x ")


def test_a_clock_stepped_back_still_remembers_what_is_accepted_after_the_step() -> None:
    # The wall clock ran 10 minutes fast, then NTP stepped it back: a packet accepted after the
    # step must be remembered for its whole window, or it could be replayed within it.
    cache = ReplayCache(10)
    assert not cache.seen(digest(0), 1600.0)
    assert not cache.seen(digest(1), 1000.0)
    assert cache.add(digest(1), until=1240.0)
    assert cache.seen(digest(1), 1000.0)
    assert cache.seen(digest(1), 1240.0)
    assert not cache.seen(digest(1), 1240.5)


def test_each_owner_holds_at_most_its_share_and_the_others_still_get_in() -> None:
    cache = ReplayCache(10)
    cache.owners = 2
    assert cache.share == 5
    cache.seen(b"", 0.0)
    flood = [cache.add(digest(n), until=100.0, owner="fwknop:flood") for n in range(50)]
    assert flood == [True] * 5 + [False] * 45  # refused past its share: nothing live dropped
    assert all(cache.add(digest(100 + n), until=100.0, owner="signed:alice") for n in range(5))
    assert not cache.add(digest(200), until=100.0, owner="signed:alice")
    assert len(cache) == 10
    # Once the flood's digests run out, its share is free again.
    cache.seen(b"", 100.5)
    assert len(cache) == 0
    assert cache.add(digest(300), until=200.0, owner="fwknop:flood")


def test_digests_read_back_without_owner_count_against_the_whole_cache() -> None:
    cache = ReplayCache.load([(digest(n), 100.0) for n in range(4)], capacity=4, now=0.0)
    cache.owners = 2
    assert not cache.add(digest(9), until=100.0)  # no owner: the whole cache is full
    assert cache.add(digest(9), until=100.0, owner="signed:alice")  # its own share is empty
