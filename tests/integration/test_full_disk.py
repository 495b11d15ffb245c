"""A real full disk under the pending stop records: a small tmpfs mounted in a mount namespace of
this test's own (`unshare -m`), so the host's disks are never filled. A stop that ran is never
run again after a restart, even when nothing new could be written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.support import on_small_disk

SCRIPT = """\
import ipaddress, json, logging, os, sys
from pathlib import Path
from tests.integration.support import fill
from knocknft.daemon.stops import STATE_FILE, PendingStops

logging.basicConfig(level=logging.ERROR, format="%(message)s")
disk = Path(sys.argv[1])
state = disk / "state"
NOW = 1_700_000_000.0
stops = PendingStops(state / STATE_FILE)
stops.load(NOW)
for n in range(3):
    assert stops.schedule("ssh", ipaddress.ip_address(f"198.18.0.{10 + n}"), NOW + 10, "stop")
full = fill(disk)  # the disk, full
# The journal's last page may still hold a few lines; past it, nothing can be written.
saved = [
    stops.schedule("ssh", ipaddress.ip_address(f"198.18.1.{n}"), NOW + 10, "stop")
    for n in range(200)
]
ran = [s.address for s in stops.take_due(NOW + 10)]
again = PendingStops(state / STATE_FILE)
again.load(NOW + 20)
print(json.dumps({"full": full, "saved": saved, "ran": ran, "after_restart": len(again)}))
"""


def test_on_a_full_disk_a_stop_runs_once_and_never_again_after_a_restart(tmp_path: Path) -> None:
    result, disk = on_small_disk(tmp_path, SCRIPT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["full"] == 28, "ENOSPC: the disk really was full"
    assert outcome["saved"][-1] is False, "the disk refused the last records"
    assert result.stderr.count("cannot write") == 1, "said once, not per record"
    # The ones that could not be saved run too, from memory: the close must happen.
    assert len(outcome["ran"]) == 203 and len(set(outcome["ran"])) == 203
    assert outcome["after_restart"] == 0, "marked done in place: nothing runs a second time"
    assert list(disk.iterdir()) == [], "the tmpfs was never mounted here"
