"""How `knocknft status` shows the grants and bans to people: one row each, times as 1h02m03s."""

from __future__ import annotations

from knocknft.config import format_seconds
from knocknft.core.bans import Ban
from knocknft.core.grants import Grant


def format_table(grants: list[Grant]) -> str:
    """The human form of `knocknft status`: one row per grant."""
    if not grants:
        return "no open grants\n"
    rows = [("ADDRESS", "DOOR", "SERVICE", "EXPIRES IN")]
    rows += [(str(g.address), g.door, str(g.service), format_seconds(g.expires)) for g in grants]
    return _columns(rows)


def format_bans(bans: list[Ban]) -> str:
    """The banned sources, after the grants; nothing at all when there are none."""
    if not bans:
        return ""
    rows = [("BANNED", "DOOR", "DENIED", "EXPIRES IN")]
    rows += [(str(b.address), b.door, b.scope, format_seconds(b.expires)) for b in bans]
    return "\n" + _columns(rows)


def _columns(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
        for row in rows
    )
