"""SPA's replay file on a real full disk: a small tmpfs mounted in a mount namespace of this
test's own (`unshare -m`), as test_full_disk.py does, so the host's disks are never filled. A
request whose digest cannot be written opens nothing; the file already there stays whole, so
after a restart a packet accepted before the disk filled is still refused as a replay."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.support import on_small_disk

SCRIPT = """\
import json, logging, os, sys
from pathlib import Path
from tests.integration.support import fill
from knocknft.daemon.executor import Daemon
from knocknft.daemon.spa import SpaService
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.spa_nflog import SpaDatagram
from knocknft.spa.request import Rejection
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.spa_support import CLIENT, encrypt, plaintext, spa_config
from tests.unit.support import with_state_dir

logging.basicConfig(level=logging.ERROR, format="%(message)s")
disk = Path(sys.argv[1])
NOW = 1_800_000_000.0


class Reader:
    counters = NflogCounters()
    def fileno(self): return 99
    def read_batch(self): return []
    def close(self): pass


def service():
    config = with_state_dir(spa_config(), disk / "state")
    nft, runner = loaded_nft(config), RecordingRunner()
    daemon = Daemon(config, nft, runner, PendingStops(None), clock=lambda: NOW)
    spa = SpaService(daemon, lambda group: Reader())
    spa.start()
    return spa


def send(spa, packet):
    spa.handle([SpaDatagram(CLIENT, packet)])


first, second = (encrypt(plaintext(stamp=int(NOW))) for _ in range(2))
spa = service()
send(spa, first)
full = fill(disk)  # the disk, full
send(spa, second)
before = {"accepted": spa.accepted, "unsaved": spa.unsaved}
again = service()  # a restart, the disk still full
send(again, first)
print(json.dumps({
    "full": full,
    "before": before,
    "after": {"accepted": again.accepted, "replay": again.rejected[Rejection.REPLAY]},
    "state": sorted(p.name for p in (disk / "state").iterdir()),
}))
"""


def test_on_a_full_disk_spa_opens_nothing_unsaved_and_a_restart_still_refuses_the_replay(
    tmp_path: Path,
) -> None:
    result, disk = on_small_disk(tmp_path, SCRIPT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["full"] == 28, "ENOSPC: the disk really was full"
    assert outcome["before"] == {"accepted": 1, "unsaved": 1}, "no grant the file does not hold"
    assert "SPA request refused: cannot write" in result.stderr
    assert outcome["after"] == {"accepted": 0, "replay": 1}, "the file was whole: still a replay"
    # Nothing half-written left behind, nothing set aside as damaged.
    assert outcome["state"] == ["spa-replay.json"]
    assert list(disk.iterdir()) == [], "the tmpfs was never mounted here"
