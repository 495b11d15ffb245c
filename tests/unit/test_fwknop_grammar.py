"""access.conf and fwknopd.conf read as fwknopd reads them (server/access.c, config_init.c), the
values as fwknopd takes them, and a fuzz test: whatever the text, the importer ends in YAML or in
a ConfigError whose every problem is located, never in another exception."""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import PurePosixPath

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knocknft.config import Invalid, PortSpec
from knocknft.errors import ConfigError
from knocknft.fwknop.daemonconf import looks_like_fwknopd_conf, read_fwknopd_conf
from knocknft.fwknop.grammar import (
    ACCESS_KEYWORDS,
    AccessConf,
    is_conf_name,
    looks_like_access_conf,
    read_access_conf,
)
from knocknft.fwknop.values import (
    decode_base64,
    last_day_before_date,
    last_day_before_epoch,
    parse_networks,
    parse_ports,
    translate_command,
)
from knocknft.fwknop.writer import import_fwknop

KEY = "PmQcsrw6tchXTho3Y0E42rNCzT3X8+iQseJm0LNzumI="
HMAC = "5Cv5ByfFG/zcutH4EtvzzvBfuR6u/rQ0mmL7gdOCq9b3sLsUjIv83pE+3H3PBKhdDKs+rvMldtYvBpYYXiJTDw=="
KEYS = f"KEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n"


class FakeFiles:
    """Included files in memory: path -> text; a folder is every path under it."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read(self, path: PurePosixPath) -> str:
        if str(path) not in self.files:
            raise FileNotFoundError(2, "No such file or directory")
        return self.files[str(path)]

    def list_dir(self, folder: PurePosixPath) -> list[str]:
        names = [p[len(str(folder)) + 1 :] for p in self.files if p.startswith(f"{folder}/")]
        if not names:
            raise FileNotFoundError(2, "No such file or directory")
        return names


def conf(text: str, files: dict[str, str] | None = None) -> AccessConf:
    return read_access_conf(text, "access.conf", FakeFiles(files or {}))


def doors(text: str, files: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    result = import_fwknop(conf(text, files), None)
    loaded: dict[str, dict[str, dict[str, object]]] = yaml.safe_load(result.yaml)
    return loaded["doors"]


def errors(text: str, files: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        import_fwknop(conf(text, files), None)
    return [str(p) for p in caught.value.problems]


def test_the_line_grammar_is_fwknopds() -> None:
    text = (
        "# comment\n"
        "   # an indented comment\n"
        "; a line starting with ; is skipped\n"
        "\n"
        "   \t\n"
        "SOURCE:\t198.18.0.0/24 \r\n"  # KEYWORD: form, CRLF
        "OPEN_PORTS   tcp/22;udp/53\n"  # a ; ends the value
        f"{KEYS}"
    )
    stanza = conf(text).stanzas[0]
    assert (stanza.source.line, stanza.source.keyword, stanza.source.value) == (
        6,
        "SOURCE",
        "198.18.0.0/24",
    )
    ports = stanza.directives[0]
    assert (ports.value, ports.dropped) == ("tcp/22", "udp/53")
    assert doors(text)["fwknop-1"]["open"] == ["22/tcp"]


def test_what_fwknopd_ignores_is_said_as_not_mapped() -> None:
    read = conf(f"OPEN_PORTS tcp/22\nSOURCE ANY\nOPEN_PORT tcp/22\n{KEYS}")
    assert [(p.line, p.key) for p in read.ignored] == [(1, "OPEN_PORTS"), (3, "OPEN_PORT")]
    assert "before the first SOURCE" in read.ignored[0].message
    assert read.ignored[1].hint == "did you mean OPEN_PORTS?"


def test_a_keyword_in_the_wrong_case_is_an_error_not_a_silent_skip() -> None:
    # fwknopd's strcmp() skips `source`: the lines after it would join the stanza before.
    assert errors(f"SOURCE ANY\nOPEN_PORTS tcp/22\n{KEYS}source 198.18.0.0/24\n") == [
        "access.conf:5: source: fwknopd reads keywords as written, in capitals: it ignored "
        "this line, which is not SOURCE\n    hint: write SOURCE (or delete the line) and import "
        "again"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("KEY_BASE64", "no value"),
        ("KEY_BASE64 ;x", "no value"),
        ("OPEN_PORTS tcp/22\x00", "control character U+0000"),
        ("OPEN_PORTS " + "tcp/22," * 200, "longer than 1022 characters"),
    ],
)
def test_lines_fwknopd_cannot_read_are_errors_at_their_line(line: str, message: str) -> None:
    (problem,) = errors(f"SOURCE ANY\n{KEYS}{line}\n")
    assert problem.startswith("access.conf:4:") and message in problem


def test_a_repeated_keyword_keeps_its_last_value_and_key_forms_replace_each_other() -> None:
    door = doors(f"SOURCE ANY\nOPEN_PORTS tcp/22\nOPEN_PORTS tcp/2222\nKEY text\n{KEYS}")
    assert door["fwknop-1"]["open"] == ["2222/tcp"]
    assert door["fwknop-1"]["fwknop"]["key_base64"] == KEY  # type: ignore[index]


def test_includes_read_stanzas_and_the_including_stanza_goes_on_after_them() -> None:
    files = {
        "/etc/fwknop/more.conf": f"SOURCE 198.18.1.0/24\nOPEN_PORTS tcp/80\n{KEYS}",
        "/etc/fwknop/keys": f"{KEYS}OPEN_PORTS tcp/99\n",
    }
    text = (
        "SOURCE ANY\nOPEN_PORTS tcp/22\n%include /etc/fwknop/more.conf\n"
        "%include_keys /etc/fwknop/keys\n"
    )
    read = conf(text, files)
    assert [s.number for s in read.stanzas] == [1, 2]
    assert [(p.file, p.line) for p in read.ignored] == [("/etc/fwknop/keys", 3)], "keys only"
    result = doors(text, files)
    assert result["fwknop-1"]["open"] == ["22/tcp"]
    assert result["fwknop-2"]["open"] == ["80/tcp"]


def test_include_folder_takes_conf_names_in_name_order() -> None:
    assert [is_conf_name(n) for n in ("a.conf", "b.conf~", "c.txt", "conf", "x.conf.bak")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    files = {
        f"/etc/fwknop/d/{name}": f"SOURCE 198.18.{n}.0/24\nOPEN_PORTS tcp/22\n{KEYS}"
        for n, name in enumerate(("b.conf", "a.conf", "skip.txt"))
    }
    result = doors("%include_folder /etc/fwknop/d/\n", files)
    assert [d["fwknop"]["source"] for d in result.values()] == [  # type: ignore[index]
        ["198.18.1.0/24"],
        ["198.18.0.0/24"],
    ]


def test_include_depth_relative_paths_and_missing_files_are_errors() -> None:
    loop = {"/a": "%include /b\n", "/b": "%include /a\n"}
    assert any("3 files deep" in p for p in errors("%include /a\n", loop))
    assert any("not an absolute path" in p for p in errors("%include more.conf\nSOURCE ANY\n"))
    assert any("cannot read /none" in p for p in errors("SOURCE ANY\n%include_keys /none\n"))


def test_telling_the_files_apart() -> None:
    assert looks_like_access_conf("# x\nSOURCE ANY\n")
    assert looks_like_access_conf("%include /etc/fwknop/a.conf\n")
    assert not looks_like_access_conf("[options]\nUseSyslog\n")
    assert not looks_like_access_conf("doors:\n  a: {}\n")
    assert looks_like_fwknopd_conf("PCAP_INTF eth0;\n")
    assert not looks_like_fwknopd_conf("SOURCE ANY\n")


def test_fwknopd_conf_keeps_the_last_setting_and_no_colon_form() -> None:
    read = read_fwknopd_conf("PCAP_INTF eth0;\nPCAP_INTF ens3;\nVERBOSE: 1\n", "fwknopd.conf")
    assert read.settings["PCAP_INTF"].value == "ens3"
    assert "VERBOSE:" in read.settings


@pytest.mark.parametrize(
    ("text", "networks"),
    [
        ("ANY", None),
        ("any, 198.18.0.1", None),
        ("198.18.0.1", ("198.18.0.1/32",)),
        ("198.18.0.77/24, 198.18.1.0/255.255.255.0", ("198.18.0.0/24", "198.18.1.0/24")),
    ],
)
def test_source(text: str, networks: tuple[str, ...] | None) -> None:
    parsed = parse_networks(text)
    assert parsed == (None if networks is None else tuple(map(ipaddress.IPv4Network, networks)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("198.18.0.0/0", "'0' is not a mask"),
        ("198.18.0.0/255.0.255.0", "is not a mask"),
        ("010.0.0.1", "fwknopd reads a leading 0 as octal"),
        ("2001:db8::1", "not an IPv4 address"),
        ("198.18.0.1,", "'' is not an IPv4"),
    ],
)
def test_source_fwknopd_refuses(text: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_networks(text)
    assert message in caught.value.message


def test_ports() -> None:
    assert parse_ports("TCP/22, udp/53,tcp/22") == (PortSpec(22), PortSpec(53, "udp"))
    for bad in ("22/tcp", "tcp/0", "tcp/65536", "icmp/8", "tcp/22,"):
        with pytest.raises(Invalid):
            parse_ports(bad)


def test_base64_is_decoded_as_fwknop_does() -> None:
    assert decode_base64("aGVsbG8=") == b"hello"
    assert decode_base64("aGVsbG8") == b"hello", "unpadded"
    assert decode_base64("aGVsbG8=junk") == b"hello", "fwknop stops at the first ="
    for bad in ("__CHANGEME__", "__changeme__", "a-b_c"):
        with pytest.raises(Invalid):
            decode_base64(bad)


def test_expiry_dates() -> None:
    assert last_day_before_date("06/30/2027")[0] == date(2027, 6, 29)
    assert last_day_before_date("1/1/27")[0] == date(2026, 12, 31), "a two-digit year is 20YY"
    for bad in ("2027-06-30", "02/30/2027", "13/01/2027", "06/30/1800"):
        with pytest.raises(Invalid):
            last_day_before_date(bad)
    assert last_day_before_epoch("1830297600")[0] == date(2027, 12, 31)  # 2028-01-01 00:00 UTC
    assert last_day_before_epoch("1830340800")[0] == date(2027, 12, 31)  # noon: cut to the day
    assert last_day_before_epoch("0")[0] is None, "fwknopd: no expiry"


def test_commands() -> None:
    assert translate_command("/sbin/allow $IP $SRC").text == "/sbin/allow %IP% %IP%"
    assert translate_command("/sbin/allow $IPX").text == "/sbin/allow %IP%X", "a prefix match"
    dropped = translate_command("echo $HOME")
    assert dropped.text == "echo HOME" and "dropped the `$`" in dropped.notes[0]
    quoted = translate_command("logger a>b $IP")
    assert quoted.text == "logger 'a>b' %IP%" and "without a shell" in quoted.notes[0]
    for refused in ("x $PORT", "x $PKT_SRC", "x $DST", "x $PROTO", "x $TIMEOUT", "x " * 130):
        with pytest.raises(Invalid):
            translate_command(refused)


def test_timeouts_and_their_defaults() -> None:
    base = f"SOURCE ANY\nOPEN_PORTS tcp/22\n{KEYS}"
    assert doors(base)["fwknop-1"]["open_for"] == "30s"
    door = doors(base + "FW_ACCESS_TIMEOUT 600\nMAX_FW_TIMEOUT 60\n")["fwknop-1"]
    assert (door["open_for"], door["max_open_for"]) == ("1m", "1m"), "the shorter of the two"
    door = doors(base + "FW_ACCESS_TIMEOUT 8388608\nMAX_FW_TIMEOUT 8388608\n")["fwknop-1"]
    assert (door["open_for"], door["max_open_for"]) == ("7d", "7d"), "knocknft's longest"


def test_restrict_ports_is_taken_out_of_open_ports() -> None:
    base = f"SOURCE ANY\nOPEN_PORTS tcp/22, tcp/80\n{KEYS}"
    assert doors(base + "RESTRICT_PORTS tcp/80\n")["fwknop-1"]["open"] == ["22/tcp"]
    assert any(
        "takes away every port" in e for e in errors(base + "RESTRICT_PORTS tcp/80,tcp/22\n")
    )


def test_a_passphrase_key_ending_in_blanks_is_ambiguous() -> None:
    (problem,) = errors(
        f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY pass phrase \nHMAC_KEY_BASE64 {HMAC}\n"
    )
    assert problem.startswith("access.conf:3: KEY: the key ends in blanks")
    assert "pass phrase" not in problem


def test_a_key_too_long_for_fwknops_clients_refuses_the_stanza() -> None:
    problems = errors(f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY {'k' * 33}\nHMAC_KEY_BASE64 {HMAC}\n")
    assert "access.conf:3: stanza #1 KEY: the key is 33 bytes" in problems[0]


# Text built from access.conf's own pieces, so that fuzzing reaches the value parsers.
_PIECES = (
    *("ANY", "tcp/22", "udp/0", KEY, HMAC, "__CHANGEME__", "Y", "N", "30", "-1", "NONE"),
    *("198.18.0.0/24", "1.2.3.4/255.0.255.0", "2001:db8::1", "06/30/2027", "$IP", "$PORT"),
    *(";", ":", ",", "#", "%include", "/x", "\t", "\u00a0", "\x00", "\r"),
)
_WORDS = st.sampled_from([*sorted(ACCESS_KEYWORDS), *_PIECES])
_LINES = st.lists(st.lists(_WORDS | st.text(max_size=8), max_size=5).map(" ".join), max_size=25)


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_any_text_imports_or_fails_with_located_problems(lines: list[str]) -> None:
    text = "\n".join(lines)
    files = {"/x": text}
    try:
        result = import_fwknop(conf(text, files), read_fwknopd_conf(text, "fwknopd.conf"))
    except ConfigError as exc:
        assert exc.problems and all(p.file for p in exc.problems)
        # The writer parses its own output: a problem there is a bug, never the input's fault.
        assert all(p.file != "<imported>" for p in exc.problems), exc
        return
    assert isinstance(yaml.safe_load(result.yaml)["doors"], dict)
