"""`make install`'s layout (scripts/install.py, without the libraries pip would fetch): the units
name the installed command, the commands run the system's Python with the private folder first,
an existing config is never overwritten; and what a Python that cannot see the nftables binding
is told.
"""

from __future__ import annotations

from pathlib import Path

from knocknft.nft.binding import find_system_binding, missing_message
from scripts.install import Layout, drop_distributions, install_files, uninstall


def test_make_install_lays_out_commands_units_pages_and_config(tmp_path: Path) -> None:
    layout = Layout(tmp_path, Path("/opt/kn"), Path("/etc"))
    install_files(layout)
    unit = (tmp_path / "opt/kn/lib/systemd/system/knocknft.service").read_text()
    assert "ExecStart=/opt/kn/bin/knocknft run $KNOCKNFT_OPTS" in unit
    assert "@BINDIR@" not in unit and "@DOCDIR@" not in unit
    guard = (tmp_path / "opt/kn/lib/systemd/system/knocknft-guard.service").read_text()
    assert "ExecStart=/opt/kn/bin/knocknft guard" in guard
    for name in ("knocknft", "knocknft-knock"):
        command = tmp_path / "opt/kn/bin" / name
        assert command.stat().st_mode & 0o111
        first, *rest = command.read_text().splitlines()
        assert first == "#!/usr/bin/python3 -I"
        assert 'sys.path.insert(0, "/opt/kn/lib/knocknft")' in rest
    assert not (tmp_path / "opt/kn/bin/knock").exists()  # Debian knockd's name stays its own
    for page in ("man8/knocknft.8", "man5/knocknft.yaml.5", "man1/knocknft-knock.1"):
        assert (tmp_path / "opt/kn/share/man" / page).exists()
    assert (tmp_path / "opt/kn/share/zsh/site-functions/_knocknft").exists()
    assert (tmp_path / "opt/kn/lib/tmpfiles.d/knocknft.conf").exists()
    config = tmp_path / "etc/knocknft/config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600

    config.write_text("# the admin's own\n")
    install_files(layout)
    assert config.read_text() == "# the admin's own\n"


def test_make_uninstall_removes_what_install_put_there_but_the_config(tmp_path: Path) -> None:
    layout = Layout(tmp_path, Path("/opt/kn"), Path("/etc"))
    (tmp_path / "opt/kn/share/man/man8").mkdir(parents=True)
    (tmp_path / "opt/kn/share/man/man8/other.8").write_text("another program's page\n")
    install_files(layout)
    (tmp_path / "opt/kn/lib/knocknft/knocknft").mkdir(parents=True)
    uninstall(layout)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["etc/knocknft/config.yaml", "opt/kn/share/man/man8/other.8"]
    assert not (tmp_path / "opt/kn/lib/knocknft").exists()


def test_the_debian_tree_compresses_pages_and_uses_debians_zsh_folder(tmp_path: Path) -> None:
    install_files(Layout(tmp_path, Path("/usr"), Path("/etc"), debian=True))
    assert (tmp_path / "usr/share/man/man8/knocknft.8.gz").exists()
    assert (tmp_path / "usr/share/zsh/vendor-completions/_knocknft").exists()


def test_dependencies_debian_ships_are_dropped_by_their_record(tmp_path: Path) -> None:
    info = tmp_path / "PyYAML-6.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: PyYAML\nVersion: 6.0\n")
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml/__init__.py").write_text("")
    (info / "RECORD").write_text(
        "yaml/__init__.py,,\nPyYAML-6.0.dist-info/METADATA,,\nPyYAML-6.0.dist-info/RECORD,,\n"
    )
    (tmp_path / "typer").mkdir()
    (tmp_path / "typer/__init__.py").write_text("")
    drop_distributions(tmp_path, {"pyyaml": "python3-yaml"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typer"]


def test_a_venv_that_cannot_see_the_installed_binding_is_told_how_to_see_it() -> None:
    message = missing_message(
        Path("/usr/lib/python3/dist-packages/nftables"), "/srv/venv/bin/python", "/srv/venv/lib"
    )
    assert "is installed (/usr/lib/python3/dist-packages/nftables)" in message
    assert "install python3-nftables" not in message
    assert "ln -s /usr/lib/python3/dist-packages/nftables /srv/venv/lib/nftables" in message
    assert "--system-site-packages" in message


def test_a_machine_without_the_binding_is_told_to_install_it(tmp_path: Path) -> None:
    assert find_system_binding((str(tmp_path / "*/nftables/__init__.py"),)) is None
    assert "apt install python3-nftables" in missing_message(None, "/usr/bin/python3", "/x")
    (tmp_path / "py/nftables").mkdir(parents=True)
    (tmp_path / "py/nftables/__init__.py").write_text("")
    pattern = str(tmp_path / "*/nftables/__init__.py")
    assert find_system_binding((pattern,)) == tmp_path / "py/nftables"
