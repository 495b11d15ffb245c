"""Single packet authorization with Debian's real fwknop client, in namespaces: every check runs
against each server that speaks it, Debian's fwknopd (the reference: the same test passing on
both says knocknft judges packets as fwknopd does) and knocknft.

- the client's packet opens the port for the address inside it only, and it closes after the
  stanza's timeout;
- a captured packet sent again is refused as a replay, from the same source, from another and
  from a spoofed one, also after the server restarted;
- a stale timestamp (the client's --time-offset-minus/plus), a wrong HMAC key, and a port
  outside OPEN_PORTS (alone or beside an allowed one) are refused;
- REQUIRE_SOURCE_ADDRESS refuses the client's -s form and takes its -a form;
and each refusal is counted under its reason.

Skipped, saying why, when the fwknop packages are not installed; `make deps` installs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from knocklab.daemons import LabDaemon
from knocklab.fwknop import (
    FWKNOP,
    FwknopKeys,
    build_spa,
    fwknop_argv,
    send_payload,
    send_spa,
    time_offset,
)
from knocklab.fwknopd import FWKNOPD, Stanza, fwknopd_counts, start_fwknopd
from knocklab.lab import Lab, Listener
from knocknft import __version__
from tests.integration.support import RunningDaemon, wait_reachable, write_config

pytestmark = pytest.mark.skipif(
    not (FWKNOP.exists() and FWKNOPD.exists()),
    reason="fwknop's client or server is missing: install fwknop-client and fwknop-server "
    "(make deps does)",
)

SERVER = Lab.SERVER_V4
CLIENT = Lab.CLIENT_V4
OTHER = "198.18.0.3"  # a second address on the client, that never asked for anything
SPOOFED = "198.18.0.77"  # an address nobody has, forged by a raw socket
# The HMAC digests Debian's client offers (--hmac-digest-type), and its inner ones (-m).
HMAC_DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512")
KEYS = FwknopKeys.random()
# The reasons a refusal is counted under (knocknft's Rejection values).
REASONS = ("bad_auth", "stale", "replay", "not_allowed")


class SpaServer(Protocol):
    """A server of fwknop SPA in the lab's server namespace, serving one stanza."""

    name: str

    def restart(self) -> None: ...

    def stop(self) -> None: ...

    def outcomes(self) -> dict[str, int]:
        """`accepted`, and the refusals under each of REASONS, since the first start, as it
        logged them: every packet it has judged is there once, under one of them."""
        ...

    def counted(self) -> dict[str, int]:
        """The same, from its counters, once it has stopped (since its last start)."""
        ...


class Fwknopd:
    """Debian's fwknopd, on an iptables ruleset that drops 22/tcp (fwknopd only ever accepts:
    its chain goes first)."""

    name = "fwknopd"

    def __init__(self, lab: Lab, workdir: Path, stanza: Stanza) -> None:
        self.lab, self.workdir, self.stanza = lab, workdir, stanza
        lab.server.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP")
        self.logs: list[str] = []
        self.daemon: LabDaemon = start_fwknopd(lab.server, workdir, [stanza])

    def restart(self) -> None:
        # The digest cache stays in workdir: fwknopd reads it back at start.
        self.stop()
        self.logs.append(self.daemon.log())
        self.daemon.log_path.write_text("")
        self.daemon = start_fwknopd(self.lab.server, self.workdir, [self.stanza])

    def stop(self) -> None:
        self.daemon.stop()

    def _counts(self) -> dict[str, int]:
        return fwknopd_counts("".join(self.logs) + self.daemon.log())

    def counted(self) -> dict[str, int]:
        return self.outcomes()  # fwknopd's only account of what it judged is its log

    def outcomes(self) -> dict[str, int]:
        counts = self._counts()
        return {
            "accepted": counts["accepted"],
            "bad_auth": counts["bad_auth"],
            "stale": counts["stale"],
            "replay": counts["replay"],
            "not_allowed": counts["no_source_address"] + counts["port_denied"],
        }


class Knocknft:
    """`knocknft run` on the stanza as a door (its own table keeps 22/tcp shut), under -D so
    that it logs each packet it judges; its counters are read from stats.json once stopped."""

    name = "knocknft"

    def __init__(self, lab: Lab, workdir: Path, stanza: Stanza) -> None:
        self.lab = lab
        workdir.mkdir(parents=True)
        self.state = workdir / "state"
        config = f"""\
options:
  state_dir: {self.state}
  interfaces: [eth0]
doors:
{stanza.knocknft_door("ssh")}"""
        self.config = write_config(workdir, config)
        self.log_path = workdir / "knocknft.log"
        self.logs: list[str] = []
        self.daemon = self._start()

    def _start(self) -> RunningDaemon:
        daemon = RunningDaemon(self.lab, self.config, self.log_path, ("-D",))
        # The SPA socket's line comes before the table is in: the knocks' line comes after.
        daemon.wait_for(f"knocknft {__version__}: listening on NFLOG group")
        return daemon

    def restart(self) -> None:
        # The replay cache stays in state_dir/spa-replay.json: the daemon reads it back at start.
        self.stop()
        self.logs.append(self.daemon.log())
        self.log_path.write_text("")
        self.daemon = self._start()

    def stop(self) -> None:
        self.daemon.stop()

    def outcomes(self) -> dict[str, int]:
        log = "".join(self.logs) + self.daemon.log()
        counts = {reason: log.count(f"SPA packet refused: {reason}") for reason in REASONS}
        return {"accepted": log.count("SPA request accepted"), **counts}

    def counted(self) -> dict[str, int]:
        stats = json.loads((self.state / "stats.json").read_text())
        counts = {reason: stats[f"spa_rejected_{reason}"] for reason in REASONS}
        return {"accepted": stats["spa_accepted"], **counts}


SERVERS: dict[str, Callable[[Lab, Path, Stanza], SpaServer]] = {
    "fwknopd": Fwknopd,
    "knocknft": Knocknft,
}


Serve = Callable[[Stanza], SpaServer]


@pytest.fixture(params=sorted(SERVERS))
def serve(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[Serve]:
    """Start a server of the fixture's kind for a stanza, port 22 listening behind it, and a
    second address on the client; all stopped at the end."""
    listener = Listener(lab.server, 22)
    lab.client.add_address(OTHER)
    started: list[SpaServer] = []

    def start(stanza: Stanza) -> SpaServer:
        server: SpaServer = SERVERS[request.param](lab, tmp_path / f"s{len(started)}", stanza)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        listener.close()


@pytest.fixture
def spa(serve: Serve) -> SpaServer:
    """A server of the plain stanza: 22/tcp for 3 s, any source."""
    return serve(Stanza(KEYS, access_timeout=3))


@pytest.fixture
def strict(serve: Serve) -> SpaServer:
    """A server of a stanza with REQUIRE_SOURCE_ADDRESS."""
    return serve(Stanza(KEYS, require_source_address=True))


def judge(lab: Lab, server: SpaServer, payload: bytes, **send: object) -> dict[str, int]:
    """Send one packet and wait until the server has judged it; what that changed."""
    before = server.outcomes()
    send_payload(lab.client, SERVER, payload, **send)  # type: ignore[arg-type]
    return _changed(server, before)


def _changed(server: SpaServer, before: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + 5
    while (after := server.outcomes()) == before:
        assert time.monotonic() < deadline, f"{server.name} did not judge the packet"
        time.sleep(0.02)
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


def packet(
    lab: Lab, keys: FwknopKeys, access: str = "tcp/22", *, allow: str | None, offset: int = 0
) -> bytes:
    """A packet the client made but did not send."""
    argv = fwknop_argv(keys, SERVER, access=access, allow=allow, extra=time_offset(offset))
    return build_spa(lab.client, argv)


def reachable(lab: Lab, source: str = CLIENT) -> bool:
    return lab.client.tcp_reachable(SERVER, 22, timeout=0.3, source=source)


def opens(lab: Lab, source: str = CLIENT) -> bool:
    """Whether 22/tcp lets `source` in within a second: a server may say it accepted a request
    a moment before its grant is in the kernel."""
    return wait_reachable(lab, source, time.monotonic() + 1)


def test_the_client_opens_the_port_for_its_address_only_until_the_timeout(
    lab: Lab, spa: SpaServer
) -> None:
    assert not reachable(lab)
    before = spa.outcomes()
    send_spa(lab.client, fwknop_argv(KEYS, SERVER, allow=CLIENT))
    assert _changed(spa, before) == {"accepted": 1}
    assert opens(lab)
    assert not reachable(lab, OTHER), "the grant is for the address inside the packet only"
    time.sleep(3.5)
    assert not reachable(lab), "the port closes after FW_ACCESS_TIMEOUT"


@pytest.mark.parametrize("digest", HMAC_DIGESTS)
def test_every_hmac_digest_the_client_offers_opens(lab: Lab, serve: Serve, digest: str) -> None:
    # The inner digest follows the HMAC's, so each of the client's -m choices is sent once too.
    keys = FwknopKeys.random(digest)
    server = serve(Stanza(keys))
    argv = fwknop_argv(keys, SERVER, allow=CLIENT, extra=("-m", digest))
    assert judge(lab, server, build_spa(lab.client, argv)) == {"accepted": 1}
    assert opens(lab)


def test_a_captured_packet_is_refused_again_from_anywhere_also_after_a_restart(
    lab: Lab, spa: SpaServer
) -> None:
    captured = packet(lab, KEYS, allow=CLIENT)
    assert judge(lab, spa, captured) == {"accepted": 1}
    assert judge(lab, spa, captured) == {"replay": 1}
    assert judge(lab, spa, captured, source=OTHER) == {"replay": 1}
    assert judge(lab, spa, captured, source=SPOOFED, spoofed=True) == {"replay": 1}
    assert not reachable(lab, OTHER)
    spa.restart()
    assert judge(lab, spa, captured, source=OTHER) == {"replay": 1}
    assert judge(lab, spa, captured) == {"replay": 1}


@pytest.mark.parametrize("offset", [-300, 300], ids=["behind", "ahead"])
def test_a_stale_timestamp_is_refused(lab: Lab, spa: SpaServer, offset: int) -> None:
    stale = packet(lab, KEYS, allow=CLIENT, offset=offset)
    assert judge(lab, spa, stale) == {"stale": 1}
    assert not reachable(lab)


def test_a_wrong_hmac_key_is_refused(lab: Lab, spa: SpaServer) -> None:
    # The right encryption key, another HMAC key: refused on the HMAC, before any decryption.
    wrong = FwknopKeys(KEYS.key_base64, FwknopKeys.random().hmac_key_base64)
    assert judge(lab, spa, packet(lab, wrong, allow=CLIENT)) == {"bad_auth": 1}
    assert not reachable(lab)


@pytest.mark.parametrize("access", ["tcp/23", "tcp/22,tcp/23"], ids=["alone", "beside"])
def test_a_port_outside_open_ports_refuses_the_whole_request(
    lab: Lab, spa: SpaServer, access: str
) -> None:
    request = packet(lab, KEYS, access, allow=CLIENT)
    assert judge(lab, spa, request) == {"not_allowed": 1}
    assert not reachable(lab)


def test_require_source_address_refuses_the_any_address_form(lab: Lab, strict: SpaServer) -> None:
    any_address = packet(lab, KEYS, allow=None)  # the client's -s
    assert judge(lab, strict, any_address) == {"not_allowed": 1}
    assert not reachable(lab)
    assert judge(lab, strict, packet(lab, KEYS, allow=CLIENT)) == {"accepted": 1}
    assert opens(lab)


def test_every_refusal_is_counted_under_its_reason(lab: Lab, spa: SpaServer) -> None:
    """One of each, in a row, on one server: the counters add up to what was sent."""
    good = packet(lab, KEYS, allow=CLIENT)
    wrong = FwknopKeys(KEYS.key_base64, FwknopKeys.random().hmac_key_base64)
    for payload in (
        good,
        good,
        packet(lab, KEYS, allow=CLIENT, offset=-600),
        packet(lab, wrong, allow=CLIENT),
        packet(lab, KEYS, "udp/53", allow=CLIENT),
    ):
        judge(lab, spa, payload)
    one_each = {reason: 1 for reason in ("accepted", *REASONS)}
    assert spa.outcomes() == one_each
    spa.stop()
    assert spa.counted() == one_each
