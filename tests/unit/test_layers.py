"""The layers the package docstrings promise, checked from the import graph.

Read from the source (every import, also those inside functions), not by importing: a pure module
that reaches a socket, a process or a file through another module would pass a runtime check
that only looks at what one module imports itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "knocknft"

# What decides, with no I/O: the engine, decide, the renderer and transactions, the config model
# and its parsers, knockd.conf's and fwknop's grammars and their importers, SPA's codecs and
# verifier.
PURE_PACKAGES = (
    "knocknft.core",
    "knocknft.config",
    "knocknft.knockd",
    "knocknft.fwknop",
    "knocknft.spa",
)
PURE_MODULES = ("knocknft.errors", "knocknft")
# The one place of the pure layers that reads a file when called (the config, a door's one-time
# sequences), through pathlib; parsing takes an injected reader, so tests never touch a disk.
FILE_READERS = ("knocknft.config.loader",)
# ... and `os` for it: a one-time file is opened without following a link (O_NOFOLLOW) and
# checked on the open descriptor (fstat), which pathlib cannot do.
FILE_READER_IO = frozenset({"os"})
# Calls that read or write files.
FILE_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "unlink"})

# Modules that do I/O or reach the kernel, processes, threads, time or logging handlers.
IO_MODULES = frozenset(
    {
        "asyncio",
        "ctypes",
        "fcntl",
        "io",
        "logging",
        "multiprocessing",
        "nftables",
        "os",
        "pyroute2",
        "select",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "subprocess",
        "tempfile",
        "threading",
        "time",
    }
)

# The packages above the SPA codecs, the config and the fwknop importer: none may import them.
_UPPER_LAYERS = (
    "knocknft.core",
    "knocknft.netlink",
    "knocknft.nft",
    "knocknft.daemon",
    "knocknft.admin",
    "knocknft.knockd",
    "knocknft.fwknop",
    "knocknft.client",
)

# package -> the knocknft packages it must never import (the docstrings' "may import").
FORBIDDEN = {
    "knocknft.core": ("knocknft.netlink", "knocknft.nft", "knocknft.daemon", "knocknft.admin"),
    "knocknft.config": (*_UPPER_LAYERS, "knocknft.spa"),
    "knocknft.spa": _UPPER_LAYERS,
    "knocknft.netlink": ("knocknft.nft", "knocknft.daemon", "knocknft.admin"),
    "knocknft.nft": ("knocknft.daemon", "knocknft.admin"),
    "knocknft.daemon": ("knocknft.admin",),
    "knocknft.knockd": ("knocknft.netlink", "knocknft.nft", "knocknft.daemon", "knocknft.admin"),
    "knocknft.fwknop": (*(p for p in _UPPER_LAYERS if p != "knocknft.fwknop"), "knocknft.spa"),
    "knocknft.client": tuple(p for p in _UPPER_LAYERS if p != "knocknft.client"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> Iterator[str]:
    """Every module `name` imports, absolute; `from pkg import sub` names the submodule too."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"


def reach(start: str) -> dict[str, str]:
    """Every knocknft module `start` imports, directly or not: module -> who imported it."""
    seen: dict[str, str] = {start: start}
    todo = [start]
    while todo:
        current = todo.pop()
        for target in imports_of(current):
            # Importing knocknft.a.b runs knocknft/__init__ and knocknft/a/__init__ first.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in MODULES and prefix not in seen:
                    seen[prefix] = current
                    todo.append(prefix)
    return seen


def is_pure(name: str) -> bool:
    return name in PURE_MODULES or any(name == p or name.startswith(p + ".") for p in PURE_PACKAGES)


PURE = sorted(name for name in MODULES if is_pure(name))


def test_the_pure_set_is_what_the_docstrings_say() -> None:
    # A renamed package must not silently empty the check below.
    assert "knocknft.core.engine" in PURE
    assert "knocknft.core.ruleset" in PURE
    assert "knocknft.config" in PURE
    assert "knocknft.spa.request" in PURE


@pytest.mark.parametrize("name", PURE)
def test_a_pure_module_reaches_no_io(name: str) -> None:
    for module, importer in reach(name).items():
        assert is_pure(module), f"{name} reaches {module} (imported by {importer}), which does I/O"
        io = {m for m in imports_of(module) if m.split(".")[0] in IO_MODULES}
        if module in FILE_READERS:
            io -= FILE_READER_IO
        assert not io, f"{name} reaches {module}, which imports {sorted(io)}"


@pytest.mark.parametrize("name", PURE)
def test_a_pure_module_touches_no_file(name: str) -> None:
    if name in FILE_READERS:
        return
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
    }
    assert not calls & FILE_CALLS, f"{name} calls {sorted(calls & FILE_CALLS)}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    for name in MODULES:
        if name != package and not name.startswith(package + "."):
            continue
        for target in imports_of(name):
            for banned in FORBIDDEN[package]:
                assert target != banned and not target.startswith(banned + "."), (
                    f"{name} imports {target}: {package} may not import {banned}"
                )


def test_the_product_never_imports_test_plumbing() -> None:
    for name in MODULES:
        for target in imports_of(name):
            top = target.split(".")[0]
            assert top not in ("knocklab", "tests", "bench", "scripts"), f"{name} imports {target}"
