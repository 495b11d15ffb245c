"""knockd.conf on every command, against the real kernel: check says OK or where knockd's
grammar breaks, and apply, status, open, close and doctor work on the table it describes."""

from __future__ import annotations

from pathlib import Path

from knocklab.lab import Lab
from tests.integration.support import Server

# The university's knockd.conf (shared/reference/004), heard on the lab's interface.
KNOCKD_CONF = """\
[options]
  usesyslog
  interface = eth0

[opencloseSSH]
  sequence      = 1228,1227
  seq_timeout   = 15
  tcpflags      = syn
  command       = /bin/true %IP%
"""


def test_check_status_open_close_with_a_knockd_conf(lab: Lab, tmp_path: Path) -> None:
    conf = tmp_path / "knockd.conf"
    conf.write_text(KNOCKD_CONF)
    server = Server(lab, conf, tmp_path / "state")
    checked = server.knocknft("check")
    assert f"{conf}: OK: 1 door(s), knock ports 1227/tcp, 1228/tcp" in checked.stdout

    broken = tmp_path / "broken.conf"
    broken.write_text(KNOCKD_CONF.replace("tcpflags      = syn", "tcpflags      = syn,fyn"))
    result = server.knocknft("check", "-c", str(broken), check=False)
    assert result.returncode == 2, result.stderr
    assert f"error: {broken}:8: [opencloseSSH] tcpflags:" in result.stderr
    assert "Traceback" not in result.stderr

    server.knocknft("apply")
    assert "log group 7" in server.nft("list", "chain", "inet", "knocknft", "input").stdout
    report = server.status_report()
    assert report["table"] == "knocknft" and report["grants"] == []
    refused = server.knocknft("open", Lab.CLIENT_V4, "--door", "opencloseSSH", check=False)
    assert refused.returncode == 2
    assert "door 'opencloseSSH' has no open: services; it only runs commands" in refused.stderr
    closed = server.knocknft("close", Lab.CLIENT_V4)
    assert f"nothing open for {Lab.CLIENT_V4}" in closed.stdout
    assert server.doctor()["ok"] is True
