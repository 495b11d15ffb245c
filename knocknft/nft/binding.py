"""Importing the distribution's nftables binding, and saying what is really wrong when that fails.

The binding is not on PyPI in a usable version: it comes with the distribution's libnftables
(Debian's python3-nftables), in the system's site-packages. A virtual environment made without
--system-site-packages does not see it although it is installed, so "install python3-nftables"
would send the admin after a package they have: the message names what was found where, and the
way to let this Python see it.
"""

from __future__ import annotations

import glob
import importlib
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from knocknft.errors import NftError

# Where distributions put the binding: Debian and Ubuntu's dist-packages, the site-packages of
# Fedora, Arch and others, for any Python 3.
SYSTEM_PATTERNS = (
    "/usr/lib/python3/dist-packages/nftables/__init__.py",
    "/usr/lib*/python3*/site-packages/nftables/__init__.py",
    "/usr/local/lib/python3*/dist-packages/nftables/__init__.py",
)


def find_system_binding(patterns: Sequence[str] = SYSTEM_PATTERNS) -> Path | None:
    """The folder of an installed nftables binding, if the system has one."""
    for pattern in patterns:
        for found in sorted(glob.glob(pattern)):
            return Path(found).parent
    return None


def missing_message(found: Path | None, executable: str, purelib: str) -> str:
    """What to tell the admin when `import nftables` found no module."""
    if found is None:
        return (
            "the nftables Python binding is missing: install your distribution's package "
            "(Debian and Ubuntu: apt install python3-nftables; Fedora: dnf install "
            "python3-nftables), which matches its libnftables"
        )
    return (
        f"the nftables Python binding is installed ({found}), but this Python ({executable}) "
        "does not see it: a virtual environment made without --system-site-packages hides the "
        f"system's packages. Link the binding in: ln -s {found} {purelib}/nftables (what "
        "`make venv` does), or make the environment with --system-site-packages, or install "
        "knocknft with `make install` or the Debian package"
    )


def import_nftables() -> ModuleType:
    """The `nftables` module, or an NftError that says why it cannot be imported."""
    try:
        module = importlib.import_module("nftables")
    except ModuleNotFoundError as exc:
        if exc.name != "nftables":
            raise NftError(f"the nftables Python binding cannot be imported: {exc}") from exc
        found = find_system_binding()
        purelib = sysconfig.get_path("purelib")
        raise NftError(missing_message(found, sys.executable, purelib)) from exc
    except (ImportError, OSError) as exc:
        # Found, but broken: libnftables.so.1 missing, or a binding built for another Python.
        raise NftError(
            f"the nftables Python binding cannot be loaded: {exc}; reinstall python3-nftables "
            "and nftables (libnftables1) together"
        ) from exc
    return module
