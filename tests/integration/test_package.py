"""The Debian package on this machine: built from the checkout, installed with apt (dependencies
resolved), its commands run, its units verified, then removed and purged, leaving nothing behind.
And `make install` under a temporary prefix: its commands run without the checkout; and a plain
`pip install` into a venv that cannot see the binding: its error says how to let it.

Nothing is started: the units are only read by `systemd-analyze verify`, and the one command that
reads the config (`knocknft check`) runs in a network namespace of its own. It installs into the
machine's own /usr and /etc, so it runs only when asked (KNOCKNFT_TEST_PACKAGE=1; `make test`
asks), as root, with apt and dpkg-deb, and never over a knocknft the admin installed. It purges
the package also when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocknft import __version__

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "knocknft"
# Where a package's files, and what its scripts make, could be left.
WATCHED = ("/usr", "/etc", "/var/lib", "/var/log", "/run")
UNITS = ("knocknft.service", "knocknft-guard.service")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("KNOCKNFT_TEST_PACKAGE") != "1",
        reason="installs a package on this machine: KNOCKNFT_TEST_PACKAGE=1 (make test) runs it",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root"),
    pytest.mark.skipif(
        not all(
            shutil.which(t) for t in ("apt-get", "dpkg-deb", "dpkg-shlibdeps", "systemd-analyze")
        ),
        reason="needs apt-get, dpkg-deb, dpkg-shlibdeps, systemd-analyze (make deps has them)",
    ),
]


def installed() -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True, check=False
    )
    return "installed" in result.stdout or "config-files" in result.stdout


def paths() -> set[str]:
    found: set[str] = set()
    for top in WATCHED:
        for root, dirs, files in os.walk(top):
            found.update(os.path.join(root, name) for name in dirs + files)
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=600, check=False, env=ENV
    )


@pytest.fixture
def deb(tmp_path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.deb", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def clean_machine() -> Iterator[set[str]]:
    if installed():
        pytest.skip("knocknft is installed here already: not touching it")
    before = paths()
    try:
        yield before
    finally:
        if installed():
            run(*APT, "purge", PACKAGE)


def test_the_package_installs_runs_verifies_and_purges_without_a_trace(
    deb: Path, clean_machine: set[str]
) -> None:
    knock_owner = run("dpkg-query", "-S", "/usr/bin/knock").stdout
    result = run(*APT, "install", str(deb))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = set(run("dpkg-query", "-L", PACKAGE).stdout.split())

    version = run("/usr/bin/knocknft", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"knocknft {__version__}")
    client = run("/usr/bin/knocknft-knock", "--version")
    assert client.returncode == 0 and __version__ in client.stdout + client.stderr
    # Debian knockd's own client is still knockd's (when it is installed at all).
    assert run("dpkg-query", "-S", "/usr/bin/knock").stdout == knock_owner
    # The installed Python sees Debian's binding, and the config is a conffile that checks.
    assert "/etc/knocknft/config.yaml" in run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    check = run("unshare", "--net", "/usr/bin/knocknft", "check", "--other-host")
    assert check.returncode == 0, check.stderr
    binding = run(
        "/usr/bin/python3", "-I", "-c",
        "import sys; sys.path.insert(0, '/usr/lib/knocknft'); "
        "from knocknft.nft.binding import import_nftables; import_nftables()",
    )  # fmt: skip
    assert binding.returncode == 0, binding.stderr

    units = [f"/usr/lib/systemd/system/{unit}" for unit in UNITS]
    for unit in units:
        assert "ExecStart=/usr/bin/knocknft " in Path(unit).read_text()
    verify = run("systemd-analyze", "verify", *units)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    for page in ("man8/knocknft.8.gz", "man5/knocknft.yaml.5.gz", "man1/knocknft-knock.1.gz"):
        assert f"/usr/share/man/{page}" in listed
    assert "/usr/share/bash-completion/completions/knocknft" in listed
    assert "/usr/share/zsh/vendor-completions/_knocknft" in listed
    assert "/usr/share/knocknft/knocknft.schema.json" in listed
    # The private libraries hold no test code and no development tools.
    tops = {p.split("/")[4] for p in listed if p.startswith("/usr/lib/knocknft/")}
    assert "knocknft" in tops
    assert not {t for t in tops if t.startswith(("pytest", "mypy", "ruff", "knocklab", "tests"))}

    result = run(*APT, "purge", PACKAGE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not installed()
    left = {p for p in paths() - clean_machine if p in listed or "knocknft" in p}
    assert left == set()


def test_make_install_into_a_prefix_runs_without_the_checkout(tmp_path: Path) -> None:
    """`make install`'s layout under a temporary PREFIX and SYSCONFDIR: the commands run from
    anywhere, see no file of the checkout, and check the config it installed."""
    prefix, etc = tmp_path / "prefix", tmp_path / "etc"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.install", "--prefix", str(prefix), "--sysconfdir",
         str(etc), "--wheel-dir", str(tmp_path / "wheel")],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    version = subprocess.run(
        [str(prefix / "bin/knocknft"), "--version"],
        cwd="/", capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    assert (version.returncode, version.stdout.strip()) == (0, f"knocknft {__version__}")
    where = subprocess.run(
        ["/usr/bin/python3", "-I", "-c",
         f"import sys; sys.path.insert(0, '{prefix}/lib/knocknft'); import knocknft, typer; "
         "print(knocknft.__file__, typer.__file__)"],
        cwd="/", capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    assert where.stdout.count(f"{prefix}/lib/knocknft/") == 2, where.stdout + where.stderr
    assert list((prefix / "lib/knocknft").rglob("__pycache__"))  # compiled at install
    config = etc / "knocknft/config.yaml"
    check = run("unshare", "--net", str(prefix / "bin/knocknft"), "check", "-c", str(config),
                "--other-host")  # fmt: skip
    assert check.returncode == 0, check.stderr
    unit = (prefix / "lib/systemd/system/knocknft.service").read_text()
    assert f"ExecStart={prefix}/bin/knocknft run" in unit

    removed = subprocess.run(
        [sys.executable, "-m", "scripts.install", "--uninstall", "--prefix", str(prefix),
         "--sysconfdir", str(etc)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert [p for p in prefix.rglob("*") if p.is_file()] == []
    assert config.exists()


def test_a_plain_pip_install_that_cannot_see_the_binding_says_how_to_see_it(
    tmp_path: Path,
) -> None:
    """The issue's newcomer: `pip install` into a fresh venv, then a command. The binding is
    installed (make deps), but hidden from the venv: the error says so, not "install it"."""
    from scripts.install import build_wheel

    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = build_wheel(tmp_path / "wheel")
    install = run(str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel))
    assert install.returncode == 0, install.stderr
    # In a network namespace of its own: had the import worked, no ruleset of the host is read.
    status = run("unshare", "--net", str(venv / "bin/knocknft"), "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "is installed (/usr/lib/python3/dist-packages/nftables)" in status.stderr
    assert f"ln -s /usr/lib/python3/dist-packages/nftables {venv}/lib/python3" in status.stderr
    assert "Traceback" not in status.stderr
