"""`knocknft import` reads access.conf as fwknopd itself does: Debian's fwknopd reads each saved
setup (`--dump-config`, in the lab's server namespace, on a run directory of the test's own), and
its stanzas, their values, key lengths, timeouts and expiry are the importer's; where fwknopd
refuses to start, the import refuses too.

Skipped, saying why, when fwknopd is not installed; `make deps` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest

from knocklab.fwknopd import FWKNOPD
from knocklab.lab import Lab
from knocknft.errors import Problem
from knocknft.fwknop.grammar import RawStanza, read_access_conf
from knocknft.fwknop.stanza import check_stanza
from knocknft.fwknop.values import decode_base64, parse_yes

pytestmark = pytest.mark.skipif(not FWKNOPD.exists(), reason="fwknop-server is not installed")

DATA = Path(__file__).resolve().parents[1] / "data" / "fwknop"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "access.conf").is_file())
# fwknop's HMAC_DIGEST_TYPE numbers (lib/fko.h fko_hmac_type_t), as --dump-config prints them.
DIGEST_NUMBERS = {"md5": 1, "sha1": 2, "sha256": 3, "sha384": 4, "sha512": 5, "sha3_256": 6}
DIGEST_NUMBERS["sha3_512"] = 7
_STANZA_RE = re.compile(r"^SOURCE \((\d+)\):\s+(.*)$")
_FIELD_RE = re.compile(r"^\s*([A-Z_0-9 ()]+):  (.*)$")


def fwknopd_reading(lab: Lab, folder: Path, source: Path) -> tuple[int, list[dict[str, str]]]:
    """fwknopd's exit status on an access.conf (a copy of `source`, in `folder`), and each
    stanza as it dumps it."""
    folder.mkdir(exist_ok=True)
    access = folder / "access.conf"
    shutil.copy(source, access)
    run_dir = folder / "run"
    run_dir.mkdir()
    daemon = folder / "fwknopd.conf"
    # FORCE_NAT needs forwarding on, or fwknopd refuses the file for that alone.
    daemon.write_text(
        f"FWKNOP_RUN_DIR {run_dir};\nPCAP_INTF {lab.server.ifname};\nENABLE_IPT_FORWARDING Y;\n"
    )
    for path in (access, daemon):
        path.chmod(0o600)
    # In UTC, as the import counts an ACCESS_EXPIRE_EPOCH's day.
    done = lab.server.run(
        "env",
        "TZ=UTC",
        str(FWKNOPD),
        "-c",
        str(daemon),
        "-a",
        str(access),
        "--dump-config",
        check=False,
    )
    stanzas: list[dict[str, str]] = []
    # Debian's fwknopd 2.6.10 keeps a value's trailing blanks, which later versions (and the
    # import) cut: compared without them.
    for line in done.stdout.splitlines():
        stanza = _STANZA_RE.match(line)
        if stanza:
            stanzas.append({"#": stanza.group(1), "SOURCE": stanza.group(2).rstrip()})
            continue
        field = _FIELD_RE.match(line)
        if field and stanzas:
            stanzas[-1][field.group(1).strip()] = field.group(2).rstrip()
    return done.returncode, stanzas


def _last(raw: RawStanza, *keywords: str) -> str:
    values = [d.value for d in raw.directives if d.keyword in keywords]
    return values[-1] if values else "<not set>"


def _key_length(raw: RawStanza, text: str, encoded: str) -> int:
    last = [d for d in raw.directives if d.keyword in (text, encoded)]
    if not last:
        return 0
    if last[-1].keyword == encoded:
        return len(decode_base64(last[-1].value))
    return len(last[-1].value.encode())


@pytest.mark.parametrize("case", CASES)
def test_fwknopd_and_the_import_read_the_same_stanzas(lab: Lab, tmp_path: Path, case: str) -> None:
    status, dumped = fwknopd_reading(lab, tmp_path, DATA / case / "access.conf")
    access = read_access_conf((DATA / case / "access.conf").read_text(), "access.conf")
    errors: list[Problem] = []
    checked = [check_stanza(raw, errors) for raw in access.stanzas]
    if status != 0:
        assert errors or access.errors, f"fwknopd refuses {case}, the import must too"
        return
    assert not errors and not access.errors, f"fwknopd starts on {case}: {errors}"
    assert [int(s["#"]) for s in dumped] == [raw.number for raw in access.stanzas]
    for raw, check, fwknopd in zip(access.stanzas, checked, dumped, strict=True):
        where = f"{case} stanza #{raw.number}"
        assert fwknopd["SOURCE"] == raw.source.value, where
        for name in ("OPEN_PORTS", "RESTRICT_PORTS", "DESTINATION", "CMD_CYCLE_OPEN"):
            assert fwknopd[name] == _last(raw, name), f"{where} {name}"
        required = parse_yes(_last(raw, "REQUIRE_SOURCE", "REQUIRE_SOURCE_ADDRESS"))
        assert fwknopd["REQUIRE_SOURCE_ADDRESS"] == ("Yes" if required else "No"), where
        key_length = _key_length(raw, "KEY", "KEY_BASE64")
        if _last(raw, "ENCRYPTION_MODE").lower() == "legacy":
            key_length = min(key_length, 16)  # fwknopd's legacy mode cuts the key (refused here)
        assert int(fwknopd["KEY_LEN"]) == key_length, where
        assert int(fwknopd["HMAC_KEY_LEN"]) == _key_length(raw, "HMAC_KEY", "HMAC_KEY_BASE64")
        door = check.door
        if door is None:
            continue  # left out: what it says is compared above
        assert int(fwknopd["HMAC_DIGEST_TYPE"]) == DIGEST_NUMBERS[door.hmac_digest], where
        assert int(fwknopd["FW_ACCESS_TIMEOUT"]) == door.open_for, where
        assert int(fwknopd["MAX_FW_TIMEOUT"]) == door.max_open_for, where
        assert door.require_source_address == required, where
        if door.expires is None:
            assert fwknopd["ACCESS_EXPIRE"] == "<not set>", where
        else:
            refused_from = datetime.strptime(fwknopd["ACCESS_EXPIRE"], "%a %b %d %H:%M:%S %Y")
            # fwknopd prints when it refuses from: the day after the last one let in.
            assert refused_from.date() == door.expires + timedelta(days=1), where


class _Disk:
    def read(self, path: PurePosixPath) -> str:
        return Path(path).read_text()

    def list_dir(self, folder: PurePosixPath) -> list[str]:
        return os.listdir(folder)


def test_includes_and_line_quirks_are_read_as_fwknopd_reads_them(lab: Lab, tmp_path: Path) -> None:
    """%include, %include_folder and %include_keys, a stanza going on after an include, the
    `KEYWORD:` form, a `;` ending a value, an indented comment, a repeated keyword."""
    keys, hmac = "PmQcsrw6tchXTho3Y0E42rNCzT3X8+iQseJm0LNzumI=", "c2VjcmV0LWhtYWMta2V5"
    conf = tmp_path / "conf"
    (conf / "access.d").mkdir(parents=True)
    (conf / "keys").write_text(f"KEY_BASE64 {keys}\nHMAC_KEY_BASE64 {hmac}\nOPEN_PORTS tcp/9\n")
    (conf / "more.conf").write_text(
        f"SOURCE 198.18.2.0/24\nOPEN_PORTS tcp/80;tcp/81\n%include_keys {conf / 'keys'}\n"
    )
    (conf / "access.d" / "a.conf").write_text(
        "SOURCE: 198.18.3.0/24\n   # indented\nOPEN_PORTS   udp/53 \n"
        f"%include_keys {conf / 'keys'}\n"
    )
    main = (
        f"SOURCE ANY\nOPEN_PORTS tcp/22\n%include {conf / 'more.conf'}\n"
        f"%include_folder {conf / 'access.d'}\nOPEN_PORTS tcp/2222\n%include_keys {conf / 'keys'}\n"
    )
    (case := tmp_path / "case").mkdir()
    (case / "access.conf").write_text(main)
    for path in [*conf.rglob("*"), conf]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    status, dumped = fwknopd_reading(lab, tmp_path / "run-here", case / "access.conf")
    assert status == 0
    access = read_access_conf(main, "access.conf", _Disk())
    assert not access.errors
    assert [(s["SOURCE"], s["OPEN_PORTS"], s["KEY_LEN"]) for s in dumped] == [
        (raw.source.value, _last(raw, "OPEN_PORTS"), str(_key_length(raw, "KEY", "KEY_BASE64")))
        for raw in access.stanzas
    ]
    assert [s["OPEN_PORTS"] for s in dumped] == ["tcp/2222", "tcp/80", "udp/53"]
