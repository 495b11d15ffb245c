"""The foundation against the real kernel: apply, manual grants, expiry, re-apply, status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener
from knocknft.admin.health import EXIT_GATE_DOWN
from tests.integration.support import EXAMPLE_CONFIG, Server, write_config

V4, V6 = Lab.SERVER_V4, Lab.SERVER_V6


def test_port_closed_then_opened_by_grant_then_closed_on_expiry(
    server: Server, ssh_listener: Listener
) -> None:
    client = server.lab.client
    assert not client.tcp_reachable(V4, 22), "the protected port must be closed after apply"
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "2s")
    assert client.tcp_reachable(V4, 22), "the grant must open the port"
    time.sleep(2.5)
    assert not client.tcp_reachable(V4, 22), "the kernel must expire the grant"
    assert server.status() == []


def test_ipv6_grant(server: Server, ssh_listener: Listener) -> None:
    client = server.lab.client
    assert not client.tcp_reachable(V6, 22)
    server.knocknft("open", Lab.CLIENT_V6, "--door", "ssh", "--for", "2s")
    assert client.tcp_reachable(V6, 22)
    assert not client.tcp_reachable(V4, 22), "an IPv6 grant opens nothing for IPv4"
    time.sleep(2.5)
    assert not client.tcp_reachable(V6, 22)


def test_grant_is_for_that_client_only(server: Server, ssh_listener: Listener) -> None:
    client = server.lab.client
    other = str(client.add_address("198.18.0.3"))
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "30s")
    assert client.tcp_reachable(V4, 22, source=Lab.CLIENT_V4)
    assert not client.tcp_reachable(V4, 22, source=other)


def test_status_json_shows_grant_with_sane_remaining_time(server: Server) -> None:
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "1m")
    server.knocknft("open", Lab.CLIENT_V6, "--door", "ssh")
    grants = {g["address"]: g for g in server.status()}
    assert set(grants) == {Lab.CLIENT_V4, Lab.CLIENT_V6}
    v4 = grants[Lab.CLIENT_V4]
    assert (v4["door"], v4["service"], v4["port"], v4["protocol"]) == ("ssh", "22/tcp", 22, "tcp")
    assert v4["timeout"] == 60 and 55 <= v4["expires_in"] <= 60
    assert grants[Lab.CLIENT_V6]["timeout"] == 30  # the door's open_for
    human = server.knocknft("status", check=False).stdout
    assert "198.18.0.2" in human and "ssh" in human and "22/tcp" in human


def test_reapply_keeps_grants_and_their_remaining_time(
    server: Server, ssh_listener: Listener, tmp_path: Path
) -> None:
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "1m")
    server.knocknft("open", Lab.CLIENT_V6, "--door", "ssh", "--for", "1m")
    time.sleep(2)
    server.knocknft("apply")  # same config
    changed = EXAMPLE_CONFIG.read_text().replace(
        "[7000/tcp, 9000/udp, 8000/tcp]", "[6000/udp, 7100, 6100]"
    )
    server.knocknft("apply", "-c", str(write_config(tmp_path, changed)))  # a changed config
    grants = server.status()
    assert len(grants) == 2
    for g in grants:
        assert g["timeout"] == 60 and 50 <= g["expires_in"] <= 58, g
    assert server.lab.client.tcp_reachable(V4, 22)
    assert server.lab.client.tcp_reachable(V6, 22)
    rules = server.nft("list", "chain", "inet", "knocknft", "input").stdout
    assert "udp . 6000" in rules and "udp . 9000" not in rules, "the rules follow the new config"


def test_refresh_replaces_the_timeout(server: Server) -> None:
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "10s")
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "1h")
    (grant,) = server.status()
    assert grant["timeout"] == 3600 and grant["expires_in"] > 3500


def test_close_revokes_now(server: Server, ssh_listener: Listener) -> None:
    server.knocknft("open", Lab.CLIENT_V4, "--door", "ssh", "--for", "1h")
    assert server.lab.client.tcp_reachable(V4, 22)
    out = server.knocknft("close", Lab.CLIENT_V4).stdout
    assert "closed 22/tcp for 198.18.0.2" in out
    assert not server.lab.client.tcp_reachable(V4, 22)
    again = server.knocknft("close", Lab.CLIENT_V4)
    assert again.returncode == 0 and "nothing open" in again.stdout


def test_every_element_carries_a_timeout_even_from_a_buggy_json_writer(server: Server) -> None:
    """libnftables 1.0.6 JSON makes an element permanent when timeout is a string or float.
    Our writers never send one (unit-tested in test_grants); the set's default timeout is the
    kernel-side guard behind that, so even a foreign writer's element expires."""
    for bad_timeout in ('"30s"', "30.5"):
        request = (
            '{"nftables":[{"add":{"element":{"family":"inet","table":"knocknft","name":"allow4",'
            '"elem":[{"elem":{"val":{"concat":["198.18.0.9","tcp",22]},"timeout":'
            + bad_timeout
            + "}}]}}}]}"
        )
        server.lab.server.run("nft", "-j", "-f", "-", input=request)
        listing = json.loads(server.nft("-j", "list", "set", "inet", "knocknft", "allow4").stdout)
        elems = next(i["set"] for i in listing["nftables"] if "set" in i)["elem"]
        (elem,) = [e["elem"] for e in elems]
        assert 0 < elem["expires"] <= 30, f"timeout {bad_timeout} made a permanent element: {elem}"
        server.knocknft("close", "198.18.0.9")


def test_dry_run_loads_nothing(lab: Lab) -> None:
    srv = Server(lab, EXAMPLE_CONFIG)
    out = srv.knocknft("apply", "--dry-run").stdout
    assert "add table inet knocknft" in out and "log group 7" in out
    assert "knocknft" not in srv.nft("list", "tables").stdout


def test_bad_config_changes_nothing(server: Server, tmp_path: Path) -> None:
    before = server.nft("list", "ruleset").stdout
    bad = write_config(tmp_path, EXAMPLE_CONFIG.read_text().replace("8000/tcp]", "70000/tcp]"))
    result = server.knocknft("apply", "-c", str(bad), check=False)
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "70000" in result.stderr
    assert server.nft("list", "ruleset").stdout == before


def test_other_tables_are_never_touched(lab: Lab, tmp_path: Path) -> None:
    admin = (
        "table inet filter {\n\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\ttcp dport 2222 drop\n\t}\n}\n"
    )
    lab.server.run("nft", "-f", "-", input=admin)
    srv = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    srv.knocknft("apply")
    srv.knocknft("apply")
    srv.knocknft("open", Lab.CLIENT_V4, "--door", "ssh")
    assert srv.nft("list", "table", "inet", "filter").stdout == admin


def test_always_allow_reaches_the_service_without_knocking(lab: Lab, tmp_path: Path) -> None:
    listener = Listener(lab.server, 22)
    try:
        text = EXAMPLE_CONFIG.read_text().replace(
            "  # always_allow: [198.51.100.0/24]", "  always_allow: [198.18.0.2]"
        )
        srv = Server(lab, write_config(tmp_path, text), tmp_path / "state")
        srv.knocknft("apply")
        other = str(lab.client.add_address("198.18.0.3"))
        assert lab.client.tcp_reachable(V4, 22, source=Lab.CLIENT_V4)
        assert not lab.client.tcp_reachable(V4, 22, source=other)
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("open", "not-an-ip", "--door", "ssh"), 2, "'not-an-ip' is not an IP address"),
        (("open", "198.18.0.2", "--door", "nope"), 2, "no door named 'nope'"),
        (
            ("open", "198.18.0.2", "--door", "ssh", "--for", "5x"),
            2,
            "--for: '5x' is not a duration",
        ),
        (("close", "198.18.0.300"), 2, "is not an IP address"),
    ],
)
def test_bad_arguments_are_clear_errors(
    server: Server, args: tuple[str, ...], code: int, message: str
) -> None:
    result = server.knocknft(*args, check=False)
    assert result.returncode == code
    assert message in result.stderr


def test_open_before_apply_says_to_apply(lab: Lab) -> None:
    result = Server(lab, EXAMPLE_CONFIG).knocknft(
        "open", Lab.CLIENT_V4, "--door", "ssh", check=False
    )
    assert result.returncode == 1
    assert "run `knocknft apply` first" in result.stderr
    status = Server(lab, EXAMPLE_CONFIG).knocknft("status", check=False)
    assert status.returncode == EXIT_GATE_DOWN and "`knocknft apply`" in status.stdout
