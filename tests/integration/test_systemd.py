"""What the systemd units rely on, against the real kernel in namespaces, with no systemd running:
the daemon speaks sd_notify to a socket the test binds as systemd would; the guard brings the
closed table back after `nft flush ruleset`, and keeps the services shut when the daemon cannot
start (knockd issue #51); and one capability, CAP_NET_ADMIN, is all the daemon and guard need.
"""

from __future__ import annotations

import array
import signal
import socket
import struct
from pathlib import Path

from knocklab.lab import Lab, Listener
from knocknft.nft.lastgood import LAST_GOOD_FILE
from tests.integration.support import (
    BIN,
    EXAMPLE_CONFIG,
    RIGHT,
    Server,
    config_text,
    running,
    write_config,
)

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4
CAP_NET_ADMIN = 12


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: a datagram socket at a path (an abstract
    name would live in the test's network namespace, not the daemon's), with the sender's
    credentials, as systemd reads them to accept only the main process (NotifyAccess=main).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.settimeout(15)
        self.senders: set[int] = set()
        self.seen: list[dict[str, str]] = []

    def receive(self) -> dict[str, str]:
        creds = array.array("i", [0, 0, 0])
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds.itemsize * 3))
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                pid, _uid, _gid = struct.unpack("3i", payload[:12])
                self.senders.add(pid)
        lines = data.decode().split("\n")
        assert all("=" in line for line in lines), lines
        message = dict(line.split("=", 1) for line in lines)
        self.seen.append(message)
        return message

    def next_with(self, key: str) -> dict[str, str]:
        """The next message that sets `key` (periodic STATUS lines may come in between)."""
        while True:
            message = self.receive()
            if key in message:
                return message

    def close(self) -> None:
        self.sock.close()


def test_the_daemon_tells_systemd_ready_reloading_status_and_stopping(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    manager = Manager(tmp_path / "notify")
    seen_env = tmp_path / "command-env"
    state = tmp_path / "state"
    command = f'    start_command: echo "${{NOTIFY_SOCKET:-unset}}" > {seen_env}\n'
    cfg = write_config(tmp_path, config_text(state, command, open_for="1m"))
    try:
        with running(
            lab, cfg, tmp_path / "daemon.log", env={"NOTIFY_SOCKET": str(manager.path)}
        ) as daemon:
            assert manager.receive()["STATUS"] == "starting: loading table inet knocknft"
            ready = manager.next_with("READY")
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith("listening on NFLOG group 7, 1 door(s), 0 grant")

            lab.client.knock(SERVER, *RIGHT, source=A)
            daemon.wait_for("ssh: command exited 0")
            assert seen_env.read_text() == "unset\n", "commands do not inherit the socket"

            # A reload that changes the config: RELOADING=1 with its time stamp, then READY=1
            # with a fresh status, and the new table is what the guard would load.
            cfg.write_text(config_text(state, open_for="2m"))
            daemon.send(signal.SIGHUP)
            reloading = manager.next_with("RELOADING")
            assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
            status = manager.next_with("READY")["STATUS"]
            assert "1 grant(s) open; since start: 3 knock(s), 1 door(s) opened" in status
            assert "timeout 120s" in (state / LAST_GOOD_FILE).read_text()

            # A failed reload is a reload too (READY=1 again), and the status keeps saying so.
            cfg.write_text("doors: [\n")
            daemon.send(signal.SIGHUP)
            manager.next_with("RELOADING")
            failed = manager.next_with("READY")["STATUS"]
            assert failed.startswith("last reload failed, running the previous config")

            assert daemon.stop() == 0
            assert manager.next_with("STOPPING")["STOPPING"] == "1"
            assert manager.senders == {daemon.proc.pid}, "only the main process speaks"
    finally:
        manager.close()


def test_guard_brings_the_closed_table_back_after_a_flush(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    server = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    server.knocknft("apply")
    server.knocknft("open", A, "--door", "ssh", "--for", "5m")
    assert lab.client.tcp_reachable(SERVER, 22)

    # The table is up: the guard reloads it and the grant survives.
    out = server.knocknft("guard").stdout
    assert "table inet knocknft reloaded, 1 open grant(s) kept" in out
    assert lab.client.tcp_reachable(SERVER, 22)

    # The whole ruleset flushed (nftables.service does this): the service is open to anyone.
    server.nft("flush", "ruleset")
    assert lab.client.tcp_reachable(SERVER, 22, source=str(lab.client.add_address("198.18.0.9")))
    assert "table inet knocknft installed" in server.knocknft("guard").stdout
    assert not lab.client.tcp_reachable(SERVER, 22), "closed again; the grant went with the flush"
    assert server.status() == []


def test_the_services_stay_shut_when_the_daemon_cannot_start(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    """knockd issue #51, the other way round: a boot where the daemon fails to start."""
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state))
    with running(lab, cfg, tmp_path / "daemon.log"):
        pass  # the daemon's start kept its table
    # A reboot: an empty ruleset. The guard runs before the network and the daemon.
    lab.server.run("nft", "flush", "ruleset")
    server = Server(lab, cfg, state)
    server.knocknft("guard")
    cfg.write_text(cfg.read_text().replace("open_for: 3s", "open_for: 3 seconds"))
    failed = lab.server.run(str(BIN / "knocknft"), "run", "-c", str(cfg), check=False)
    assert failed.returncode == 2, failed.stderr  # RestartPreventExitStatus=2: no restart loop
    assert not lab.client.tcp_reachable(SERVER, 22)
    lab.client.knock(SERVER, *RIGHT)
    assert not lab.client.tcp_reachable(SERVER, 22), "no daemon: knocking cannot open it"


def cap_eff(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapEff for {pid}")


# As the units' CapabilityBoundingSet=CAP_NET_ADMIN and NoNewPrivileges=yes make it.
ONLY_NET_ADMIN = ("setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--no-new-privs")


def test_cap_net_admin_is_all_the_daemon_and_the_guard_need(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path, config_text(state, open_for="1m"))
    with running(lab, cfg, tmp_path / "daemon.log", prefix=ONLY_NET_ADMIN) as daemon:
        # `ip netns exec` and setpriv exec, so this pid is the daemon's.
        assert cap_eff(daemon.proc.pid) == 1 << CAP_NET_ADMIN
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: granted 22/tcp")
        assert lab.client.tcp_reachable(SERVER, 22, source=A)
        assert (state / LAST_GOOD_FILE).exists() and (state / "stats.json").exists()
        assert daemon.stop() == 0, daemon.log()
    lab.server.run("nft", "flush", "ruleset")
    guard = lab.server.run(
        *ONLY_NET_ADMIN, str(BIN / "knocknft"), "guard", "--state-dir", str(state), check=False
    )
    assert guard.returncode == 0, guard.stderr
    assert not lab.client.tcp_reachable(SERVER, 22, source=A)
