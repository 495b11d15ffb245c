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
import hashlib
import shutil
import subprocess
import sys
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
LIBDIR = "/usr/lib/knocknft"
CONFFILES = ("/etc/knocknft/config.yaml",)
DESCRIPTION = """\
Port knocking for nftables, the successor to knockd
 knocknft keeps services such as SSH dropped by its own nft table until a
 client knocks the right sequence of ports; the client's address then enters a
 timed allowlist set that the kernel expires by itself. It reads knockd.conf,
 and its knock client (knocknft-knock) speaks knockd's command line.
"""

_RELOAD = "if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n"
POSTINST = (
    "#!/bin/sh\nset -e\n"
    'if [ "$1" = configure ]; then\n'
    # Compiled once, here, so the daemon does not compile its modules at each start under
    # ProtectSystem=strict; prerm removes them again.
    f"    python3 -m compileall -q -j 0 {LIBDIR} >/dev/null || true\n"
    "    if command -v systemd-tmpfiles >/dev/null; then\n"
    "        systemd-tmpfiles --create knocknft.conf || true\n"
    "    fi\n"
    f"    {_RELOAD}"
    "fi\n"
)
PRERM = (
    "#!/bin/sh\nset -e\n"
    'if [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n'
    "    systemctl --no-reload disable --now knocknft.service knocknft-guard.service \\\n"
    "        >/dev/null 2>&1 || true\n"
    "fi\n"
    f"find {LIBDIR} -name __pycache__ -type d -prune -exec rm -rf {{}} + 2>/dev/null || true\n"
)
POSTRM = (
    "#!/bin/sh\nset -e\n"
    'if [ "$1" = purge ]; then\n'
    "    rm -rf /var/lib/knocknft /var/log/knocknft\n"
    "    rm -rf /etc/knocknft\n"
    "fi\n"
    f'if [ "$1" = remove ] || [ "$1" = purge ]; then\n    {_RELOAD}fi\n'
)


def architecture(libdir: Path) -> str:
    """`all` unless a dependency is compiled (pydantic-core, typer's): then this machine's."""
    if not any(libdir.rglob("*.so")):
        return "all"
    return subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()


def depends(compiled: bool) -> str:
    major, minor = sys.version_info[:2]
    python = [f"python3 (>= {major}.{minor})"]
    if compiled:  # extension modules are built for one Python ABI
        python.append(f"python3 (<< {major}.{minor + 1})")
    debian = [d for d in DEBIAN_PROVIDED.values() if d is not None]
    return ", ".join([*python, "python3-nftables", "nftables", *debian])


def control(root: Path) -> str:
    arch = architecture(root / LIBDIR.lstrip("/"))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {__version__}-1\n"
        f"Architecture: {arch}\n"
        "Maintainer: knocknft maintainers <root@localhost>\n"
        f"Installed-Size: {size}\n"
        f"Depends: {depends(arch != 'all')}\n"
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


def build(out: Path) -> Path:
    root = out / "deb" / "root"
    shutil.rmtree(root, ignore_errors=True)
    layout = Layout(root, Path("/usr"), Path("/etc"), debian=True)
    install_libraries(layout, build_wheel(out / "wheel"))
    install_files(layout)
    copyright_file = root / "usr/share/doc/knocknft/copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: knocknft\n\nFiles: *\nLicense: GPL-2.0-or-later\n"
        " On Debian systems, see /usr/share/common-licenses/GPL-2.\n"
    )
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "conffiles").write_text("".join(f"{c}\n" for c in CONFFILES))
    for name, text in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)):
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    (debian / "md5sums").write_text(md5sums(root))
    (debian / "control").write_text(control(root))
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
    print(build(parser.parse_args(argv).out))


if __name__ == "__main__":
    main()
