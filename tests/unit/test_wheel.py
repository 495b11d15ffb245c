"""The wheel ships knocknft and nothing else: the namespace lab, the packet generators, the
benchmarks and the tests stay in the checkout (a server that installs knocknft gets no spoofed-SYN
flood generator)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a build never reads and a copy need not carry (the venv alone is hundreds of MB).
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", ".hypothesis", "__pycache__", "build", "*.egg-info", "results"
)


def built_wheel(tmp_path: Path) -> zipfile.ZipFile:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=NOT_COPIED)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("knocknft-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_knocknft_and_no_test_code(tmp_path: Path) -> None:
    with built_wheel(tmp_path) as wheel:
        names = wheel.namelist()
    assert "knocknft/core/engine.py" in names
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"knocknft"}
    test_code = [
        name
        for name in names
        if Path(name).name.startswith("test_") or Path(name).name in ("conftest.py", "fakes.py")
    ]
    assert test_code == []
