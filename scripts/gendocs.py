"""Write the generated documentation of knocknft into one folder: the man pages, the bash and zsh
completions and the config's JSON Schema, from the command-line definitions and the config
reference. Run by `make install` and `make deb` (and `make schema`, which refreshes the repository's
copy of the schema):

    python -m scripts.gendocs OUT [--knock-name knocknft-knock]
    python -m scripts.gendocs --schema packaging/knocknft.schema.json

OUT gets man/knocknft.8, man/NAME.1, man/knocknft.yaml.5, bash/knocknft, bash/NAME, zsh/_knocknft,
zsh/_NAME and knocknft.schema.json, NAME being the knock client's installed name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from knocknft.config.schema import config_schema
from scripts import completions, manpages
from scripts.cliref import knock_program, knocknft_program

# Debian knockd ships /usr/bin/knock: ours is installed beside it under this name.
KNOCK_NAME = "knocknft-knock"


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def generate(knock_name: str = KNOCK_NAME) -> dict[str, str]:
    """Relative path -> text, for every generated file."""
    main, knock = knocknft_program(), knock_program(knock_name)
    return {
        "man/knocknft.8": manpages.knocknft_page(main, knock_name),
        f"man/{knock_name}.1": manpages.knock_page(knock),
        "man/knocknft.yaml.5": manpages.config_page(main.version, main.command("check").help),
        "bash/knocknft": completions.bash(main),
        f"bash/{knock_name}": completions.bash(knock),
        "zsh/_knocknft": completions.zsh(main),
        f"zsh/_{knock_name}": completions.zsh(knock),
        "knocknft.schema.json": schema_text(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gendocs", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="the folder to write into")
    parser.add_argument("--knock-name", default=KNOCK_NAME, help="the knock client's name")
    parser.add_argument("--schema", type=Path, help="write only the JSON Schema, to this file")
    args = parser.parse_args(argv)
    if args.schema is not None:
        args.schema.write_text(schema_text())
        return
    if args.out is None:
        parser.error("give OUT or --schema FILE")
    for name, text in generate(args.knock_name).items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
