"""access.conf and fwknopd.conf, read line by line as fwknopd 2.6 reads them (server/access.c
parse_access_file, server/config_init.c parse_config_file), so that an import sees the stanzas
fwknopd saw.

The line grammar, from fwknopd's `sscanf(line, "%s %[^;\\n\\r]", var, val)`:
- a line whose FIRST character is `#`, `;`, `\\r` or the end is skipped (fwknopd looks at that
  one character only); an indented `#` line is a comment here too (fwknopd reads it as an unknown
  keyword and ignores it), and so is a line of blanks (which stops fwknopd);
- the keyword is the first word, case-sensitive, with anything from its last `:` cut off
  (`SOURCE: ANY`); there is no `=`;
- the value is the rest of the line after the blanks, up to a `;` or the line's end, with its
  trailing blanks removed (as fwknopd after 2.6.10 does; 2.6.10 keeps them, which matters only
  in a KEY or HMAC_KEY, refused then as ambiguous): a `;` ends the value, whatever follows it
  is ignored;
- a line longer than fwknopd's 1023-character buffer, or with control characters, is refused
  here, where fwknopd would split it or cut it short.

access.conf: a stanza begins at each SOURCE; what comes before the first SOURCE of a file is
ignored (but %include and %include_folder); a keyword repeated in a stanza keeps its last value.
`%include FILE` and `%include_folder DIR` (its files whose name ends in `.conf...`, by name here:
fwknopd takes the directory's own order) read more stanzas, at most 3 files deep, and the stanza
of the including file goes on after them, as in fwknopd; `%include_keys FILE` adds a file's key
directives (KEY, HMAC_KEY, GPG_...) to the current stanza. Included paths must be absolute
(fwknopd opens them relative to its working directory).

Pure: included files are read through the `IncludeReader` given.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

from knocknft.errors import Problem

# C's isspace() in the C locale: what sscanf's %s and its blank directive know as white space.
C_SPACE = " \t\n\v\f\r"
_LINE_RE = re.compile(r"[ \t\n\v\f\r]*([^ \t\n\v\f\r]+)[ \t\n\v\f\r]*([^;\n\r]*)(.*)", re.DOTALL)
# fgets() into fwknopd's 1024-byte buffer: a longer line is read as two.
MAX_LINE_CHARS = 1022
# Control characters but the white space ones (tab, VT, FF, CR).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# fwknopd's MAX_DEPTH: the access.conf and two levels of includes under it.
MAX_INCLUDE_DEPTH = 3

INCLUDE = "%include"
INCLUDE_FOLDER = "%include_folder"
INCLUDE_KEYS = "%include_keys"
# What an %include_keys file may set; fwknopd ignores its other lines.
KEY_FILE_KEYWORDS = frozenset(
    {
        "KEY",
        "KEY_BASE64",
        "HMAC_KEY",
        "HMAC_KEY_BASE64",
        "GPG_DECRYPT_ID",
        "GPG_DECRYPT_PW",
        "GPG_ALLOW_NO_PW",
        "GPG_REQUIRE_SIG",
        "GPG_DISABLE_SIG",
        "GPG_IGNORE_SIG_VERIFY_ERROR",
        "GPG_REMOTE_ID",
        "GPG_FINGERPRINT_ID",
    }
)
# Every stanza keyword fwknopd 2.6.10 knows (but SOURCE, which begins one).
STANZA_KEYWORDS = KEY_FILE_KEYWORDS | {
    "DESTINATION",
    "OPEN_PORTS",
    "RESTRICT_PORTS",
    "HMAC_DIGEST_TYPE",
    "FW_ACCESS_TIMEOUT",
    "MAX_FW_TIMEOUT",
    "ENCRYPTION_MODE",
    "ENABLE_CMD_EXEC",
    "ENABLE_CMD_SUDO_EXEC",
    "CMD_SUDO_EXEC_USER",
    "CMD_SUDO_EXEC_GROUP",
    "CMD_EXEC_USER",
    "CMD_EXEC_GROUP",
    "CMD_CYCLE_OPEN",
    "CMD_CYCLE_CLOSE",
    "CMD_CYCLE_TIMER",
    "REQUIRE_USERNAME",
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "GPG_HOME_DIR",
    "GPG_EXE",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "FORWARD_ALL",
}
ACCESS_KEYWORDS = STANZA_KEYWORDS | {"SOURCE", INCLUDE, INCLUDE_FOLDER, INCLUDE_KEYS}


class IncludeReader(Protocol):
    """How the grammar reaches the files an access.conf includes: raises OSError when a file or
    folder cannot be read, ValueError saying why when a file's content cannot be taken."""

    def read(self, path: PurePosixPath) -> str: ...

    def list_dir(self, folder: PurePosixPath) -> list[str]: ...


@dataclass(frozen=True)
class Directive:
    """One `KEYWORD value` line, where it stands."""

    file: str
    line: int
    keyword: str
    value: str
    # Text after a `;` on the line, which fwknopd drops: worth saying when it is not blank.
    dropped: str = ""
    # Blanks cut from the value's end: fwknopd 2.6.10 (Debian's) keeps them, later ones cut them.
    blanks_cut: bool = False

    def problem(self, message: str, hint: str = "") -> Problem:
        return Problem(self.file, self.line, self.keyword, message, hint)


def read_directives(
    text: str, file: str, problems: list[Problem], *, keyword_colon: bool = True
) -> list[Directive]:
    """The directives of one file; a line fwknopd cannot read is a Problem in `problems`. With
    `keyword_colon` (access.conf), a keyword's last `:` and what follows it are cut off."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it opens no new one
    directives = []
    for number, line in enumerate(lines, start=1):
        if not line or line[0] in "#;\r":
            continue
        control = _CONTROL.search(line)
        if control is not None:
            problems.append(
                Problem(
                    file,
                    number,
                    "",
                    f"control character U+{ord(control.group()):04X} in a line",
                    "fwknopd's files are plain text; remove it",
                )
            )
            continue
        if len(line.rstrip("\r")) > MAX_LINE_CHARS:
            problems.append(
                Problem(
                    file,
                    number,
                    "",
                    f"the line is longer than {MAX_LINE_CHARS} characters: fwknopd reads the "
                    "rest of it as another line",
                    "shorten it",
                )
            )
            continue
        match = _LINE_RE.match(line)
        if match is None or match.group(1).startswith("#"):
            continue  # blank, or an indented comment
        word, text, rest = match.groups()
        keyword = word[: word.rindex(":")] if keyword_colon and ":" in word else word
        value = text.rstrip(C_SPACE)
        if not value:
            problems.append(
                Problem(
                    file,
                    number,
                    keyword,
                    "no value (fwknopd: invalid entry; a `;` ends the value)",
                    f"write `{keyword} VALUE` on one line",
                )
            )
            continue
        dropped = rest.lstrip(";").strip(C_SPACE)
        directives.append(Directive(file, number, keyword, value, dropped, value != text))
    return directives


@dataclass
class RawStanza:
    """A stanza's lines, from its SOURCE: what `stanza.check_stanza` turns into a door."""

    number: int  # fwknopd's "stanza #N": counted from 1, in reading order, across includes
    source: Directive
    directives: list[Directive] = field(default_factory=list)


@dataclass(frozen=True)
class AccessConf:
    file: str
    stanzas: tuple[RawStanza, ...]
    # Lines fwknopd reads and then ignores (unknown keywords, lines before any SOURCE, an
    # %include_keys file's other lines): said as not mapped.
    ignored: tuple[Problem, ...]
    # Lines fwknopd would refuse to start with, or that cannot be read here: the import stops
    # on them, after checking the stanzas too, so that every error is said at once.
    errors: tuple[Problem, ...] = ()


def looks_like_access_conf(text: str) -> bool:
    """access.conf's first directive is one of its keywords (SOURCE, or an %include); knockd.conf
    opens with a [section] and YAML with `key:`."""
    problems: list[Problem] = []
    for directive in read_directives(text, "", problems):
        return directive.keyword.upper() in {k.upper() for k in ACCESS_KEYWORDS}
    return False


def read_access_conf(text: str, file: str, reader: IncludeReader | None = None) -> AccessConf:
    """access.conf's stanzas, with fwknopd's grammar, and (in `errors`) every line fwknopd would
    refuse to start with, or that cannot be read here."""
    state = _Reading(reader)
    state.read_file(text, file, 1)
    if not state.problems and not state.stanzas:
        state.problems.append(
            Problem(
                file,
                None,
                "",
                "no stanza: fwknopd needs at least one, each beginning with SOURCE",
                "add e.g. SOURCE ANY, OPEN_PORTS tcp/22, KEY_BASE64 and HMAC_KEY_BASE64 lines",
            )
        )
    return AccessConf(file, tuple(state.stanzas), tuple(state.ignored), tuple(state.problems))


def _case_hint(keyword: str, known: Sequence[str]) -> str | None:
    """The keyword fwknopd knows that this one is in another case, if any."""
    return next((k for k in known if k.upper() == keyword.upper() and k != keyword), None)


@dataclass
class _Reading:
    reader: IncludeReader | None
    stanzas: list[RawStanza] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[Problem] = field(default_factory=list)

    def read_file(self, text: str, file: str, depth: int) -> None:
        current: RawStanza | None = None
        for directive in read_directives(text, file, self.problems):
            keyword = directive.keyword
            proper = _case_hint(keyword, sorted(ACCESS_KEYWORDS))
            if proper is not None:
                self.problems.append(
                    directive.problem(
                        f"fwknopd reads keywords as written, in capitals: it ignored this line, "
                        f"which is not {proper}",
                        f"write {proper} (or delete the line) and import again",
                    )
                )
            elif keyword in (INCLUDE, INCLUDE_FOLDER):
                self._include(directive, depth)
            elif keyword == "SOURCE":
                current = RawStanza(len(self.stanzas) + 1, directive)
                self.stanzas.append(current)
            elif current is None:
                self.ignored.append(
                    directive.problem(
                        "before the first SOURCE of its file: fwknopd ignores it",
                        "a stanza begins with SOURCE",
                    )
                )
            elif keyword == INCLUDE_KEYS:
                self._include_keys(directive, current)
            elif keyword in STANZA_KEYWORDS:
                current.directives.append(directive)
            else:
                close = difflib.get_close_matches(keyword, sorted(ACCESS_KEYWORDS), n=1)
                self.ignored.append(
                    directive.problem(
                        "not a keyword of fwknopd 2.6: it ignores the line",
                        f"did you mean {close[0]}?" if close else "",
                    )
                )

    def _path(self, directive: Directive) -> PurePosixPath | None:
        path = PurePosixPath(directive.value)
        if not path.is_absolute():
            self.problems.append(
                directive.problem(
                    f"{directive.value!r} is not an absolute path: fwknopd opens it from its "
                    "working directory, which this import cannot know",
                    "give the full path, from /",
                )
            )
            return None
        if self.reader is None:
            self.problems.append(directive.problem("included files are not read here"))
            return None
        return path

    def _read(self, directive: Directive, path: PurePosixPath) -> str | None:
        assert self.reader is not None  # checked by _path
        try:
            return self.reader.read(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
        except ValueError as exc:
            reason = str(exc)
        self.problems.append(directive.problem(f"cannot read {path}: {reason}"))
        return None

    def _include(self, directive: Directive, depth: int) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            self.problems.append(
                directive.problem(
                    f"an include {MAX_INCLUDE_DEPTH} files deep: fwknopd refuses to go deeper",
                    "include the file from access.conf itself",
                )
            )
            return
        path = self._path(directive)
        if path is None:
            return
        if directive.keyword == INCLUDE:
            files = [path]
        else:
            assert self.reader is not None  # checked by _path
            try:
                names = self.reader.list_dir(path)
            except OSError as exc:
                self.problems.append(
                    directive.problem(f"cannot list {path}: {exc.strerror or exc}")
                )
                return
            files = [path / name for name in sorted(names) if is_conf_name(name)]
        for included in files:
            text = self._read(directive, included)
            if text is not None:
                self.read_file(text, str(included), depth + 1)

    def _include_keys(self, directive: Directive, stanza: RawStanza) -> None:
        path = self._path(directive)
        text = None if path is None else self._read(directive, path)
        if path is None or text is None:
            return
        for key in read_directives(text, str(path), self.problems):
            if key.keyword in KEY_FILE_KEYWORDS:
                stanza.directives.append(key)
            else:
                self.ignored.append(
                    key.problem("fwknopd takes only keys from an %include_keys file: ignored")
                )


def is_conf_name(name: str) -> bool:
    """A file %include_folder reads: fwknopd takes the part of the name from its last dot and
    compares its first five characters with `.conf`."""
    return "." in name and name[name.rindex(".") :].startswith(".conf")
