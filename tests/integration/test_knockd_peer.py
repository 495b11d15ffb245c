"""Proof against real peers: Debian's knockd and knock (0.8) next to knocknft, in namespaces.

- Debian's `knock` opens knocknft's doors, and knocknft's `knock` opens knockd's.
- One knockd.conf, run by knockd and by `knocknft run -c knockd.conf` side by side in one server
  namespace, judges the same packets: knockd sniffs them with libpcap at the interface, before
  nftables, so knocknft's table dropping knocks hides nothing from it. A "decision" is a line
  "DOOR ADDRESS" that a door's command appended to a file; each scenario is one row of
  SCENARIOS, with knockd's decisions and, where knocknft's differ on purpose, knocknft's and why.
- An imported config (`knocknft import`) against the iptables knockd.conf it came from.

Skipped, saying why, when the knockd package (or iptables, for the import) is not installed;
`make test` installs both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from knocklab.daemons import KNOCKD, LabDaemon, start_knockd
from knocklab.lab import Host, Lab, Listener
from tests.integration.support import BIN, RIGHT, config_text, running, write_config

pytestmark = pytest.mark.skipif(
    not KNOCKD.exists(), reason=f"{KNOCKD} is missing: install Debian's knockd (make deps does)"
)

SERVER, SERVER6 = Lab.SERVER_V4, Lab.SERVER_V6
A, A6 = Lab.CLIENT_V4, Lab.CLIENT_V6
B = "198.18.0.3"
# The sentinel knocks last, from an address of its own, on a one-step door of its own: a daemon
# that has judged it has judged every knock before it (both read packets in arrival order).
SENTINEL = "198.18.0.99"
SYN, ACK, FIN = 0x02, 0x10, 0x01
DEBIAN_KNOCK = "/usr/bin/knock"


# -- a) and b): each side's client opens the other side's doors ---------------------------------


@pytest.mark.parametrize(("flag", "server", "client"), [("-4", SERVER, A), ("-6", SERVER6, A6)])
def test_debian_knock_opens_knocknft(
    lab: Lab, tmp_path: Path, flag: str, server: str, client: str
) -> None:
    listener = Listener(lab.server, 22)
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    try:
        with running(lab, cfg, tmp_path / "knocknft.log") as daemon:
            assert not lab.client.tcp_reachable(server, 22, timeout=0.3)
            out = lab.client.run(DEBIAN_KNOCK, "-v", flag, server, "7000", "9000:udp", "8000")
            assert out.stdout.splitlines()[0] == f"hitting tcp {server}:7000"
            daemon.wait_for(f"{client}: ssh: OPEN SESAME")
            assert lab.client.tcp_reachable(server, 22)
    finally:
        listener.close()


@pytest.mark.parametrize(("server", "client"), [(SERVER, A), (SERVER6, A6)])
def test_knocknft_knock_opens_knockd(lab: Lab, tmp_path: Path, server: str, client: str) -> None:
    out = tmp_path / "decisions"
    conf = tmp_path / "knockd.conf"
    conf.write_text(
        "[openSSH]\n\tsequence = 7000,9000:udp,8000\n\ttcpflags = syn,!ack\n"
        f"\tcommand = echo openSSH %IP% >> {out}\n"
    )
    with start_knockd(lab.server, conf, tmp_path / "knockd.log") as knockd:
        lab.client.run(str(BIN / "knock"), server, "7000", "9000:udp", "8000")
        knockd.wait_for(f"{client}: openSSH: OPEN SESAME")
        wait_for_lines(out, 1)
    assert out.read_text() == f"openSSH {client}\n"


# -- c) the same knockd.conf, the same packets, both daemons -----------------------------------


PEER_CONF = """\
[open]
\tsequence = 7000,9000:udp,8000
\tseq_timeout = 5
\tcommand = echo open %IP% >> {out}

[slow]
\tsequence = 7100,7101
\tseq_timeout = 1
\tcommand = echo slow %IP% >> {out}

[synonly]
\tsequence = 7200,7201,7202
\ttcpflags = syn,!ack
\tcommand = echo synonly %IP% >> {out}

[fin]
\tsequence = 7210,7211
\ttcpflags = fin,!ack
\tcommand = echo fin %IP% >> {out}

[short]
\tsequence = 7400,7401
\tcommand = echo short %IP% >> {out}

[long]
\tsequence = 7400,7401,7402
\tcommand = echo long %IP% >> {out}

[onetime]
\tone_time_sequences = {onetime}
\tcommand = echo onetime %IP% >> {out}

[sentinel]
\tsequence = 6999:udp
\tcommand = echo sentinel %IP% >> {out}
"""

# knockd's admins leave a leading space on each line: the daemons overwrite it with '#' once used.
ONE_TIME = " 7500,7501\n 7502,7503\n 7504,7505\n"


@dataclass(frozen=True)
class Hit:
    """One knock from `source`: as the knock client sends it, or, with `flags`, a hand-made TCP
    segment carrying exactly those flags."""

    source: str
    step: str
    flags: int | None = None


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class UntilFraction:
    """Sleep until the wall clock is `fraction` into a second (the next second's, if past)."""

    fraction: float


Action = Hit | Pause | UntilFraction


def hits(source: str, *steps: str, flags: int | None = None) -> tuple[Hit, ...]:
    return tuple(Hit(source, step, flags) for step in steps)


def interleaved(sources: tuple[str, ...], *steps: str) -> tuple[Hit, ...]:
    return tuple(Hit(source, step) for step in steps for source in sources)


@dataclass(frozen=True)
class Scenario:
    name: str
    actions: tuple[Action, ...]
    knockd: tuple[str, ...]  # the decisions knockd takes ("DOOR ADDRESS")
    knocknft: tuple[str, ...] | None = None  # where knocknft's differ: its own
    why: str = ""  # ... and why

    @property
    def expected(self) -> dict[str, list[str]]:
        theirs = self.knockd if self.knocknft is None else self.knocknft
        return {"knockd": sorted(self.knockd), "knocknft": sorted(theirs)}


SCENARIOS = [
    Scenario("right sequence", hits(A, *RIGHT), (f"open {A}",)),
    Scenario("right sequence over IPv6", hits(A6, *RIGHT), (f"open {A6}",)),
    Scenario("wrong order", hits(A, "7000", "8000", "9000/udp"), ()),
    # 9000/tcp is no knock port (9000/udp is): neither daemon sees it; 8000 then breaks stage 2.
    Scenario("wrong protocol", hits(A, "7000", "9000/tcp", "8000"), ()),
    # What a blocking connect's retransmitted SYN does to a sequence.
    Scenario("a knock repeated", hits(A, "7000", "7000", "9000/udp", "8000"), ()),
    Scenario("incomplete", hits(A, "7000", "9000/udp"), ()),
    Scenario("a port in no door", hits(A, "7000", "9000/udp", "7777", "8000"), (f"open {A}",)),
    Scenario(
        "a fresh start after a wrong knock",
        hits(A, "7000", "8000", *RIGHT),
        (f"open {A}",),
    ),
    Scenario("too slow", (Hit(A, "7100"), Pause(1.2), Hit(A, "7101")), ()),
    Scenario(
        "quick, across a second boundary",
        (UntilFraction(0.8), Hit(A, "7100"), UntilFraction(0.1), Hit(A, "7101")),
        (),
        (f"slow {A}",),
        "knockd counts Seq_Timeout in whole seconds of the packets' timestamps: two knocks 0.3 s "
        "apart on either side of a second boundary are 1 s apart to it, so with Seq_Timeout = 1 "
        "the sequence times out. knocknft measures the 0.3 s that passed.",
    ),
    Scenario(
        "tcpflags: a SYN+ACK in the middle is ignored",
        (*hits(A, "7200"), Hit(A, "7201", SYN | ACK), *hits(A, "7201", "7202")),
        (f"synonly {A}",),
    ),
    Scenario("tcpflags: only SYN+ACKs", hits(A, "7200", "7201", "7202", flags=SYN | ACK), ()),
    Scenario("tcpflags: FIN knocks", hits(A, "7210", "7211", flags=FIN), (f"fin {A}",)),
    Scenario("tcpflags: SYN knocks on a FIN door", hits(A, "7210", "7211"), ()),
    Scenario(
        "two knockers interleaved",
        interleaved((A, B), *RIGHT),
        (f"open {A}",),
        (f"open {A}", f"open {B}"),
        "knockd's defect 1: when the first attempt in its list ends (A's, completed), it drops "
        "the whole list, and B's attempt at stage 2 with it; B's last knock then starts nothing.",
    ),
    Scenario(
        "doors sharing a prefix",
        hits(A, "7400", "7401", "7402"),
        (f"short {A}",),
        (f"long {A}", f"short {A}"),
        "knockd's defect 1 again, with one knocker: [short] completes first, its attempt heads "
        "the list, and removing it drops [long]'s attempt at stage 2.",
    ),
    Scenario(
        "one-time sequences: used once, then the next line",
        (*hits(A, "7500", "7501"), Pause(0.3), *hits(B, "7500", "7501", "7502", "7503")),
        (f"onetime {A}", f"onetime {B}"),
    ),
    Scenario(
        "one-time sequences: the next line at once",
        (*hits(A, "7500", "7501"), *hits(B, "7502", "7503")),
        (f"onetime {A}",),
        (f"onetime {A}", f"onetime {B}"),
        "knockd lets only the active sequence's ports through its pcap filter and installs the "
        "next line's when it handles the knock that used the current one; it reads packets in "
        "batches (a 50 ms buffer timeout), so knocks of the next line that arrive before then "
        "were already dropped by the old filter. knocknft judges every knock port it has.",
    ),
]


def wait_for_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The lines of `path` once it has `count` of them (commands append in their own time)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def decisions(daemon: LabDaemon, out: Path) -> list[str]:
    """What `daemon` decided, once the sentinel is judged and every door's command has run: one
    command per OPEN SESAME (every door of PEER_CONF has one), each appending one line."""
    log = daemon.wait_for(f"{SENTINEL}: sentinel: OPEN SESAME")
    opened = log.count("OPEN SESAME")
    lines = wait_for_lines(out, opened)
    assert len(lines) == opened, f"{opened} OPEN SESAME, commands wrote {lines}:\n{log}"
    return sorted(line for line in lines if not line.startswith("sentinel "))


def play(client: Host, actions: Iterable[Action]) -> None:
    for action in actions:
        if isinstance(action, Pause):
            time.sleep(action.seconds)
        elif isinstance(action, UntilFraction):
            now = time.time()
            time.sleep((action.fraction - now % 1) % 1)
        elif action.flags is not None:
            client.send_tcp(SERVER, int(action.step), action.flags, source=action.source)
        else:
            server = SERVER6 if ":" in action.source else SERVER
            client.knock(server, action.step, source=action.source)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.replace(" ", "-"))
def test_same_knockd_conf_same_decisions(lab: Lab, tmp_path: Path, scenario: Scenario) -> None:
    for address in (B, SENTINEL):
        lab.client.add_address(address)
    files: dict[str, tuple[Path, Path]] = {}
    for name in ("knockd", "knocknft"):
        folder = tmp_path / name
        folder.mkdir()
        out, onetime = folder / "decisions", folder / "onetime"
        onetime.write_text(ONE_TIME)
        (folder / "knockd.conf").write_text(PEER_CONF.format(out=out, onetime=onetime))
        files[name] = (out, onetime)
    extra = ("-i", "eth0", "--state-dir", str(tmp_path / "state"))
    knockd_conf, ours_conf = (tmp_path / name / "knockd.conf" for name in files)
    with (
        start_knockd(lab.server, knockd_conf, tmp_path / "knockd.out") as knockd,
        running(lab, ours_conf, tmp_path / "knocknft.out", extra) as ours,
    ):
        play(lab.client, scenario.actions)
        lab.client.knock(SERVER, "6999/udp", source=SENTINEL)
        got = {
            "knockd": decisions(knockd, files["knockd"][0]),
            "knocknft": decisions(ours, files["knocknft"][0]),
        }
    assert got == scenario.expected, scenario.why
    if scenario.knocknft is None:
        used = {name: onetime.read_text() for name, (_, onetime) in files.items()}
        assert used["knockd"] == used["knocknft"], "the same decisions mark the same lines"


# -- d) an imported config against the knockd.conf it came from --------------------------------

IPTABLES_CONF = """\
[options]
\tInterface = eth0

[openSSH]
\tsequence      = 7000,9000:udp,8000
\tseq_timeout   = 5
\ttcpflags      = syn
\tstart_command = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\tcmd_timeout   = 2
\tstop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT

[openWeb]
\tsequence = 7300,7301:udp,7302
\tcommand  = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport 8080 -j ACCEPT

[closeWeb]
\tsequence = 7302,7301:udp,7300
\tcommand  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 8080 -j ACCEPT

[sentinel]
\tsequence = 6999:udp
\tcommand  = echo sentinel %IP% >> {out}
"""

C, D, E = "198.18.0.4", "198.18.0.5", "198.18.0.6"
SERVICES = (22, 8080)
WEB_OPEN, WEB_CLOSE = ("7300", "7301/udp", "7302"), ("7302", "7301/udp", "7300")


@dataclass(frozen=True)
class ImportRow:
    """One knocker's knocks, and the services it then reaches: right after the knocks, and once
    openSSH's cmd_timeout has passed."""

    name: str
    source: str
    actions: tuple[Action, ...]
    knockd: tuple[tuple[int, ...], tuple[int, ...]]
    knocknft: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # where it differs
    why: str = ""


# Each row knocks from its own address, one row after the other, so no row's attempt is in
# progress when the next starts (knockd's defect 1 cannot link them).
IMPORT_ROWS = (
    ImportRow("right sequence", A, hits(A, *RIGHT), ((22,), ())),
    ImportRow("a bystander", B, (), ((), ())),
    ImportRow("wrong order", C, hits(C, "7000", "8000", "9000/udp"), ((), ())),
    ImportRow(
        "IPv6 knocker",
        A6,
        hits(A6, *RIGHT),
        ((), ()),
        ((22,), ()),
        "intended, and said in the imported YAML: under knockd `iptables -I INPUT -s "
        "2001:db8::2 ...` fails (an IPv6 address to iptables), so only IPv4 knockers ever got "
        "in; knocknft grants the knocker's address in either family",
    ),
    # The pause lets knockd's `iptables -I` finish first: its commands run concurrently, each in
    # a child of its own, so a close knocked at once can run before the open and leave it open.
    ImportRow(
        "open, then the closing door",
        D,
        (*hits(D, *WEB_OPEN), Pause(0.3), *hits(D, *WEB_CLOSE)),
        ((), ()),
    ),
    ImportRow("open only", E, hits(E, *WEB_OPEN), ((8080,), (8080,))),
)


def reachable(lab: Lab) -> set[tuple[str, int]]:
    """Which row addresses reach which service, all probed at once (a dropped SYN costs the
    probe's whole timeout)."""
    pairs = [(row.source, port) for row in IMPORT_ROWS for port in SERVICES]

    def probe(pair: tuple[str, int]) -> bool:
        address, port = pair
        server = SERVER6 if ":" in address else SERVER
        return lab.client.tcp_reachable(server, port, timeout=0.5, source=address)

    with ThreadPoolExecutor(len(pairs)) as pool:
        return {pair for pair, ok in zip(pairs, pool.map(probe, pairs), strict=True) if ok}


def commands_in_flight(pid: int) -> bool:
    """knockd runs each command with system() in a child of its own: a grandchild is a running
    command (the child itself may only be sleeping until its stop command)."""

    def children(of: int) -> list[str]:
        try:
            return Path(f"/proc/{of}/task/{of}/children").read_text().split()
        except OSError:
            return []

    return any(children(int(child)) for child in children(pid))


def knockd_commands_done(knockd: LabDaemon, commands: int) -> None:
    """Wait until knockd has started `commands` commands and none is still running: each child
    logs "running command" just before its system(), so once that count is reached and no child
    has a command running (seen twice, to pass the gap between the log line and the fork), the
    firewall is as knockd's commands left it."""
    knockd.wait_for("running command", count=commands)
    deadline = time.monotonic() + 5
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        quiet = 0 if commands_in_flight(knockd.pid) else quiet + 1
        time.sleep(0.05)


def knock_rows(lab: Lab) -> float:
    """Play every row, then the sentinel; returns when the first row started knocking."""
    started = time.monotonic()
    for row in IMPORT_ROWS:
        play(lab.client, row.actions)
    lab.client.knock(SERVER, "6999/udp", source=SENTINEL)
    return started


@pytest.fixture
def import_lab(lab: Lab) -> Iterator[Lab]:
    for address in (B, C, D, E, SENTINEL):
        lab.client.add_address(address)
    listeners = [Listener(lab.server, port) for port in SERVICES]
    try:
        yield lab
    finally:
        for listener in listeners:
            listener.close()


@pytest.mark.skipif(
    not Path("/usr/sbin/iptables").exists(),
    reason="iptables is missing (make deps installs it): knockd's commands here run it",
)
def test_imported_config_decides_as_its_knockd_conf(tmp_path: Path, import_lab: Lab) -> None:
    """knockd runs IPTABLES_CONF itself, its iptables commands acting on the server namespace's
    own firewall (a REJECT for 22 and 8080 that the commands insert ACCEPTs before); knocknft
    runs what `knocknft import` made of the same file, on a namespace with no iptables rules,
    since its own table now guards the services.

    The decision compared is the one a user sees: which services each row's knocker reaches
    right after the knocks, and again after cmd_timeout, when knockd's stop command deletes
    openSSH's rule and knocknft's grant (open_for = cmd_timeout) expires. A command having run
    says less: knockd runs the IPv6 knocker's iptables command too, and it fails. For knocknft,
    reachability must also agree with the grants in its sets (`knocknft status`).
    """
    lab = import_lab
    out = tmp_path / "sentinel"
    conf = tmp_path / "knockd.conf"
    conf.write_text(IPTABLES_CONF.format(out=out))
    imported = tmp_path / "config.yaml"
    result = lab.server.run(str(BIN / "knocknft"), "import", str(conf), "-o", str(imported))
    text = imported.read_text()
    assert "open: [22/tcp]" in text and "open_for: 2s" in text, text
    assert "close: [8080/tcp]" in text, text
    assert "[sentinel] start_command" in result.stderr, "only the sentinel is not mapped"

    # knockd, on the firewall its commands were written for.
    for tool in ("iptables", "ip6tables"):
        lab.server.run(
            tool, "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "22,8080",
            "-j", "REJECT", "--reject-with", "tcp-reset",
        )  # fmt: skip
    assert reachable(lab) == set()
    with start_knockd(lab.server, conf, tmp_path / "knockd.out") as knockd:
        started = knock_rows(lab)
        log = knockd.wait_for(f"{SENTINEL}: sentinel: OPEN SESAME")
        opened = log.count("OPEN SESAME")  # every door has a start command
        knockd_commands_done(knockd, opened)
        knockd_open = reachable(lab)
        time.sleep(max(0.0, started + 2.5 - time.monotonic()))
        # Then each openSSH child runs its stop command.
        timed = log.count("openSSH: OPEN SESAME")
        knockd.wait_for("openSSH: command timeout", count=timed)
        knockd_commands_done(knockd, opened + timed)
        knockd_later = reachable(lab)
    for tool in ("iptables", "ip6tables"):
        lab.server.run(tool, "-F", "INPUT")

    # knocknft, on the imported config, in the same namespace now without iptables rules.
    assert reachable(lab) == {(row.source, p) for row in IMPORT_ROWS for p in SERVICES}
    extra = ("--state-dir", str(tmp_path / "state"))
    with running(lab, imported, tmp_path / "knocknft.out", extra) as ours:
        started = knock_rows(lab)
        ours.wait_for(f"{SENTINEL}: sentinel: OPEN SESAME")
        ours_open = reachable(lab)
        assert ours_open == granted(lab, imported)
        time.sleep(max(0.0, started + 2.5 - time.monotonic()))
        ours_later = reachable(lab)
        assert ours_later == granted(lab, imported)

    got = {
        row.name: {
            "knockd": (by_source(knockd_open, row), by_source(knockd_later, row)),
            "knocknft": (by_source(ours_open, row), by_source(ours_later, row)),
        }
        for row in IMPORT_ROWS
    }
    expected = {
        row.name: {"knockd": row.knockd, "knocknft": row.knocknft or row.knockd}
        for row in IMPORT_ROWS
    }
    assert got == expected


def by_source(reached: set[tuple[str, int]], row: ImportRow) -> tuple[int, ...]:
    return tuple(sorted(port for source, port in reached if source == row.source))


def granted(lab: Lab, config: Path) -> set[tuple[str, int]]:
    status = lab.server.run(
        str(BIN / "knocknft"), "status", "--json", "-c", str(config), check=False
    )
    return {(g["address"], g["port"]) for g in json.loads(status.stdout)["grants"]}
