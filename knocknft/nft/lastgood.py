"""The last-known-good ruleset: the script of the last successful apply, kept in the state dir.

Every apply that the kernel accepted (`knocknft apply`, the daemon's start and its reloads) keeps
its script as `state_dir/last-good.nft`. At boot `knocknft guard` loads it before the network
comes up, so the protected services are shut even when the daemon cannot start: knockd issue
#51, where a knockd that failed to start left the ports in whatever state they were.

Loading it again is safe while the table is up: the script only `add`s the sets, so open grants
and their remaining time survive (see knocknft.core.ruleset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from knocknft.core.ruleset import HEADER
from knocknft.errors import KnocknftError
from knocknft.files import DamagedFile, check_state_dir, read_text, set_aside, write_atomic
from knocknft.nft.libnft import Nft
from knocknft.nft.queries import read_grants, table_exists

LAST_GOOD_FILE = "last-good.nft"

# Every command of a script render_ruleset wrote: a verb, an object, then our table's name.
_COMMAND = re.compile(r"(?:add|flush|delete) (?:table|set|chain|rule) inet (\S+)(?: |$)")


class NotOurs(KnocknftError):
    """The file is not a ruleset knocknft saved, so loading it could touch other tables."""


def last_good_path(state_dir: Path) -> Path:
    return state_dir / LAST_GOOD_FILE


def save_last_good(state_dir: Path, script: str) -> Path:
    """Keep `script` for the boot guard, atomically, private (0600). Raises OSError
    (UnsafeStateDir, a PermissionError, for a state dir that cannot be trusted)."""
    check_state_dir(state_dir)
    path = last_good_path(state_dir)
    write_atomic(path, script, new_mode=0o600)
    return path


@dataclass(frozen=True)
class Guarded:
    """What `load_last_good` did."""

    path: Path
    table: str | None = None  # None: nothing saved yet, nothing loaded
    replaced: bool = False  # the table was already there (its grants were kept)
    grants_kept: int = 0


def load_last_good(nft: Nft, state_dir: Path) -> Guarded:
    """Load the saved script, if there is one, keeping the grants of a table already up.

    Raises UnsafeStateDir if the state dir cannot be trusted, OSError if the file exists but
    cannot be read, NotOurs if it is not a script knocknft saved (one that is not even text is
    set aside as damaged), NftError if the kernel refuses it.
    """
    path = last_good_path(state_dir)
    try:
        check_state_dir(state_dir, create=False)
    except FileNotFoundError:
        return Guarded(path)
    try:
        script = read_text(path)
    except FileNotFoundError:
        return Guarded(path)
    except DamagedFile as exc:
        aside = set_aside(path)
        raise NotOurs(
            f"{exc}: not a ruleset knocknft saved; "
            + (f"set aside as {aside.name}" if aside else "it could not be set aside")
            + "; nothing loaded: run `knocknft apply`"
        ) from exc
    table = saved_table(script)
    if table is None:
        raise NotOurs(
            f"{path} is not a ruleset knocknft saved (it must start with '{HEADER.strip()}' "
            "and every command must name one inet table); refusing to load it: remove it "
            "and run `knocknft apply`"
        )
    existed = table_exists(nft, table)
    nft.load_script(script)
    kept = len(read_grants(nft, table)) if existed else 0
    return Guarded(path, table, existed, kept)


def saved_table(script: str) -> str | None:
    """The one table a saved script installs; None if the script is not one of ours.

    Stricter than a header check: a file that names any other table (or flushes the ruleset)
    is refused, so the guard can never touch what is not ours, whatever lands in the file.
    """
    if not script.startswith(HEADER):
        return None
    tables = set()
    for line in script.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _COMMAND.match(line)
        if match is None:
            return None
        tables.add(match.group(1))
    return tables.pop() if len(tables) == 1 else None
