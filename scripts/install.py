"""`make install` (and the tree `make deb` packs): knocknft installed for running, not developing.

    python -m scripts.install [--destdir D] [--prefix /usr/local] [--sysconfdir /etc] [--debian]
    python -m scripts.install --uninstall [--prefix ...]   (make uninstall: all but the config)

Layout, PREFIX being /usr/local (make install) or /usr (the Debian package):
    PREFIX/lib/knocknft/                 knocknft and its Python dependencies, private to it
    PREFIX/bin/knocknft, knocknft-knock  the commands: the system's Python 3, that folder first
    PREFIX/lib/systemd/system/           knocknft.service, knocknft-guard.service (paths filled in)
    PREFIX/lib/tmpfiles.d/knocknft.conf  /var/lib/knocknft, 0700
    PREFIX/share/man/man{1,5,8}/         knocknft-knock(1), knocknft.yaml(5), knocknft(8)
    PREFIX/share/bash-completion/completions/, PREFIX/share/zsh/{site-functions,vendor-completions}/
    PREFIX/share/knocknft/knocknft.schema.json, PREFIX/share/doc/knocknft/
    SYSCONFDIR/knocknft/config.yaml      from config.example.yaml, never over an existing one

The dependencies are private because distributions' typer and pyroute2 are older than knocknft's
(Debian 12: typer 0.7, pyroute2 0.7.2), and pip must not write into the system's site-packages.
The nftables binding is the one dependency taken from the system, where it matches libnftables:
the commands run the system's Python, which sees it. No tests, linters or lab are installed.
With --debian, the dependencies Debian packages as well (pyyaml, cryptography: see DEBIAN_PROVIDED)
are left to Debian, so that its security updates reach them.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.gendocs import KNOCK_NAME, generate

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
# PyPI distribution -> the Debian package that provides it (the package's Depends), or None
# for one that comes along with another (cryptography's cffi).
DEBIAN_PROVIDED: dict[str, str | None] = {
    "pyyaml": "python3-yaml (>= 6.0)",
    "cryptography": "python3-cryptography (>= 38)",
    "cffi": None,
    "pycparser": None,
}
COMMANDS = {"knocknft": "knocknft.admin.cli", KNOCK_NAME: "knocknft.client.knock"}

WRAPPER = '''\
#!{python} -I
"""{name}: knocknft installed with its dependencies in {libdir}, ahead of the system's
site-packages, which still give the distribution's nftables binding (and, in the Debian package,
pyyaml and cryptography). -I: no PYTHONPATH, no user site, no current directory."""
import sys

# Nothing is written under {libdir}: the package manager owns every file there.
sys.dont_write_bytecode = True
sys.path.insert(0, "{libdir}")
from {module} import main  # noqa: E402

sys.exit(main())
'''


@dataclass(frozen=True)
class Layout:
    destdir: Path
    prefix: Path
    sysconfdir: Path
    debian: bool = False
    python: str = SYSTEM_PYTHON

    def staged(self, path: Path) -> Path:
        """Where `path` of the installed system is written now: below DESTDIR."""
        return self.destdir / path.relative_to("/")

    @property
    def libdir(self) -> Path:
        return self.prefix / "lib" / "knocknft"

    @property
    def bindir(self) -> Path:
        return self.prefix / "bin"

    @property
    def docdir(self) -> Path:
        return self.prefix / "share" / "doc" / "knocknft"

    @property
    def config(self) -> Path:
        return self.sysconfdir / "knocknft" / "config.yaml"

    @property
    def zshdir(self) -> Path:
        # Debian's zsh reads vendor-completions; upstream zsh's default fpath has site-functions.
        name = "vendor-completions" if self.debian else "site-functions"
        return self.prefix / "share" / "zsh" / name


def render_unit(text: str, layout: Layout) -> str:
    """A unit of packaging/systemd with its paths filled in."""
    return text.replace("@BINDIR@", str(layout.bindir)).replace("@DOCDIR@", str(layout.docdir))


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)


def install_libraries(layout: Layout, wheel: Path) -> None:
    """knocknft's wheel and its dependencies into the private folder, replacing what was there
    (a module left from an older version would still be importable)."""
    target = layout.staged(layout.libdir)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-warn-script-location",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    shutil.rmtree(target / "bin", ignore_errors=True)  # pip's entry points; ours are below
    if layout.debian:
        # Compiled by the package's postinst instead, so that dpkg owns no .pyc.
        drop_distributions(target, DEBIAN_PROVIDED)
        return
    # Compiled now, for the installed path: the commands write no bytecode, and without it each
    # start compiles everything again (a second or so).
    subprocess.run(
        [layout.python, "-m", "compileall", "-q", "-j", "0", "-s", str(layout.destdir), "-p", "/",
         str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def drop_distributions(target: Path, names: dict[str, str | None]) -> None:
    """Remove these distributions' files (by their RECORD) from a pip --target folder."""
    for dist in importlib.metadata.distributions(path=[str(target)]):
        if dist.metadata["Name"].lower() not in names:
            continue
        for file in dist.files or ():
            (target / file).unlink(missing_ok=True)
    # Folders the removals emptied, and caches.
    for folder in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and (folder.name == "__pycache__" or not any(folder.iterdir())):
            shutil.rmtree(folder)


def build_wheel(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("knocknft-*.whl"):
        old.unlink()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(out), str(REPO)],
        check=True,
    )  # fmt: skip
    (wheel,) = out.glob("knocknft-*.whl")
    return wheel


def planned_files(layout: Layout) -> dict[Path, tuple[bytes, int]]:
    """Every file install_files writes but the config, by its installed path: its content and
    mode. What `make uninstall` removes, too."""
    files: dict[Path, tuple[bytes, int]] = {}
    for name, module in COMMANDS.items():
        text = WRAPPER.format(python=layout.python, name=name, libdir=layout.libdir, module=module)
        files[layout.bindir / name] = (text.encode(), 0o755)
    systemd = REPO / "packaging" / "systemd"
    lib = layout.prefix / "lib"
    for unit in ("knocknft.service", "knocknft-guard.service"):
        text = render_unit((systemd / unit).read_text(), layout)
        files[lib / "systemd" / "system" / unit] = (text.encode(), 0o644)
    files[lib / "tmpfiles.d" / "knocknft.conf"] = (
        (systemd / "knocknft.tmpfiles").read_bytes(),
        0o644,
    )
    share = layout.prefix / "share"
    for name, text in generate(KNOCK_NAME).items():
        kind, _, base = name.partition("/")
        content = text.encode()
        if kind == "man":
            path = share / "man" / f"man{base[-1]}" / base
            if layout.debian:  # Debian policy: compressed, without a time stamp
                path, content = path.with_name(base + ".gz"), gzip.compress(content, 9, mtime=0)
        elif kind == "bash":
            path = share / "bash-completion" / "completions" / base
        elif kind == "zsh":
            path = layout.zshdir / base
        else:
            path = share / "knocknft" / name
        files[path] = (content, 0o644)
    for source, name in (
        (REPO / "README.md", "README.md"),
        (systemd / "README.md", "README.systemd.md"),
        (REPO / "config.example.yaml", "config.example.yaml"),
    ):
        files[layout.docdir / name] = (source.read_bytes(), 0o644)
    return files


def install_files(layout: Layout) -> None:
    """Everything but the libraries: commands, units, config, pages, completions, schema."""
    for path, (content, mode) in planned_files(layout).items():
        _write(layout.staged(path), content, mode)
    config = layout.staged(layout.config)
    if not config.exists():
        # Root only: the knock sequences are secrets.
        _write(config, (REPO / "config.example.yaml").read_text(), 0o600)


def uninstall(layout: Layout) -> None:
    """What install put there, but the config, which is the admin's (as apt remove keeps it),
    and the state in /var/lib/knocknft. Folders of knocknft's own go when they are empty."""
    shutil.rmtree(layout.staged(layout.libdir), ignore_errors=True)
    for path in planned_files(layout):
        layout.staged(path).unlink(missing_ok=True)
    for folder in (layout.docdir, layout.prefix / "share" / "knocknft"):
        if layout.staged(folder).is_dir() and not any(layout.staged(folder).iterdir()):
            layout.staged(folder).rmdir()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="install", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destdir", type=Path, default=Path("/"))
    parser.add_argument("--prefix", type=Path, default=Path("/usr/local"))
    parser.add_argument("--sysconfdir", type=Path, default=Path("/etc"))
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="the commands' interpreter")
    parser.add_argument("--debian", action="store_true", help="the Debian package's tree")
    parser.add_argument("--wheel-dir", type=Path, default=REPO / "build" / "wheel")
    parser.add_argument("--uninstall", action="store_true", help="remove what install put there")
    args = parser.parse_args(argv)
    layout = Layout(args.destdir, args.prefix, args.sysconfdir, args.debian, args.python)
    if args.uninstall:
        uninstall(layout)
        return
    install_libraries(layout, build_wheel(args.wheel_dir))
    install_files(layout)


if __name__ == "__main__":
    main()
