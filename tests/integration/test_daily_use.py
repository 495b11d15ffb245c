"""What an admin notices day to day, against the real kernel: each grant's end in the log and
the event log, -v and -D telling different amounts, the journal's priorities, and apply's
warning when it would shut out the admin's own SSH session."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from knocklab.lab import Lab, Listener
from tests.integration.support import (
    BIN,
    RIGHT,
    Server,
    config_text,
    running,
    write_config,
)

SERVER = Lab.SERVER_V4
A = Lab.CLIENT_V4


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_grant_end_is_logged_once_with_its_reason(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    audit = tmp_path / "events.jsonl"
    text = config_text(tmp_path / "state", open_for="2s").replace(
        "options:\n", f"options:\n  event_log: {audit}\n"
    )
    cfg = write_config(tmp_path, text)
    server = Server(lab, cfg, tmp_path / "state")
    with running(lab, cfg, tmp_path / "daemon.log") as daemon:
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: granted 22/tcp")
        time.sleep(1)
        lab.client.knock(SERVER, *RIGHT, source=A)  # a refresh: no end, a later expiry
        daemon.wait_for(f"{A}: ssh: granted 22/tcp", count=2)
        daemon.wait_for(f"{A}: ssh: grant of 22/tcp expired", timeout=5)
        assert not lab.client.tcp_reachable(SERVER, 22, source=A), "the kernel expired it too"
        server.knocknft("open", A, "--for", "1m")
        server.knocknft("close", A)
        daemon.wait_for(f"{A}: ssh: grant of 22/tcp revoked: taken out of the set")
        time.sleep(0.5)
        log = daemon.log()
    assert log.count("grant of 22/tcp expired") == 1 and log.count("revoked") == 1, log
    ends = [e for e in events(audit) if e["event"] == "grant_end"]
    assert [(e["source"], e["door"], e["service"], e["reason"]) for e in ends] == [
        (A, "ssh", "22/tcp", "expired"),
        (A, "ssh", "22/tcp", "revoked"),
    ]


WRONG = ("7000", "8000")  # 8000 out of turn: the attempt breaks


@pytest.mark.parametrize("flag", ["", "-v", "-D"])
def test_v_and_d_tell_different_amounts(
    lab: Lab, tmp_path: Path, ssh_listener: Listener, flag: str
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    extra = (flag,) if flag else ()
    with running(lab, cfg, tmp_path / "daemon.log", extra, verbose=False) as daemon:
        lab.client.knock(SERVER, *WRONG, source=A)
        lab.client.knock(SERVER, *RIGHT, source=A)
        daemon.wait_for(f"{A}: ssh: granted 22/tcp")
        time.sleep(0.5)  # the kernel's announcement of the grant
        log = daemon.log()
    assert f"{A}: ssh: Stage 1" in log and f"{A}: ssh: OPEN SESAME" in log, "always"
    assert ("sequence broken at stage 1" in log) == (flag in ("-v", "-D")), log
    assert ("packet: 198.18.0.2 -> 198.18.0.1 7000/tcp" in log) == (flag == "-D"), log
    announced = f"nf_tables: element added: {A} 22/tcp (door ssh, expires in"
    assert (announced in log) == (flag == "-D"), log


def test_the_journal_gets_each_lines_priority(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    log_path = tmp_path / "daemon.log"
    log_path.touch()
    stat = log_path.stat()
    # What systemd sets for a service whose stderr is the journal: this very file.
    env = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
    with running(lab, cfg, log_path, env=env) as daemon:
        cfg.write_text(cfg.read_text().replace("options:\n", "options:\n  nflog_group: 9\n"))
        daemon.send(signal.SIGHUP)  # a restart-only option changed: a warning
        daemon.wait_for("reloaded")
        cfg.write_text(cfg.read_text() + "  oops: [\n")
        daemon.send(signal.SIGHUP)  # a broken config: an error
        daemon.wait_for("reload failed")
        lines = daemon.log().splitlines()
    assert any(line.startswith("<6>knocknft ") and "listening on NFLOG" in line for line in lines)
    assert any(line.startswith("<4>warning: options.nflog_group changed") for line in lines)
    assert any(line.startswith("<3>error: reload failed") for line in lines), lines
    assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines if line), lines


def test_apply_warns_an_admin_whose_own_ssh_session_it_would_shut_out(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    state = tmp_path / "state"
    session = f"{A} 52000 {SERVER} 22"  # what sshd sets for the admin on the client

    def apply(text: str) -> str:
        cfg = write_config(tmp_path, text)
        result = lab.server.run(
            "env", f"SSH_CONNECTION={session}", str(BIN / "knocknft"), "apply", "-c", str(cfg)
        )
        return result.stderr

    warned = apply(config_text(state))
    assert f"warning: your SSH session comes from {A} to 22/tcp" in warned
    assert f"Add {A} (or its network) to options.always_allow" in warned
    assert not lab.client.tcp_reachable(SERVER, 22, source=A), "as warned: a new session fails"

    trusting = config_text(state).replace("options:\n", f"options:\n  always_allow: [{A}/32]\n")
    assert "SSH session" not in apply(trusting)
    assert lab.client.tcp_reachable(SERVER, 22, source=A), "always_allow lets the admin in"


def test_the_cli_under_systemd_gives_the_journal_its_priorities(lab: Lab, tmp_path: Path) -> None:
    """`knocknft guard` runs from a unit at boot: its warning and its error reach the journal
    as a warning and an error."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)

    def guard() -> tuple[int, str]:
        stderr = tmp_path / "stderr"
        with open(stderr, "w") as stream:
            stat = stderr.stat()
            env = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
            proc = lab.server.popen(
                "env",
                *(f"{k}={v}" for k, v in env.items()),
                str(BIN / "knocknft"),
                "guard",
                "--state-dir",
                str(state),
                stderr=stream,
                stdout=subprocess.DEVNULL,
            )
            code = proc.wait(timeout=30)
        return code, stderr.read_text()

    code, text = guard()  # nothing saved yet
    assert code == 0 and text.startswith("<4>warning: nothing to load"), text
    (state / "last-good.nft").write_text("flush ruleset\n")  # not a table knocknft saved
    (state / "last-good.nft").chmod(0o600)
    code, text = guard()
    assert code == 1 and text.startswith("<3>knocknft: "), text


def test_run_started_by_hand_over_ssh_warns_of_the_same_lockout(
    lab: Lab, tmp_path: Path, ssh_listener: Listener
) -> None:
    cfg = write_config(tmp_path, config_text(tmp_path / "state"))
    env = {"SSH_CONNECTION": f"{A} 52000 {SERVER} 22"}
    with running(lab, cfg, tmp_path / "daemon.log", env=env) as daemon:
        daemon.wait_for(f"warning: your SSH session comes from {A} to 22/tcp")
        assert "knock from a new session now" in daemon.log()
