"""A config with every number at the largest value `check` accepts is accepted by the real kernel,
and the daemon carries a knock through it to a grant: the parse-time limits are the kernel's."""

from __future__ import annotations

from pathlib import Path

from knocklab.lab import Lab, Listener
from tests.integration.support import RIGHT, Server, running, write_config

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4

AT_THE_LIMITS = """\
options:
  state_dir: {state}
  nflog_group: 65535
  max_attempts: 1048576
  # The slowest refill the kernel can keep a bucket for (49 x 86400 s <= 4294967 s).
  knock_rate_limit: 1/day
  knock_rate_burst: 49
doors:
  ssh:
    sequence: [7000/tcp, 9000/udp, 8000/tcp]
    seq_timeout: 1d
    open: [22/tcp, 65535/udp]
    open_for: 7d
    stop_command: "true"
    cmd_timeout: 7d
  fast:
    sequence: [7001/tcp, 9001/udp, 8001/tcp]
    open: [22/tcp]
    open_for: 7d
  {long_names}
"""


def test_every_number_at_its_limit_applies_and_grants(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    # Many doors on one knock rule: its comment is cut to nft's 128 characters.
    long_names = "\n  ".join(
        f"{'d' * 28}{i:04d}:\n    sequence: [{7100 + i}, {8100 + i}/udp, 9100]\n"
        '    start_command: "true"'
        for i in range(6)
    )
    text = AT_THE_LIMITS.format(state=tmp_path / "state", long_names=long_names)
    cfg = write_config(tmp_path, text)
    srv = Server(lab, cfg, tmp_path / "state")
    assert srv.knocknft("check").returncode == 0
    srv.knocknft("apply")
    assert not lab.client.tcp_reachable(SERVER, 22, source=A)
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: OPEN SESAME")
        assert lab.client.tcp_reachable(SERVER, 22, source=A)
        grants = srv.status()
        assert {g["timeout"] for g in grants} == {7 * 86400}
        assert "Traceback" not in daemon.log()
