"""The sd_notify protocol on a socket the test binds (a file: no network namespace involved), the
status line systemctl shows, and the time budget for counting open grants.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocknft.config import Door, FwknopKey, PortSpec, parse_config
from knocknft.core.grants import Grant
from knocknft.daemon.notify import (
    GRANT_COUNT_SHARE,
    MAX_STATUS,
    Notifier,
    OpenGrants,
    one_line,
    socket_address,
    status_line,
)
from knocknft.daemon.stats import STATS_INTERVAL
from knocknft.errors import NftError, TableMissing
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import loaded_nft
from tests.unit.support import CLOSING, sample_stats


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd binds: an AF_UNIX datagram socket at a path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    lines = sock.recv(4096).decode().split("\n")
    assert all("=" in line for line in lines), lines
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/42", "\0/org/freedesktop/systemd1/notify/42"),
        ("@", None),
        ("run/notify", None),  # sd_notify refuses relative paths too
        ("vsock:2:1234", None),  # systemd >= 254 inside VMs: not for a host firewall daemon
    ],
)
def test_socket_address_follows_sd_notify(text: str, address: str | None) -> None:
    assert socket_address(text) == address


def test_the_socket_is_taken_out_of_the_environment(tmp_path: Path) -> None:
    """The doors' commands must not inherit it and speak for the daemon."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "PATH": "/bin"}
    notifier = Notifier.from_environment(environ)
    assert notifier.enabled and notifier.address == str(tmp_path / "notify")
    assert environ == {"PATH": "/bin"}


def test_without_a_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.status("x") and not notifier.stopping()


def test_an_unusable_socket_setting_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "knocknft"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "relative"})
    assert not notifier.enabled and "not notifying" in caplog.text


def test_ready_reloading_stopping_and_status(manager: socket.socket) -> None:
    notifier = Notifier(manager.getsockname())
    assert notifier.ready("listening on NFLOG group 7")
    assert received(manager) == {"READY": "1", "STATUS": "listening on NFLOG group 7"}
    notifier.status("3 grant(s) open")
    assert received(manager) == {"STATUS": "3 grant(s) open"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    message = received(manager)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert message["RELOADING"] == "1" and message["STATUS"] == "reloading the config"
    # systemd >= 253 pairs the reload with its signal by this time stamp: CLOCK_MONOTONIC, in µs.
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    notifier.stopping()
    assert received(manager) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.close()


def test_ready_is_one_datagram_with_the_status(manager: socket.socket) -> None:
    Notifier(manager.getsockname()).ready("listening")
    assert manager.recv(4096) == b"READY=1\nSTATUS=listening"


def test_a_status_with_newlines_stays_one_assignment(manager: socket.socket) -> None:
    """An error text spanning lines must not end up as assignments of its own."""
    Notifier(manager.getsockname()).status("failed: bad config\nREADY=1\n\n  line 3")
    assert received(manager) == {"STATUS": "failed: bad config | READY=1 | line 3"}


def test_a_long_status_is_cut() -> None:
    flat = one_line("x" * 5000)
    assert len(flat) == MAX_STATUS and flat.endswith("...")


def test_a_gone_manager_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, "knocknft"):
        assert not notifier.ready("x")
        assert not notifier.status("y")
    assert caplog.text.count("cannot notify the service manager") == 1


# -- the status line ----------------------------------------------------------------------------


def test_status_line_says_what_systemctl_status_should_show() -> None:
    config = parse_config(CLOSING).config
    stats = sample_stats(knocks=12, opens=2, commands_failed=0, grant_failures=1)
    line = status_line(config, open_grants=3, stats=stats)
    assert line == (
        "listening on NFLOG group 7, 2 door(s), 3 grant(s) open; since start: 12 knock(s), "
        "2 door(s) opened, 1 grant(s) failed"
    )


def test_status_line_counts_spa_requests_when_there_are_spa_doors() -> None:
    fwknop = FwknopKey((), b"k" * 32, b"h" * 64)
    config = parse_config(CLOSING).config
    spa = dataclasses.replace(config, doors=(*config.doors, Door("spa", fwknop=fwknop)))
    stats = sample_stats(spa_accepted=2, spa_rejected_bad_auth=5, spa_rejected_replay=1)
    assert "SPA" not in status_line(config, open_grants=0, stats=stats)
    line = status_line(spa, open_grants=0, stats=stats)
    assert line.endswith("0 door(s) opened, 2 SPA request(s) accepted, 6 refused")


def test_status_line_says_when_the_table_is_gone_or_the_reload_failed() -> None:
    config = parse_config(CLOSING).config
    line = status_line(config, open_grants=None, stats=sample_stats(), reload_failed=True)
    assert line.startswith("last reload failed, running the previous config")
    assert "table inet knocknft is not loaded: nothing is guarded" in line


# -- counting open grants on a budget -----------------------------------------------------------


def counting_nft(clock: list[float], cost: float) -> FakeNft:
    """A FakeNft with one grant in allow4, each listing taking `cost` seconds of `clock`."""
    nft = loaded_nft(parse_config(CLOSING).config)

    def advance(command: str) -> None:
        clock[0] += cost

    nft.on_read = advance
    add_grants(nft, 1)
    return nft


def add_grants(nft: FakeNft, count: int) -> None:
    """Grant 198.18.0.2, .3, ... up to `count` grants in all."""
    addresses = [ipaddress.ip_address(f"198.18.0.{i + 2}") for i in range(count)]
    nft.grant("knocknft", [Grant(a, PortSpec(22), "ssh", 60) for a in addresses])


def test_open_grants_are_counted_from_the_kernel() -> None:
    clock = [0.0]
    nft = counting_nft(clock, cost=0.001)
    counter = OpenGrants(nft, lambda: "knocknft", clock=lambda: clock[0])
    assert counter.count() == 1
    add_grants(nft, 3)
    clock[0] += STATS_INTERVAL
    assert counter.count() == 3, "a cheap count is re-read at every status refresh"


def test_a_costly_count_is_not_repeated_before_its_budget() -> None:
    clock = [100.0]
    nft = counting_nft(clock, cost=0.2)  # two listings: 0.4 s, as for ~10,000 grants
    counter = OpenGrants(nft, lambda: "knocknft", clock=lambda: clock[0])
    assert counter.count() == 1 and len(nft.reads) == 2
    add_grants(nft, 5)
    clock[0] += STATS_INTERVAL
    assert counter.count() == 1 and len(nft.reads) == 2, "within the budget: the last count"
    clock[0] = 100.0 + 0.4 / GRANT_COUNT_SHARE + 0.01
    assert counter.count() == 5 and len(nft.reads) == 4
    add_grants(nft, 6)
    assert counter.count(fresh=True) == 6, "ready and reloads ask for the truth"


def test_a_missing_table_counts_as_none_and_other_errors_keep_the_last_count() -> None:
    clock = [0.0]
    nft = counting_nft(clock, cost=0.0)
    counter = OpenGrants(nft, lambda: "knocknft", clock=lambda: clock[0])
    assert counter.count() == 1
    nft.refuse("list", NftError("netlink: Error: busy"))
    assert counter.count() == 1
    nft.refuse("list", TableMissing("No such file or directory"))
    assert counter.count() is None
