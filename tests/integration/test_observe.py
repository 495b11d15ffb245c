"""What the running daemon tells about itself: `status --stats` from its stats.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from knocknft.lab import Lab, Listener
from tests.integration.conftest import BIN, write_config
from tests.integration.daemon_fixture import RunningDaemon, running
from tests.integration.test_daemon import RIGHT, config_text

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4


def status_stats(daemon: RunningDaemon) -> tuple[int, dict[str, Any]]:
    result = daemon.lab.server.run(
        str(BIN / "knocknft"), "status", "--stats", "--json", "-c", str(daemon.config), check=False
    )
    return result.returncode, json.loads(result.stdout)


def test_status_stats_knows_the_running_daemon_and_when_it_is_gone(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        code, status = status_stats(daemon)
        assert (code, status["state"]) == (0, "running"), status
        assert status["stats"]["pid"] == daemon.proc.pid
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
    code, status = status_stats(daemon)
    assert (code, status["state"], status["running"]) == (1, "stopped", False)
    stats = status["stats"]
    assert (stats["knocks"], stats["stages"], stats["opens"]) == (3, 3, 1), "its last values"
