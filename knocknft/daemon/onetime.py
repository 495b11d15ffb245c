"""Marking a used one-time sequence in its file, in knockd's format: the first character of the
used line is overwritten with `#`, in place, so the file keeps its size and line numbers.
"""

from __future__ import annotations

import os
from pathlib import Path


def mark_used(path: Path, line: int) -> None:
    """Overwrite the first character of line `line` (1-based) with '#'."""
    with open(path, "r+b") as handle:
        data = handle.read()
        offset = 0
        for _ in range(line - 1):
            newline = data.find(b"\n", offset)
            if newline < 0:
                raise OSError(f"{path} has no line {line}")
            offset = newline + 1
        if offset >= len(data) or data[offset : offset + 1] == b"\n":
            raise OSError(f"line {line} of {path} is empty")
        handle.seek(offset)
        handle.write(b"#")
        handle.flush()
        os.fsync(handle.fileno())
