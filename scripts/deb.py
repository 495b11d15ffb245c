"""`make deb`: the Debian package, built with dpkg-deb from the tree scripts/install.py lays out,
without debhelper (a package built from a checkout, by one command, on the machine it is for).

    python -m scripts.deb [--out build]

What debhelper would have done is done here, and no more: the control file with the dependencies,
the conffile, md5sums, compressed man pages (install.py), and maintainer scripts that byte-compile
the private libraries and remove the compiled files again, make the state directory, and reload
systemd's view of the units. They do not enable or start a unit: the example config guards SSH on
eth0, and must be made the admin's own first (README, "Install"). Purging removes the config, the
state directory and the log directory.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from knocknft import __version__
from scripts.install import (
    DEBIAN_PROVIDED,
    REPO,
    Layout,
    build_wheel,
    install_files,
    install_libraries,
)

PACKAGE = "knocknft"
# Whoever builds the package: `make deb DEB_MAINTAINER="Name <mail>"`.
DEFAULT_MAINTAINER = "knocknft builder <root@localhost>"
LIBDIR = "/usr/lib/knocknft"
CONFFILES = ("/etc/knocknft/config.yaml",)
DESCRIPTION = """\
Port knocking for nftables, the successor to knockd
 knocknft keeps services such as SSH dropped by its own nft table until a
 client knocks the right sequence of ports; the client's address then enters a
 timed allowlist set that the kernel expires by itself. It reads knockd.conf,
 and its knock client (knocknft-knock) speaks knockd's command line.
"""

UNITS = "knocknft.service knocknft-guard.service"
# What debhelper's dh_installsystemd writes, without enabling or starting: deb-systemd-helper
# (init-system-helpers, in every Debian) records the units' enablement links so that a purge
# removes them, also when the admin enabled the units; deb-systemd-invoke stops them on removal.
_RELOAD = "if [ -d /run/systemd/system ]; then systemctl --system daemon-reload || true; fi"
POSTINST = f"""\
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # Compiled once, here: under ProtectSystem=strict the daemon could not keep what it
    # compiles, and would compile every module at each start. prerm removes them again.
    python3 -m compileall -q -j 0 {LIBDIR} >/dev/null || true
    if command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --create knocknft.conf || true
    fi
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper update-state {UNITS} >/dev/null || true
    fi
    {_RELOAD}
fi
"""
PRERM = f"""\
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null
then
    deb-systemd-invoke stop {UNITS} >/dev/null || true
fi
find {LIBDIR} -name __pycache__ -type d -prune -exec rm -rf {{}} + 2>/dev/null || true
"""
POSTRM = f"""\
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    {_RELOAD}
fi
if [ "$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper purge {UNITS} >/dev/null || true
    fi
    rm -rf /var/lib/knocknft /var/log/knocknft /etc/knocknft
fi
"""
# Deliberate, and said why in README.md's Install section.
LINTIAN_OVERRIDES = """\
# The config holds knock sequences and SPA keys: root only.
knocknft: non-standard-file-perm 0600 != 0644 [etc/knocknft/config.yaml]
# The guard reloads the table whenever nftables.service (which flushes the ruleset) starts.
knocknft: systemd-service-file-refers-to-unusual-wantedby-target nftables.service *
# Scripts of the private libraries' own, never run as programs.
knocknft: unusual-interpreter python *
"""


def architecture(libdir: Path) -> str:
    """`all` unless a dependency is compiled (pydantic-core, typer's): then this machine's."""
    if not any(libdir.rglob("*.so")):
        return "all"
    return subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()


def shared_library_depends(root: Path) -> list[str]:
    """What the compiled extensions link against, as dpkg-shlibdeps finds it (libc6, ...)."""
    libraries = [str(p.resolve()) for p in root.rglob("*.so")]
    if not libraries:
        return []
    with tempfile.TemporaryDirectory() as work:
        # dpkg-shlibdeps reads the package's name from a debian/control.
        (Path(work) / "debian").mkdir()
        (Path(work) / "debian" / "control").write_text(
            f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"
        )
        found = subprocess.run(
            ["dpkg-shlibdeps", "-O", "-e", *libraries],
            cwd=work, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    return [d.strip() for d in found.partition("shlibs:Depends=")[2].split(",") if d.strip()]


def depends(root: Path) -> str:
    major, minor = sys.version_info[:2]
    python = [f"python3 (>= {major}.{minor})"]
    compiled = shared_library_depends(root)
    if compiled:  # extension modules are built for one Python ABI
        python.append(f"python3 (<< {major}.{minor + 1})")
    debian = [d for d in DEBIAN_PROVIDED.values() if d is not None]
    return ", ".join([*python, "python3-nftables", "nftables", *debian, *compiled])


def control(root: Path, maintainer: str) -> str:
    arch = architecture(root / LIBDIR.lstrip("/"))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {__version__}-1\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {maintainer}\n"
        f"Installed-Size: {size}\n"
        f"Depends: {depends(root)}\n"
        "Recommends: systemd\n"
        "Suggests: knockd\n"
        "Section: net\n"
        "Priority: optional\n"
        f"Description: {DESCRIPTION}"
    )


def md5sums(root: Path) -> str:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "DEBIAN" not in p.parts):
        relative = path.relative_to(root)
        if f"/{relative}" in CONFFILES:
            continue
        lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {relative}\n")
    return "".join(lines)


def changelog(maintainer: str) -> bytes:
    """The one entry a package built from a checkout has: this version, now."""
    when = email.utils.formatdate(localtime=False)
    text = (
        f"{PACKAGE} ({__version__}-1) unstable; urgency=medium\n\n"
        "  * Built from the knocknft repository (make deb).\n\n"
        f" -- {maintainer}  {when}\n"
    )
    return gzip.compress(text.encode(), 9, mtime=0)


def build(out: Path, maintainer: str = DEFAULT_MAINTAINER) -> Path:
    root = out / "deb" / "root"
    shutil.rmtree(root, ignore_errors=True)
    layout = Layout(root, Path("/usr"), Path("/etc"), debian=True)
    install_libraries(layout, build_wheel(out / "wheel"))
    install_files(layout)
    docs = root / "usr/share/doc/knocknft"
    (docs / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: knocknft\n\nFiles: *\nCopyright: 2026 the knocknft authors\n"
        "License: GPL-2.0-or-later\n"
        " On Debian systems, see /usr/share/common-licenses/GPL-2.\n"
    )
    (docs / "changelog.Debian.gz").write_bytes(changelog(maintainer))
    overrides = root / "usr/share/lintian/overrides" / PACKAGE
    overrides.parent.mkdir(parents=True)
    overrides.write_text(LINTIAN_OVERRIDES)
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "conffiles").write_text("".join(f"{c}\n" for c in CONFFILES))
    for name, text in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)):
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    (debian / "md5sums").write_text(md5sums(root))
    (debian / "control").write_text(control(root, maintainer))
    for path in root.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    deb = out / f"{PACKAGE}_{__version__}-1_{architecture(root / LIBDIR.lstrip('/'))}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return deb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build")
    parser.add_argument(
        "--maintainer", default=DEFAULT_MAINTAINER, help='the control file\'s "NAME <MAIL>"'
    )
    args = parser.parse_args(argv)
    print(build(args.out, args.maintainer))


if __name__ == "__main__":
    main()
