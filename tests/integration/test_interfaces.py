"""A mistyped interface never leaves a protected service open: apply, run (its config, -i and a
knockd.conf's Interface) and check refuse an interface the kernel does not have, naming those it
has; one named on purpose in late_interfaces is accepted, and the service stays shut on every
interface, since `interfaces` only limits where knocks are heard."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import EXAMPLE_CONFIG, RIGHT, Server, running, write_config

V4 = Lab.SERVER_V4
A = Lab.CLIENT_V4

KNOCKD_CONF = """\
[options]
  Interface = {interface}
[openSSH]
  Sequence = 7000,9000:udp,8000
  Command = /bin/true %IP%
"""


def _typo(text: str) -> str:
    return text.replace("interfaces: [eth0]", "interfaces: [eht0]")


REFUSED = {
    "apply": (("apply",), "yaml"),
    "check": (("check",), "yaml"),
    "run": (("run",), "yaml"),
    "run -i": (("run", "-i", "eht0"), "good"),
    "run with a knockd.conf": (("run",), "knockd"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_mistyped_interface_is_refused_and_the_service_stays_shut(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, case: str
) -> None:
    args, config = REFUSED[case]
    srv = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    srv.knocknft("apply")  # the table as it was: the refused command must leave it in force
    texts = {
        "yaml": _typo(EXAMPLE_CONFIG.read_text()),
        "good": EXAMPLE_CONFIG.read_text(),
        "knockd": KNOCKD_CONF.format(interface="eht0"),
    }
    path = write_config(tmp_path, texts[config])
    result = srv.knocknft(*args, "-c", str(path), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'eht0' does not exist on this host (it has: eth0, lo)" in result.stderr
    assert "late_interfaces" in result.stderr
    assert not lab.client.tcp_reachable(V4, 22), "the protected port stays shut"


def test_check_for_another_host_only_warns(lab: Lab, tmp_path: Path) -> None:
    srv = Server(lab, write_config(tmp_path, _typo(EXAMPLE_CONFIG.read_text())))
    result = srv.knocknft("check", "--other-host")
    assert "warning:" in result.stderr and "'eht0' does not exist" in result.stderr


def test_a_late_interface_named_on_purpose_is_accepted_and_guards_every_interface(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    text = EXAMPLE_CONFIG.read_text().replace(
        "interfaces: [eth0]", "interfaces: [wg0]\n  late_interfaces: [wg0]"
    )
    text = text.replace("options:\n", f"options:\n  state_dir: {tmp_path / 'state'}\n", 1)
    cfg = write_config(tmp_path, text)
    srv = Server(lab, cfg, tmp_path / "state")
    srv.knocknft("check")
    srv.knocknft("apply")
    assert not lab.client.tcp_reachable(V4, 22), "shut on eth0 too, though knocks count on wg0"
    with running(lab, cfg, tmp_path / "daemon.log", ("-i", "wg0")) as daemon:
        lab.client.knock(V4, *RIGHT, source=A)
        time.sleep(0.5)
        assert not lab.client.tcp_reachable(V4, 22), "a knock on eth0 is not heard"
        assert "OPEN SESAME" not in daemon.log()
    srv.knocknft("open", A, "--door", "ssh", "--for", "5s")
    assert lab.client.tcp_reachable(V4, 22), "a grant lets its holder in on any interface"
