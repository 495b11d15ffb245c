"""The last-known-good ruleset: the script of the last successful apply, kept in the state dir.

Every apply that the kernel accepted (`knocknft apply`, the daemon's start and its reloads) keeps
its script as `state_dir/last-good.nft`. At boot `knocknft guard` loads it before the network
comes up, so the protected services are shut even when the daemon cannot start: knockd issue
#51, where a knockd that failed to start left the ports in whatever state they were.

Loading it again is safe while the table is up: the script only `add`s the sets, so open grants
and their remaining time survive (see knocknft.core.ruleset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from knocknft.core.ruleset import HEADER
from knocknft.core.transaction import Object, Rule, Table, Transaction
from knocknft.errors import KnocknftError
from knocknft.files import DamagedFile, check_state_dir, read_text, set_aside, write_atomic
from knocknft.nft.libnft import Nft
from knocknft.nft.queries import read_grants, table_exists
from knocknft.nft.script import parse_script

LAST_GOOD_FILE = "last-good.nft"

# Every command of a script render_ruleset wrote: a verb, an object, then our table's name.


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
    saved = saved_transaction(script)
    if saved is None:
        raise NotOurs(
            f"{path} is not a ruleset knocknft saved (it must start with '{HEADER.strip()}' "
            "and every command must name one inet table); refusing to load it: remove it "
            "and run `knocknft apply`"
        )
    table, tx = saved
    existed = table_exists(nft, table)
    nft.load_script(tx.render())
    kept = len(read_grants(nft, table)) if existed else 0
    return Guarded(path, table, existed, kept)


def saved_table(script: str) -> str | None:
    """The one table a saved script installs; None if the script is not one of ours."""
    saved = saved_transaction(script)
    return saved[0] if saved is not None else None


def saved_transaction(script: str) -> tuple[str, Transaction] | None:
    """The saved script as the transaction it must be, and its table; None if it is not ours.

    Stricter than any pattern over lines: the script must read back, line by line, into typed
    objects (every name, address, timeout and rule body checked as when it was built, so no
    `;` can smuggle in a second command), all of one inet table, and those objects must render
    to exactly the saved text. The guard then loads that rendering, never text it could not
    parse as ours.
    """
    if not script.startswith(HEADER):
        return None
    try:
        tx = parse_script(script)
    except (ValueError, TypeError):  # InvalidValue is a ValueError
        return None
    tables = {_table_of(op.obj) for op in tx.ops}
    if len(tables) != 1 or tx.render() != script:
        return None
    family, name = tables.pop()
    return (name, tx) if family == "inet" else None


def _table_of(obj: Object) -> tuple[str, str]:
    table = (
        obj if isinstance(obj, Table) else obj.chain.table if isinstance(obj, Rule) else obj.table
    )
    return table.family, table.name
