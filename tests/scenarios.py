"""The render scenarios: each folder under tests/data/render holds a config.yaml (and any file it
names) and the nft script it must give. Unit tests render them; integration tests load the scripts
into a real kernel.
"""

from __future__ import annotations

from pathlib import Path

from knocknft.config import Config, parse_config

SCENARIOS = Path(__file__).parent / "data" / "render"


def load_scenario(folder: Path) -> Config:
    def read_beside(path: Path) -> str:
        # Configs name absolute paths as on a server; the files sit in the scenario folder.
        return (folder / path.name).read_text()

    text = (folder / "config.yaml").read_text()
    return parse_config(text, "config.yaml", read_file=read_beside).config


def scenario_names() -> list[str]:
    return sorted(p.name for p in SCENARIOS.iterdir() if (p / "config.yaml").exists())
