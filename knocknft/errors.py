"""The exception tree. Everything knocknft raises on purpose derives from KnocknftError; the classes
defined outside this module are named with theirs:

    KnocknftError
    ├── ConfigError        the config is invalid; carries every problem found, with file and line
    ├── UsageError         a command-line argument is wrong (bad address, unknown door)
    ├── NftError           libnftables refused a command or is missing
    │   ├── TableMissing   our table is not loaded (run `knocknft apply` first)
    │   ├── SetFull        an allowlist set holds as many elements as its size allows
    │   └── BatchRefused   the kernel refused a direct set-element batch as a whole
    │                      (knocknft.netlink.setelem): not one grant in it, the batch itself
    ├── InvalidValue       a value refused when an nft object is built (a bad name, comment,
    │                      address or timeout): it never reaches a script (also a ValueError)
    ├── NotOurs            a saved last-good file is not a ruleset knocknft wrote
    │                      (knocknft.nft.lastgood)
    ├── UnsafeStateDir     the state dir is a link, or owned or writable by another user
    │                      (knocknft.files)
    ├── NflogError         the kernel refused an NFLOG request (knocknft.netlink.nflog)
    │   └── NflogGroupBusy another socket owns the NFLOG group (knocknft.netlink.nflog)
    ├── DaemonFailed       `run -d`: the background daemon could not start (knocknft.daemon.detach)
    ├── AlreadyRunning     the pidfile names a knocknft still running (knocknft.daemon.detach)
    ├── TableBusy          another daemon holds the table's lock (knocknft.daemon.tablelock)
    ├── NothingPending     `confirm` found no `apply --confirm` to confirm (knocknft.admin.confirm)
    └── ConfirmPending     a plain `apply` while a confirmation is pending (knocknft.admin.confirm)

Adapters map their backends' failures into this tree at the boundary (`raise ... from exc`), so the
CLI can turn any of them into one clear message and an exit code. tests/unit/test_errors.py keeps
this list whole.
"""

from __future__ import annotations

from dataclasses import dataclass


class KnocknftError(Exception):
    """Base of every error knocknft raises on purpose."""


class InvalidValue(KnocknftError, ValueError):
    """A value knocknft.core.transaction will not put into an nft object. A ValueError too, so
    pure code that checks values keeps raising what Python code expects."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or doubtful) in a config file, located for the admin."""

    file: str
    line: int | None
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ConfigError(KnocknftError):
    """The config is invalid. `problems` lists every error found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class NftError(KnocknftError):
    """libnftables refused a command, or the binding is not installed."""


class TableMissing(NftError):
    """Our table is not in the kernel, so there is no set to read or write."""


class SetFull(NftError):
    """An allowlist set is full: the kernel adds no element until one leaves (ENFILE)."""


class BatchRefused(NftError):
    """The kernel refused a direct set-element batch as a whole, or refused a grant in a way that
    is not about that grant (not a full set): the encoding may be what it does not take."""


class UsageError(KnocknftError):
    """A command-line argument is wrong in a way the parser cannot see (an address, a door)."""
