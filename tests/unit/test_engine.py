"""The knock engine, rule by rule: knockd's semantics kept, knockd's defects regression-tested.

Each case is a config, a list of knocks (time, source, port/proto[, flags][, destination]) and the
doors that must open (and for whom). Time is the knock's own timestamp: no clock, no sleeps.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from knocknft.config import Config, IPAddress, parse_config, parse_port_spec
from knocknft.core.engine import Engine
from knocknft.core.events import (
    DoorDisabled,
    Event,
    Evicted,
    Invalidated,
    OneTimeUsed,
    Opened,
    Progress,
    TimedOut,
)

SYN, ACK, RST = 0x02, 0x10, 0x04
SERVER = ipaddress.ip_address("198.18.0.1")
# Every knock a connection of its own unless a test says otherwise, as the knock client makes them.
_SOURCE_PORTS = itertools.count(40000)


@dataclass(frozen=True)
class K:
    """A knock as the decoder delivers it."""

    source: IPAddress
    destination: IPAddress
    protocol: str
    dport: int
    tcp_flags: int
    timestamp: float
    sport: int = field(default_factory=lambda: next(_SOURCE_PORTS))
    seq: int = 1


def again(k: K, t: float) -> K:
    """The same packet sent again at `t`: a retransmitted SYN (same source port and sequence)."""
    return dataclasses.replace(k, timestamp=t)


def knock(t: float, src: str, port: str, flags: int = SYN, dst: IPAddress = SERVER) -> K:
    spec = parse_port_spec(port)
    return K(
        ipaddress.ip_address(src),
        dst,
        spec.protocol,
        spec.port,
        flags if spec.protocol == "tcp" else 0,
        t,
    )


def config(text: str) -> Config:
    return parse_config(textwrap.dedent(text)).config


SSH = """\
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    seq_timeout: 5s
    open: [22/tcp]
    open_for: 30s
"""


def run(cfg: Config, knocks: list[K], engine: Engine | None = None) -> tuple[Engine, list[Event]]:
    engine = engine or Engine(cfg.doors)
    events: list[Event] = []
    for k in knocks:
        events += engine.on_knock(k)
    return engine, events


def opened(events: list[Event]) -> list[tuple[str, str]]:
    return [(str(e.source), e.door.name) for e in events if isinstance(e, Opened)]


A, B = "198.18.0.2", "198.18.0.3"
RIGHT = ["7000/tcp", "9000/udp", "8000/tcp"]


def seq(src: str, ports: list[str], start: float = 0.0, step: float = 0.1, **kw: int) -> list[K]:
    return [knock(start + i * step, src, p, **kw) for i, p in enumerate(ports)]  # type: ignore[arg-type]


CASES: list[tuple[str, list[K], list[tuple[str, str]]]] = [
    ("right sequence opens", seq(A, RIGHT), [(A, "ssh")]),
    ("wrong order fails", seq(A, ["7000/tcp", "8000/tcp", "9000/udp"]), []),
    ("wrong protocol fails", seq(A, ["7000/tcp", "9000/tcp", "8000/tcp"]), []),
    ("too slow fails", seq(A, RIGHT, step=2.6), []),
    ("just in time opens", seq(A, RIGHT, step=2.49), [(A, "ssh")]),
    (
        "a wrong port in the middle fails",
        seq(A, ["7000/tcp", "9000/udp", "7000/tcp", "8000/tcp"]),
        [],
    ),
    ("a repeated knock fails", seq(A, ["7000/tcp", "7000/tcp", "9000/udp", "8000/tcp"]), []),
    (
        "the invalidating knock does not start a new attempt (knockd)",
        seq(A, ["7000/tcp", "9000/udp", "7000/tcp", "9000/udp", "8000/tcp"]),
        [],
    ),
    (
        "after a failure, a fresh sequence works",
        seq(A, ["7000/tcp", "8000/tcp", *RIGHT]),
        [(A, "ssh")],
    ),
    (
        "wrong TCP flags are ignored, not fatal",
        [*seq(A, RIGHT[:2]), knock(0.15, A, "8000", ACK), knock(0.2, A, "8000")],
        [(A, "ssh")],
    ),
    (
        "a timeout restarts: a late first step begins again",
        [knock(0, A, "7000"), *seq(A, RIGHT, start=6)],
        [(A, "ssh")],
    ),
]


@pytest.mark.parametrize(("name", "knocks", "expected"), CASES, ids=[c[0] for c in CASES])
def test_sequences(name: str, knocks: list[K], expected: list[tuple[str, str]]) -> None:
    _, events = run(config(SSH), knocks)
    assert opened(events) == expected


def test_stages_are_reported_in_order() -> None:
    _, events = run(config(SSH), seq(A, RIGHT))
    assert [(type(e).__name__, getattr(e, "stage", None)) for e in events] == [
        ("Progress", 1),
        ("Progress", 2),
        ("Progress", 3),
        ("Opened", None),
    ]


TCPFLAGS = SSH.replace("    open: [22/tcp]", "    tcpflags: syn,!ack\n    open: [22/tcp]")


def test_tcpflags_match_per_bit() -> None:
    cfg = config(TCPFLAGS)
    _, ok = run(cfg, seq(A, RIGHT, flags=SYN | 0x40))  # ECE set: not named, so ignored
    assert opened(ok) == [(A, "ssh")]
    engine, bad = run(cfg, seq(A, RIGHT, flags=SYN | ACK))
    assert opened(bad) == [] and engine.tracked == 0, "SYN+ACK never starts an attempt"
    assert engine.counters.flags_ignored == 1  # 7000 (a first step); 8000 matches no door start


def test_two_clients_interleaved_both_get_in() -> None:
    """knockd defect 1: removing one attempt dropped the others."""
    knocks = [
        k for pair in zip(seq(A, RIGHT), seq(B, RIGHT, start=0.05), strict=True) for k in pair
    ]
    _, events = run(config(SSH), knocks)
    assert sorted(opened(events)) == [(A, "ssh"), (B, "ssh")]


def test_a_timed_out_attempt_does_not_disturb_another_client() -> None:
    knocks = [knock(0, B, "7000"), *seq(A, RIGHT, start=4.0, step=0.5)]  # B times out at 5.0
    _, events = run(config(SSH), knocks)
    assert opened(events) == [(A, "ssh")]
    assert [(str(e.source), e.stage) for e in events if isinstance(e, TimedOut)] == [(B, 1)]


SHARED_PREFIX = """\
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    open: [22/tcp]
    open_for: 30s
  web:
    sequence: [7000/tcp, 9000/udp, 8000/tcp, 6000/udp]
    open: [443/tcp]
    open_for: 30s
  other:
    sequence: [7000/tcp, 5000/udp, 6500/tcp]
    open: [80/tcp]
    open_for: 30s
"""


def test_doors_sharing_a_prefix_advance_in_parallel() -> None:
    _, events = run(config(SHARED_PREFIX), seq(A, [*RIGHT, "6000/udp"]))
    assert opened(events) == [(A, "ssh"), (A, "web")]
    invalid = [e.door.name for e in events if isinstance(e, Invalidated)]
    assert invalid == ["other"], "the third door started in parallel and failed at step 2"


def test_an_attempt_in_progress_blocks_other_first_steps() -> None:
    cfg = config(
        SHARED_PREFIX.replace("[7000/tcp, 5000/udp, 6500/tcp]", "[5000/udp, 7000/tcp, 6500/tcp]")
    )
    # A is at ssh stage 1; 5000/udp is another door's first step: it invalidates, starts nothing.
    _, events = run(cfg, seq(A, ["7000/tcp", "5000/udp", "7000/tcp", "6500/tcp"]))
    assert opened(events) == []


def test_target_filters_doors_and_attempts() -> None:
    cfg = config(SSH + "    target: 198.18.0.1\n")
    other_dst = ipaddress.ip_address("198.18.0.99")
    _, wrong = run(cfg, [knock(i * 0.1, A, p, dst=other_dst) for i, p in enumerate(RIGHT)])
    assert opened(wrong) == []
    # A knock to another address does not disturb an attempt for the target.
    knocks = [*seq(A, RIGHT[:2]), knock(0.25, A, "1234/udp", dst=other_dst), knock(0.3, A, "8000")]
    _, events = run(cfg, knocks)
    assert opened(events) == [(A, "ssh")]


def test_ipv6_sources() -> None:
    _, events = run(config(SSH), seq("2001:db8::2", RIGHT))
    assert opened(events) == [("2001:db8::2", "ssh")]


def test_timer_expires_attempts_without_packets() -> None:
    """knockd defect 7: timeouts were only noticed when a packet arrived."""
    engine, _ = run(config(SSH), [knock(0, A, "7000"), knock(1, B, "7000")])
    assert engine.tracked == 2 and engine.next_deadline() == 5.0
    assert engine.expire(4.99) == []
    first = engine.expire(5.0)
    assert [(str(e.source), e.stage) for e in first if isinstance(e, TimedOut)] == [(A, 1)]
    assert engine.next_deadline() == 6.0
    assert len(engine.expire(100)) == 1 and engine.tracked == 0 and engine.next_deadline() is None


def test_flood_of_spoofed_first_steps_is_bounded_and_evicts_oldest_first() -> None:
    """knockd defect 6: no cap, O(n) scans; here memory is capped and the legitimate knocker
    who keeps knocking still gets in."""
    engine = Engine(config(SSH).doors, max_attempts=100)
    events: list[Event] = []
    for i in range(1000):
        src = f"198.19.{i // 250}.{i % 250 + 1}"
        events += engine.on_knock(knock(i * 0.001, src, "7000"))
        assert engine.tracked <= 100
    evicted = [e for e in events if isinstance(e, Evicted)]
    assert len(evicted) == 900 == engine.counters.evictions
    assert str(evicted[0].source) == "198.19.0.1", "oldest first"
    # A legitimate sequence, each step within the flood's lifetime: it is among the newest.
    knocks = []
    for j, port in enumerate(RIGHT):
        knocks.append(knock(1.0 + j * 0.01, A, port))
        knocks += [knock(1.0 + j * 0.01 + 0.001, f"198.19.9.{n + 1}", "7000") for n in range(50)]
    _, more = run(config(SSH), knocks, engine)
    assert opened(more) == [(A, "ssh")]


def test_a_lower_cap_on_reload_evicts_the_oldest_attempts_at_once() -> None:
    engine = Engine(config(SSH).doors, max_attempts=10)
    for i in range(10):
        engine.on_knock(knock(i * 0.1, f"198.19.0.{i + 1}", "7000"))
    engine.reload(config(SSH).doors, max_attempts=4)
    assert engine.tracked == 4 and engine.max_attempts == 4
    evicted = [e for e in engine.expire(1.0) if isinstance(e, Evicted)]
    assert [str(e.source) for e in evicted] == [f"198.19.0.{i}" for i in range(1, 7)]
    assert engine.counters.evictions == 6
    with pytest.raises(ValueError, match="at least 1"):
        engine.reload(config(SSH).doors, max_attempts=0)


def test_reload_keeps_attempts_on_unchanged_doors_only() -> None:
    web = "  web:\n    sequence: [6000/udp, 6001/tcp, 6002/udp]\n    open: [443/tcp]\n"
    two = SSH + web + "    open_for: 30s\n"
    engine, _ = run(config(two), [knock(0, A, "7000"), knock(0, B, "6000/udp")])
    assert engine.tracked == 2
    # ssh moves in the file (other line numbers) but is unchanged; web changes its sequence.
    changed = "# a comment that shifts every line\n" + two.replace("6002/udp", "6003/udp")
    engine.reload(config(changed).doors)
    assert engine.tracked == 1
    _, events = run(config(changed), [knock(0.1, A, "9000/udp"), knock(0.2, A, "8000")], engine)
    assert opened(events) == [(A, "ssh")]


def test_one_time_sequences_advance_and_disable_the_door(tmp_path: Path) -> None:
    otp = tmp_path / "ssh.seq"
    otp.write_text("#1000,1001,1002\n 2000,2001:udp,2002\n 3000:udp,3001,3002\n")
    cfg = config(
        f"doors:\n  ssh:\n    one_time_sequences: {otp}\n    open: [22/tcp]\n    open_for: 30s\n"
    )
    engine = Engine(cfg.doors)
    _, first = run(cfg, seq(A, ["1000", "1001", "1002"]), engine)
    assert opened(first) == [], "a used line is not a way in"
    _, second = run(cfg, seq(A, ["2000", "2001/udp", "2002"], start=1), engine)
    assert opened(second) == [(A, "ssh")]
    assert [e.line for e in second if isinstance(e, OneTimeUsed)] == [2]
    _, replay = run(cfg, seq(B, ["2000", "2001/udp", "2002"], start=2), engine)
    assert opened(replay) == [], "a used sequence cannot be replayed"
    _, third = run(cfg, seq(B, ["3000/udp", "3001", "3002"], start=3), engine)
    assert opened(third) == [(B, "ssh")]
    assert any(isinstance(e, DoorDisabled) for e in third), "knockd defect 2: crashed here"
    _, after = run(cfg, seq(A, ["3000/udp", "3001", "3002"], start=4), engine)
    assert after == [] and engine.active_steps("ssh") is None


def test_a_one_step_door_opens_on_its_knock() -> None:
    cfg = config(
        "doors:\n  ping:\n    sequence: [7777/udp]\n    open: [22/tcp]\n    open_for: 5s\n"
    )
    _, events = run(cfg, [knock(0, A, "7777/udp")])
    assert opened(events) == [(A, "ping")]


def test_counters_add_up() -> None:
    engine, _ = run(config(SSH), [*seq(A, RIGHT), *seq(B, ["7000/tcp", "8000/tcp"])])
    c = engine.counters
    assert (c.knocks, c.stages, c.opens, c.invalidations) == (5, 4, 1, 1)
    assert isinstance(Progress(SERVER, config(SSH).doors[0], 1), Progress)


def test_ipv4_and_v4_compatible_ipv6_sources_are_different_knockers() -> None:
    """Attempts are keyed by the address as an int; ::198.18.0.2 must not share 198.18.0.2's."""
    knocks = [
        knock(0, A, "7000"),
        knock(0.1, "::198.18.0.2", "9000/udp"),
        *seq(A, RIGHT[1:], start=0.2),
    ]
    _, events = run(config(SSH), knocks)
    assert opened(events) == [(A, "ssh")]


# -- a retransmission is not a knock ------------------------------------------------------------

TCP3 = """\
doors:
  ssh:
    sequence: [7000/tcp, 8000/tcp, 9000/tcp]
    seq_timeout: 25s
    open: [22/tcp]
    open_for: 30s
  banned:
    sequence: [1226/tcp, 1226/tcp]
    open: [22/tcp]
    open_for: 30s
  udp:
    sequence: [5000/udp, 6000/udp]
    open: [22/tcp]
    open_for: 30s
"""


def blocking_connect(t: float, src: str, port: str, retries: int = 2) -> list[K]:
    """What ssh or telnet sends to a port that drops: one SYN, then the same SYN again at 1 s,
    3 s, ... (the kernel's backoff), all with the connection's source port and sequence."""
    first = knock(t, src, port)
    return [first, *(again(first, t + 2**n - 1) for n in range(1, retries + 1))]


def test_retransmitted_syns_neither_advance_nor_break_an_attempt() -> None:
    knocks = [blocking_connect(10.0 * i, A, p) for i, p in enumerate(["7000", "8000", "9000"])]
    engine, events = run(config(TCP3), [k for connect in knocks for k in connect])
    assert opened(events) == [(A, "ssh")]
    assert [e.stage for e in events if isinstance(e, Progress)] == [1, 2, 3]
    assert not [e for e in events if isinstance(e, Invalidated)]
    # The 9000 retransmissions come after the door opened: 9000 starts no door, so nothing.
    assert engine.counters.retransmissions_ignored == 4


def test_a_new_connection_to_the_same_port_breaks_the_attempt() -> None:
    first = knock(0, A, "7000")
    new_port = knock(1, A, "7000")  # a new source port: a second `ssh -p 7000`
    new_isn = dataclasses.replace(first, timestamp=1, seq=first.seq + 1)  # the port reused
    for second in (new_port, new_isn):
        engine, events = run(config(TCP3), [first, second, *seq(A, ["8000", "9000"], start=2)])
        assert opened(events) == []
        assert [type(e).__name__ for e in events][:2] == ["Progress", "Invalidated"]
        assert engine.counters.retransmissions_ignored == 0


def test_the_breaking_connections_retransmissions_start_nothing() -> None:
    """`ssh -p 7000` twice, then 8000 and 9000: the second connection breaks the attempt, and
    its own SYNs again must not start a new one that 8000 and 9000 would then complete."""
    breaker = knock(1, A, "7000")
    knocks = [knock(0, A, "7000"), breaker, again(breaker, 2), again(breaker, 4)]
    engine, events = run(config(TCP3), [*knocks, *seq(A, ["8000", "9000"], start=5)])
    assert opened(events) == []
    assert [type(e).__name__ for e in events] == ["Progress", "Invalidated"]
    assert engine.counters.retransmissions_ignored == 2
    assert engine.tracked == 0, "the next other packet forgot the broken attempt"
    _, events = run(config(TCP3), seq(A, ["7000", "8000", "9000"], start=6), engine)
    assert opened(events) == [(A, "ssh")], "and a fresh sequence works"


def test_a_broken_attempt_ends_silently_at_its_timeout() -> None:
    engine, _ = run(config(TCP3), [knock(0, A, "7000"), knock(1, A, "7000")])
    assert engine.tracked == 1
    assert engine.expire(30.0) == [] and engine.tracked == 0
    assert engine.counters.timeouts == 0


def test_one_blocking_connect_does_not_complete_a_door_that_repeats_its_port() -> None:
    _, events = run(config(TCP3), blocking_connect(0, A, "1226", retries=3))
    assert opened(events) == []
    _, events = run(
        config(TCP3), [*blocking_connect(0, A, "1226"), *blocking_connect(4, A, "1226")]
    )
    assert opened(events) == [(A, "banned")]


def test_only_the_last_counted_connection_is_a_retransmission() -> None:
    """The 7000 connection's SYN again after 8000 was counted is a knock on 7000 out of turn."""
    first = knock(0, A, "7000")
    _, events = run(
        config(TCP3), [first, knock(0.5, A, "8000"), again(first, 1), knock(2, A, "9000")]
    )
    assert opened(events) == []


def test_udp_datagrams_count_each_time_even_when_identical() -> None:
    """UDP has no connection to retransmit: a repeat is a knock, as in knockd."""
    datagram = knock(0, A, "5000/udp")
    engine, events = run(config(TCP3), [datagram, again(datagram, 0.1), knock(0.2, A, "6000/udp")])
    assert opened(events) == []
    assert engine.counters.invalidations == 1
    assert engine.counters.retransmissions_ignored == 0
