"""Public-key SPA for real: keys from `knocknft keygen`, packets from the bundled `knock` in the
client namespace, judged by `knocknft run` in the server namespace, over IPv4 and IPv6.

- the client's packet opens the door for the address it sends from, and a bystander (another
  address on the same client host) stays out;
- a captured packet sent again is refused as a replay, from the same source, from another and
  from a spoofed one, also after the daemon restarted;
- a stale timestamp, an unknown key, a key not listed in the door asked for, and a key revoked
  by a reload (SIGHUP) are each refused, and counted under their reason;
- the time a client asks for (knock -f) is its grant's, and a profile with a door knocks too.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from knocklab.fwknop import send_payload
from knocklab.lab import Host, Lab, Listener
from knocknft.spa.keys import load_private_key
from knocknft.spa.signed import NONCE_BYTES, sign_request
from tests.integration.support import BIN, RunningDaemon, write_config

SPA_PORT = 62201
OTHER = {4: "198.18.0.3", 6: "2001:db8::3"}  # a second address on the client: the bystander
SPOOFED = {4: "198.18.0.77", 6: "2001:db8::77"}  # an address nobody has, forged
SERVER = {4: Lab.SERVER_V4, 6: Lab.SERVER_V6}
CLIENT = {4: Lab.CLIENT_V4, 6: Lab.CLIENT_V6}
REASONS = ("malformed", "bad_auth", "stale", "replay", "not_allowed")


@dataclass(frozen=True)
class Keys:
    """Key pairs written by knocknft keygen: their private files, and public lines."""

    directory: Path

    def private(self, name: str) -> Path:
        return self.directory / name

    def public(self, name: str) -> str:
        return (self.directory / f"{name}.pub").read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob", "mallory"):
        # keygen sends nothing: it runs on the host, as a user would run it on theirs.
        result = subprocess.run(
            [str(BIN / "knocknft"), "keygen", "-o", str(directory / name), "--name", name],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"  {name}:" in result.stdout
    return Keys(directory)


def config_text(state: Path, keys: Keys, *, alice_revoked: bool = False) -> str:
    return f"""\
options:
  state_dir: {state}
  interfaces: [eth0]
doors:
  ssh-keys:
    clients:
      alice:
        public_key: "{keys.public("alice")}"
        revoked: {str(alice_revoked).lower()}
      bob:
        public_key: "{keys.public("bob")}"
    open: [22/tcp]
    open_for: 30s
  web:
    clients:
      bob:
        public_key: "{keys.public("bob")}"
    open: [80/tcp]
    open_for: 30s
"""


class Server:
    """knocknft run with the config above, and what it counted."""

    def __init__(self, lab: Lab, keys: Keys, tmp_path: Path) -> None:
        self.lab, self.keys, self.tmp_path = lab, keys, tmp_path
        self.config = write_config(tmp_path, config_text(tmp_path / "state", keys))
        self.logs: list[str] = []  # of the daemons stopped before this one
        self.daemon = self._start()

    def _start(self) -> RunningDaemon:
        return RunningDaemon(self.lab, self.config, self.tmp_path / "daemon.log", ("-D",))

    def restart(self) -> None:
        """A new daemon on the same state_dir, the replay file in it. Its log starts empty, so
        that waiting for it to be ready waits for this one."""
        self.daemon.stop()
        self.logs.append(self.daemon.log())
        self.daemon.log_path.write_text("")
        self.daemon = self._start()

    def stop(self) -> None:
        self.daemon.stop()

    def outcomes(self) -> dict[str, int]:
        """`accepted` and each of REASONS, from the daemon's own log since its first start."""
        text = "".join(self.logs) + self.daemon.log()
        counts = {"accepted": text.count("SPA request accepted")}
        for reason in REASONS:
            counts[reason] = text.count(f"SPA packet refused: {reason}")
        return counts


@pytest.fixture
def server(lab: Lab, keys: Keys, tmp_path: Path) -> Iterator[Server]:
    listeners = [Listener(lab.server, 22), Listener(lab.server, 80)]
    lab.client.add_address(OTHER[4])  # secondary: IPv4 never sends from it unasked
    # Deprecated at once: IPv6 would otherwise send from the newest address, the bystander's.
    ifname = lab.client.ifname
    lab.client.run(
        "ip", "addr", "add", f"{OTHER[6]}/64", "dev", ifname, "nodad", "preferred_lft", "0"
    )  # fmt: skip
    the_server = Server(lab, keys, tmp_path)
    try:
        yield the_server
    finally:
        the_server.stop()
        for listener in listeners:
            listener.close()


def knock(lab: Lab, *args: str) -> None:
    """The bundled knock, in the client namespace."""
    result = lab.client.run(str(BIN / "knock"), *args, check=False, timeout=20)
    assert result.returncode == 0, result.stderr


def judged(server: Server, send: object, *args: object) -> dict[str, int]:
    """Call send(*args), wait until the daemon judged one more packet; what that changed."""
    before = server.outcomes()
    send(*args)  # type: ignore[operator]
    deadline = time.monotonic() + 5
    while (after := server.outcomes()) == before:
        assert time.monotonic() < deadline, "the daemon did not judge the packet"
        time.sleep(0.02)
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


def reachable(lab: Lab, family: int, port: int = 22, source: str | None = None) -> bool:
    return lab.client.tcp_reachable(SERVER[family], port, timeout=0.3, source=source)


class Capture:
    """UDP datagrams to the SPA port, as they cross the server's link (before netfilter)."""

    def __init__(self, host: Host) -> None:
        self.sock = host.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
        self.sock.bind((host.ifname, 0x0003))
        self.sock.settimeout(0.2)

    def payload(self, timeout: float = 5) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                packet = self.sock.recv(65535)
            except TimeoutError:
                continue
            udp = _udp_payload(packet, SPA_PORT)
            if udp is not None:
                return udp
        raise AssertionError("no SPA packet crossed the link")

    def close(self) -> None:
        self.sock.close()


def _udp_payload(packet: bytes, port: int) -> bytes | None:
    if packet[:1] and packet[0] >> 4 == 4 and packet[9] == socket.IPPROTO_UDP:
        udp = packet[(packet[0] & 0x0F) * 4 :]
    elif packet[:1] and packet[0] >> 4 == 6 and packet[6] == socket.IPPROTO_UDP:
        udp = packet[40:]
    else:
        return None
    return udp[8:] if int.from_bytes(udp[2:4], "big") == port else None


FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])


@FAMILIES
def test_our_client_opens_the_door_for_its_own_address_only(
    lab: Lab, server: Server, keys: Keys, family: int
) -> None:
    assert not reachable(lab, family)
    changed = judged(
        server, knock, lab, f"-{family}", "--door", "ssh-keys",
        "--spa-key", str(keys.private("alice")), SERVER[family],
    )  # fmt: skip
    assert changed == {"accepted": 1}
    assert reachable(lab, family)
    assert not reachable(lab, family, source=OTHER[family]), "a bystander stays out"
    assert not reachable(lab, family, port=80), "only the door's own services open"
    # The log names who opened what: the client's name, never its key.
    server.daemon.wait_for(f"{CLIENT[family]}: ssh-keys: SPA request accepted (key alice, signed")


@FAMILIES
def test_a_captured_packet_is_refused_from_anywhere_also_after_a_restart(
    lab: Lab, server: Server, keys: Keys, family: int
) -> None:
    capture = Capture(lab.server)
    try:
        args = ("-s", "--door", "ssh-keys", "--spa-key", str(keys.private("alice")))
        assert judged(server, knock, lab, *args, SERVER[family]) == {"accepted": 1}
        captured = capture.payload()
    finally:
        capture.close()
    again = (lab.client, SERVER[family], captured)
    assert judged(server, send_payload, *again) == {"replay": 1}
    # -s named no address: the source would be granted, were it not a replay.
    assert judged(server, send_payload, *again, SPA_PORT, OTHER[family]) == {"replay": 1}
    spoofed = functools.partial(send_payload, source=SPOOFED[family], spoofed=True)
    assert judged(server, spoofed, *again) == {"replay": 1}
    assert not reachable(lab, family, source=OTHER[family])
    server.restart()
    assert judged(server, send_payload, *again, SPA_PORT, OTHER[family]) == {"replay": 1}
    assert not reachable(lab, family, source=OTHER[family])


def signed_packet(keys: Keys, name: str, door: str, family: int, now: float) -> bytes:
    """A request signed as knock signs it, but stamped `now` (the client has no option for a
    clock that is wrong)."""
    key = load_private_key(keys.private(name).read_bytes())
    address = ipaddress.ip_address(CLIENT[family])
    return sign_request(key, door, address, 0, now=now, nonce=os.urandom(NONCE_BYTES))


@pytest.mark.parametrize("offset", [-300, 300], ids=["behind", "ahead"])
def test_a_stale_timestamp_is_refused(lab: Lab, server: Server, keys: Keys, offset: int) -> None:
    stale = signed_packet(keys, "alice", "ssh-keys", 4, time.time() + offset)
    assert judged(server, send_payload, lab.client, SERVER[4], stale) == {"stale": 1}
    assert not reachable(lab, 4)


@FAMILIES
def test_a_key_the_server_does_not_list_is_refused(
    lab: Lab, server: Server, keys: Keys, family: int
) -> None:
    args = ("--door", "ssh-keys", "--spa-key", str(keys.private("mallory")), SERVER[family])
    assert judged(server, knock, lab, f"-{family}", *args) == {"bad_auth": 1}
    assert not reachable(lab, family)


def test_a_door_that_does_not_list_the_key_is_refused(lab: Lab, server: Server, keys: Keys) -> None:
    alice = ("--spa-key", str(keys.private("alice")), SERVER[4])
    assert judged(server, knock, lab, "--door", "web", *alice) == {"not_allowed": 1}
    assert not reachable(lab, 4, port=80)
    bob = ("--spa-key", str(keys.private("bob")), SERVER[4])
    assert judged(server, knock, lab, "--door", "web", *bob) == {"accepted": 1}
    assert reachable(lab, 4, port=80)


def test_a_key_revoked_by_a_reload_is_refused(lab: Lab, server: Server, keys: Keys) -> None:
    alice = ("--door", "ssh-keys", "--spa-key", str(keys.private("alice")), SERVER[4])
    server.config.write_text(config_text(server.tmp_path / "state", keys, alice_revoked=True))
    server.daemon.send(signal.SIGHUP)
    server.daemon.wait_for("reloaded")
    assert judged(server, knock, lab, *alice) == {"not_allowed": 1}
    assert not reachable(lab, 4)
    bob = ("--door", "ssh-keys", "--spa-key", str(keys.private("bob")), SERVER[4])
    assert judged(server, knock, lab, *bob) == {"accepted": 1}, "the others' keys still open"


def test_the_time_asked_for_is_the_grants(lab: Lab, server: Server, keys: Keys) -> None:
    # The door opens for 30 s and has no max_open_for: a client may ask for less, not more.
    alice = ("--door", "ssh-keys", "--spa-key", str(keys.private("alice")), SERVER[4])
    assert judged(server, knock, lab, "-f", "2s", *alice) == {"accepted": 1}
    server.daemon.wait_for(f"{CLIENT[4]}: ssh-keys: granted 22/tcp for 2s")
    assert reachable(lab, 4)
    time.sleep(2.5)
    assert not reachable(lab, 4), "the kernel ended the grant when asked"


def test_a_profile_with_a_door_knocks_over_ipv6(
    lab: Lab, server: Server, keys: Keys, tmp_path: Path
) -> None:
    profiles = tmp_path / "client.yaml"
    profiles.write_text(
        "profiles:\n"
        "  lab6:\n"
        f"    host: {SERVER[6]}\n"
        "    door: ssh-keys\n"
        f"    key: {keys.private('bob')}\n"
    )
    assert judged(server, knock, lab, "--profiles", str(profiles), "lab6") == {"accepted": 1}
    assert reachable(lab, 6)
    assert not reachable(lab, 6, source=OTHER[6])
