"""The daemon's SPA side with a stand-in verifier and reader: an accepted request granted as a
door's opening, rejections counted by reason, the replay file written before the grant, read
back at start, and failing closed when it is damaged or cannot be written."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from knocknft.config import Config, Door, FwknopKey, PortSpec, parse_config
from knocknft.core.sources import HostAddresses, refusal
from knocknft.daemon import spa_replay
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.executor import Daemon
from knocknft.daemon.hooks import report_lost, source_stats
from knocknft.daemon.spa import SpaReader, SpaService
from knocknft.daemon.spa_replay import REPLAY_FILE, load_replay, save_replay
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.nflog import NflogGroupBusy
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.spa_nflog import SpaDatagram
from knocknft.nft.fake import FakeNft
from knocknft.spa.replay import ReplayCache
from knocknft.spa.request import Rejection, SpaRequest
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import GOOD, NOW, with_state_dir

CLIENT = ipaddress.ip_address("198.18.0.2")
SENDER = ipaddress.ip_address("198.18.0.9")  # behind a NAT, say: the packet names CLIENT
DOOR = Door(
    "ssh-spa",
    fwknop=FwknopKey((), b"k" * 32, b"h" * 64),
    open=(PortSpec(22), PortSpec(2222)),
    open_for=30,
    max_open_for=300,
    start_command="echo start %IP%",
    stop_command="echo stop %IP%",
    cmd_timeout=60,
)


def spa_config(state_dir: Path) -> Config:
    config = with_state_dir(parse_config(GOOD).config, state_dir)
    return dataclasses.replace(config, doors=(*config.doors, DOOR))


def request(digest: bytes = b"\x01" * 32, open_for: int = 120, **fields: object) -> SpaRequest:
    values: dict[str, object] = {
        "door": DOOR.name,
        "key": DOOR.name,
        "address": CLIENT,
        "services": (PortSpec(22),),
        "open_for": open_for,
        "digest": digest,
        "mode": "fwknop",
        **fields,
    }
    return SpaRequest(**values)  # type: ignore[arg-type]


class Verifier:
    """Answers with `answers`, in turn; adds accepted digests to the cache as SpaVerifier does."""

    def __init__(self, config: Config, replay: ReplayCache) -> None:
        self.config, self.replay = config, replay
        self.answers: list[SpaRequest | Rejection] = []
        self.refused_cache_full = 0

    def check(self, payload: bytes, source: object, now: float) -> SpaRequest | Rejection:
        answer = self.answers.pop(0)
        if isinstance(answer, SpaRequest):
            if self.replay.seen(answer.digest, now):
                return Rejection.REPLAY
            self.replay.add(answer.digest, now + self.config.options.spa_window)
        return answer

    def replace(self, config: Config) -> None:
        self.config = config


class Reader:
    def __init__(self, group: int) -> None:
        self.group = group
        self.counters = NflogCounters()
        self.queued: list[list[SpaDatagram]] = []
        self.closed = False

    def fileno(self) -> int:
        return 99

    def read_batch(self) -> list[SpaDatagram]:
        return self.queued.pop(0) if self.queued else []

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    nft: FakeNft
    runner: RecordingRunner
    spa: SpaService
    clock: Clock
    events: Path

    @property
    def verifier(self) -> Verifier:
        assert isinstance(self.spa.verifier, Verifier)
        return self.spa.verifier

    def send(self, *answers: SpaRequest | Rejection) -> None:
        self.verifier.answers += answers
        self.spa.handle([SpaDatagram(SENDER, b"packet") for _ in answers])

    def audit(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.events.read_text().splitlines()]


def rig_for(config: Config, tmp_path: Path, reader: Callable[[int], SpaReader] = Reader) -> Rig:
    clock = Clock()
    runner = RecordingRunner()
    nft = loaded_nft(config)
    events = tmp_path / "events.jsonl"
    daemon = Daemon(
        config, nft, runner, PendingStops(None), clock=clock, audit=EventLog(events, clock)
    )
    spa = SpaService(daemon, reader, verifier=Verifier)
    spa.start()
    return Rig(daemon, nft, runner, spa, clock, events)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    yield rig_for(spa_config(state), tmp_path)


def test_an_accepted_request_is_granted_as_asked_and_named_in_log_and_audit(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="knocknft"):
        rig.send(request())
    [script] = rig.nft.scripts
    assert script.endswith('allow4 { 198.18.0.2 . tcp . 22 timeout 120s comment "ssh-spa" }\n'), (
        "only the service asked for, for as long as asked"
    )
    assert "2222" not in script
    assert rig.runner.commands == ["echo start 198.18.0.2"]
    assert rig.daemon.pending.is_pending(DOOR.name, CLIENT)
    assert (
        "198.18.0.2: ssh-spa: SPA request accepted (key ssh-spa, fwknop, sent from 198.18.0.9)"
        in caplog.text
    )
    assert "198.18.0.2: ssh-spa: granted 22/tcp for 120s" in caplog.text
    opened = [e for e in rig.audit() if e["event"] == "spa_open"]
    assert opened == [
        {
            "time": opened[0]["time"],
            "event": "spa_open",
            "source": "198.18.0.2",
            "door": "ssh-spa",
            "key": "ssh-spa",
            "mode": "fwknop",
            "sender": "198.18.0.9",
        }
    ]
    assert "6b6b6b" not in rig.events.read_text()  # the key's bytes: never
    assert rig.spa.stats()["spa_accepted"] == 1


def test_rejections_are_counted_by_reason_and_shown_only_at_debug(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="knocknft"):
        rig.send(Rejection.BAD_AUTH, Rejection.BAD_AUTH, Rejection.STALE)
    assert "SPA" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="knocknft"):
        rig.send(Rejection.MALFORMED, Rejection.NOT_ALLOWED)
    assert "198.18.0.9: SPA packet refused: not_allowed" in caplog.text
    stats = source_stats(NflogCounters(), None, rig.spa)
    assert {k: v for k, v in stats.items() if k.startswith("spa_rejected")} == {
        "spa_rejected_malformed": 1,
        "spa_rejected_bad_auth": 2,
        "spa_rejected_stale": 1,
        "spa_rejected_replay": 0,
        "spa_rejected_not_allowed": 1,
    }
    assert stats["spa_accepted"] == 0 and rig.nft.scripts == []


def test_the_replay_file_holds_each_accepted_digest_before_its_grant_and_is_read_back(
    rig: Rig, tmp_path: Path
) -> None:
    rig.send(request(b"\xaa" * 32))
    path = rig.daemon.config.options.state_dir / REPLAY_FILE
    saved = json.loads(path.read_text())
    assert saved["digests"] == [["aa" * 32, NOW + 120]] and saved["window"] == 120
    assert os.stat(path).st_mode & 0o777 == 0o600
    # A restart: the packet sent again is a replay, from any source.
    again = rig_for(rig.daemon.config, tmp_path)
    again.send(request(b"\xaa" * 32))
    assert again.spa.stats()["spa_rejected_replay"] == 1
    assert again.nft.scripts == []


def test_a_digest_is_kept_longer_when_the_window_grew_and_dropped_once_out_of_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / REPLAY_FILE
    save_replay(path, [(b"\x01", NOW + 10), (b"\x02", NOW - 10), (b"\x03", NOW - 500)], 120)
    assert load_replay(path, 120, NOW).entries == [(b"\x01", NOW + 10)]
    # Under a window 300 s longer, each packet stays valid 300 s longer.
    assert load_replay(path, 420, NOW).entries == [(b"\x01", NOW + 310), (b"\x02", NOW + 290)]
    assert load_replay(tmp_path / "absent.json", 120, NOW).entries == []


def test_a_full_cache_of_any_configured_size_is_read_back_not_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # State files are read up to a size (files.MAX_STATE_FILE, 64 MiB: here 4 KiB); a big
    # spa_replay_cache, full, writes more than that, and must not read back as damaged.
    monkeypatch.setattr(spa_replay, "MAX_STATE_FILE", 4096)
    path = tmp_path / REPLAY_FILE
    full = [(bytes([n]) * 32, NOW + 60 + n) for n in range(200)]
    save_replay(path, full, 120)
    assert path.stat().st_size > 4096
    loaded = load_replay(path, 120, NOW, capacity=200)
    assert loaded.refuse_until is None and loaded.entries == full
    # Beyond what the cache can write, it is damage: set aside, SPA shut for two windows.
    assert load_replay(path, 120, NOW, capacity=10).refuse_until == NOW + 240


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"window": 120, "digests": [["zz", 1]]}',
        b'{"window": 120, "digests": [["aa", "soon"]]}',
        b'{"digests": []}',
        b"\xff\xfe",
        b"[]",
    ],
)
def test_a_damaged_replay_file_refuses_every_request_for_two_windows(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / REPLAY_FILE).write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="knocknft"):
        rig = rig_for(spa_config(state), tmp_path)
    assert "cannot be trusted" in caplog.text and "for 240s" in caplog.text
    names = sorted(p.name for p in state.iterdir())
    assert names[0] == REPLAY_FILE and names[1].startswith(f"{REPLAY_FILE}.damaged-")
    assert len(names) == 2
    rig.send(request(b"\x01" * 32))
    rig.clock.now = NOW + 239
    rig.send(request(b"\x02" * 32))
    assert rig.spa.stats()["spa_rejected_replay"] == 2 and rig.nft.scripts == []
    # A restart within the two windows keeps the refusal: the new file holds it.
    again = rig_for(spa_config(state), tmp_path)
    again.clock.now = NOW + 239
    again.send(request(b"\x04" * 32))
    assert again.spa.stats()["spa_rejected_replay"] == 1 and again.nft.scripts == []
    rig.clock.now = NOW + 240  # every packet accepted before the start is out of its window
    rig.send(request(b"\x03" * 32))
    assert rig.spa.stats()["spa_accepted"] == 1 and len(rig.nft.scripts) == 1


def test_a_request_whose_digest_cannot_be_saved_opens_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    state = rig.daemon.config.options.state_dir
    (state / REPLAY_FILE).mkdir()  # the rename over it fails
    with caplog.at_level(logging.ERROR, logger="knocknft"):
        rig.send(request())
    assert rig.nft.scripts == [] and rig.runner.commands == []
    assert "SPA request refused: cannot write" in caplog.text
    assert rig.spa.stats()["spa_unsaved"] == 1 and rig.spa.stats()["spa_accepted"] == 0
    assert [e["event"] for e in rig.audit()] == ["spa_unsaved"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "169.254.0.9",
        "fe80::9",
        "240.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:255.255.255.255",
    ],
)
def test_an_address_never_granted_is_refused_like_a_knocks_and_counted_once(
    rig: Rig, address: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="knocknft"):
        rig.send(request(address=ipaddress.ip_address(address)))
    assert rig.nft.scripts == [] and rig.runner.commands == []
    stats = rig.spa.stats()
    assert stats["spa_accepted"] == 0 and stats["spa_rejected_not_allowed"] == 1
    assert rig.daemon.counters.odd_addresses_refused == 0  # not also counted as an opening's
    assert "SPA request of key ssh-spa refused: it names" in caplog.text


def test_the_host_s_own_address_is_never_granted(rig: Rig) -> None:
    own = ipaddress.ip_address("198.18.0.1")
    rig.daemon.source_check = lambda a: refusal(a, HostAddresses(own=frozenset({own})))
    rig.send(request(address=own))
    assert rig.nft.scripts == [] and rig.spa.stats()["spa_rejected_not_allowed"] == 1


def test_loopback_is_granted_only_to_a_packet_sent_over_loopback_naming_itself(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = spa_config(state)
    heard = dataclasses.replace(
        config, options=dataclasses.replace(config.options, interfaces=("lo",))
    )
    rig = rig_for(heard, tmp_path)
    loopback = ipaddress.ip_address("127.0.0.1")
    # A remote key holder naming loopback: the packet's word, not the kernel's.
    rig.send(request(b"\x01" * 32, address=loopback))
    assert rig.nft.scripts == [] and rig.spa.stats()["spa_rejected_not_allowed"] == 1
    # This host asking for itself, over loopback (the one-machine lab), as a knock may.
    rig.verifier.answers.append(request(b"\x02" * 32, address=loopback))
    rig.spa.handle([SpaDatagram(loopback, b"packet")])
    assert rig.spa.stats()["spa_accepted"] == 1
    assert "127.0.0.1 . tcp . 22" in rig.nft.scripts[-1]


def test_a_reload_replaces_the_verifiers_config_and_keeps_the_cache(rig: Rig) -> None:
    rig.send(request(b"\x07" * 32))
    verifier = rig.verifier
    shorter = dataclasses.replace(DOOR, open_for=10)
    config = dataclasses.replace(rig.daemon.config, doors=(rig.daemon.config.doors[0], shorter))
    rig.daemon.reload(config)
    rig.spa.reload(config)
    assert rig.verifier is verifier and verifier.config is config
    rig.send(request(b"\x07" * 32))
    assert rig.spa.stats()["spa_rejected_replay"] == 1


def test_the_reader_is_bound_by_the_first_config_with_an_spa_door(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    plain = with_state_dir(parse_config(GOOD).config, state)
    rig = rig_for(plain, tmp_path)
    assert rig.spa.fileno() is None and rig.spa.stats()["spa_accepted"] == 0
    config = spa_config(state)
    rig.daemon.reload(config)
    rig.spa.reload(config)
    assert rig.spa.fileno() == 99
    assert isinstance(rig.spa.reader, Reader) and rig.spa.reader.group == 8
    rig.spa.reader.queued.append([SpaDatagram(SENDER, b"x")])
    rig.verifier.answers.append(request())
    rig.spa.drain()
    assert rig.spa.stats()["spa_accepted"] == 1
    rig.spa.close()
    assert rig.spa.reader.closed


def test_requests_judged_together_are_saved_together_and_all_granted(rig: Rig) -> None:
    second = ipaddress.ip_address("198.18.0.5")
    rig.send(request(b"\x01" * 32), Rejection.BAD_AUTH, request(b"\x02" * 32, address=second))
    granted = "".join(rig.nft.scripts)
    assert "198.18.0.2 . tcp . 22 timeout 120s comment" in granted
    assert "198.18.0.5 . tcp . 22 timeout 120s comment" in granted
    path = rig.daemon.config.options.state_dir / REPLAY_FILE
    assert len(json.loads(path.read_text())["digests"]) == 2
    assert rig.spa.stats()["spa_accepted"] == 2


def test_a_full_replay_cache_is_said_once_and_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="knocknft"):
        rig.verifier.refused_cache_full = 1  # as SpaVerifier counts it, before it answers
        rig.send(Rejection.NOT_ALLOWED, Rejection.NOT_ALLOWED)
    assert caplog.text.count("share of the replay cache is full") == 1
    stats = rig.spa.stats()
    assert stats["spa_replay_cache_full"] == 1 and stats["spa_rejected_not_allowed"] == 2


def test_a_group_that_cannot_be_bound_on_reload_leaves_a_damaged_file_to_refuse_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / REPLAY_FILE).write_text("{damaged")
    busy = True

    def reader(group: int) -> SpaReader:
        if busy:
            raise NflogGroupBusy(f"NFLOG group {group} is already bound by another socket")
        return Reader(group)

    rig = rig_for(with_state_dir(parse_config(GOOD).config, state), tmp_path, reader)
    config = spa_config(state)
    rig.daemon.reload(config)
    with caplog.at_level(logging.ERROR, logger="knocknft"):
        rig.spa.reload(config)
    assert "SPA doors are not served until a restart" in caplog.text
    assert (state / REPLAY_FILE).read_text() == "{damaged"
    busy = False
    rig.spa.reload(config)
    rig.nft.scripts.clear()
    rig.send(request())
    assert rig.spa.stats()["spa_rejected_replay"] == 1 and rig.nft.scripts == []


def test_spa_packets_the_kernel_lost_are_warned_of_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="knocknft"):
        reported = report_lost("SPA", 8, 3, 0)
        reported = report_lost("SPA", 8, 3, reported)
    assert reported == 3
    assert caplog.text.count("NFLOG group 8: 3 SPA packet(s) lost") == 1


def test_under_minus_4_ipv6_opens_nothing_by_spa_either(rig: Rig) -> None:
    rig.daemon.only_ipv4 = True
    v6 = ipaddress.ip_address("2001:db8::2")
    rig.verifier.answers.append(request(b"\x01" * 32))
    rig.spa.handle([SpaDatagram(v6, b"packet")])
    assert rig.verifier.answers != [], "an IPv6 packet is refused before it is judged"
    rig.verifier.answers.clear()
    rig.send(request(b"\x02" * 32, address=v6))  # sent over IPv4, naming an IPv6 address
    assert rig.nft.scripts == [] and rig.runner.commands == []
    stats = rig.spa.stats()
    assert stats["spa_accepted"] == 0 and stats["spa_rejected_not_allowed"] == 2


@pytest.mark.parametrize("sender", ["169.254.0.9", "127.0.0.1", "::ffff:127.0.0.1", "224.0.0.9"])
def test_the_any_address_form_grants_no_odd_source_either(rig: Rig, sender: str) -> None:
    # fwknop -s (0.0.0.0) without require_source_address: the grant is the packet's source.
    source = ipaddress.ip_address(sender)
    rig.verifier.answers.append(request(address=source))
    rig.spa.handle([SpaDatagram(source, b"packet")])
    assert rig.nft.scripts == [] and rig.spa.stats()["spa_rejected_not_allowed"] == 1


def test_a_damaged_file_stays_in_place_when_its_refusal_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A missing file is trusted as a first start: the damaged one must not just vanish.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / REPLAY_FILE).write_bytes(b"[]")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spa_replay, "save_replay", full_disk)
    rig = rig_for(spa_config(state), tmp_path)
    assert sorted(p.name for p in state.iterdir()) == [REPLAY_FILE]
    assert (state / REPLAY_FILE).read_bytes() == b"[]"
    rig.send(request())
    assert rig.spa.stats()["spa_rejected_replay"] == 1


def test_a_daemon_without_spa_doors_does_not_load_cryptography() -> None:
    # cryptography costs the daemon a few MiB of memory (make bench's 1M-source row): every
    # command loads the CLI and the daemon's modules, and only SPA doors and keygen need it.
    code = (
        "import sys\n"
        "import knocknft.admin.cli, knocknft.daemon.run, knocknft.daemon.spa\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
