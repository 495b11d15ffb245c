"""The README reads top to bottom for an admin: its table of contents is its headings, its
sections come in the order an admin needs them, and no relative link in the Markdown files
points at a file or a heading that is not there."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# Install, a safe first door, then moving over, living with the firewall and systemd; the
# reference after all of that, and the developers' corner last.
SECTIONS = [
    "Contents",
    "Why knocknft",
    "Install",
    "A first door",
    "Moving from knockd",
    "Moving from fwknop",
    "Alongside your firewall",
    "systemd",
    "Reference",
    "Development",
]
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#* *$")
TOC_ENTRY = re.compile(r"^( *)- \[(.+)\]\(#([^)]+)\)$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, where `#` starts a heading and not a comment."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def headings(text: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2)) for m in map(HEADING.match, prose(text)) if m]


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, markup and punctuation dropped,
    spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").lower()
    kept = "".join(
        c
        for c in text
        if c in " -_" or unicodedata.category(c)[0] in "LN"  # letters and digits of any script
    )
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, a repeated one numbered as GitHub numbers it."""
    seen: dict[str, int] = {}
    found = set()
    for _, title in headings(text):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def toc(text: str) -> list[tuple[int, str, str]]:
    """(level, title, anchor) of each entry under `## Contents`, the nesting giving the level."""
    section = text.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    entries = []
    for line in section.strip().splitlines():
        match = TOC_ENTRY.match(line)
        assert match is not None, f"not a contents entry: {line!r}"
        indent, title, anchor = match.groups()
        assert len(indent) % 2 == 0, f"indent by two spaces a level: {line!r}"
        entries.append((2 + len(indent) // 2, title, anchor))
    return entries


def test_the_contents_list_every_section_and_subsection_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    listed = [(level, title) for level, title, _ in toc(text)]
    wanted = [(lv, t) for lv, t in headings(text) if lv in (2, 3) and t != "Contents"]
    assert listed == wanted
    for _, title, anchor in toc(text):
        assert anchor == slug(title), f"{title}: its anchor is #{slug(title)}"


def test_the_sections_come_in_the_order_an_admin_reads_them() -> None:
    text = README.read_text(encoding="utf-8")
    top = [title for level, title in headings(text) if level == 2]
    assert top == SECTIONS
    assert [title for level, title in headings(text) if level == 1] == ["knocknft"]


def test_the_two_commands_stay_in_development_and_link_its_notes() -> None:
    text = README.read_text(encoding="utf-8")
    development = text.split("\n## Development\n", 1)[1]
    assert "make demo" in development and "make test" in development
    assert "](docs/DEVELOPMENT.md)" in development


def markdown_files() -> list[Path]:
    skip = {".venv", ".git", "build", "node_modules"}
    return sorted(
        p
        for p in REPO.rglob("*.md")
        if not skip & set(p.relative_to(REPO).parts) and "egg-info" not in str(p)
    )


def test_the_markdown_files_are_found() -> None:
    found = {str(p.relative_to(REPO)) for p in markdown_files()}
    assert {"README.md", "docs/DEVELOPMENT.md", "docs/FLOODS.md", "docs/BENCHMARKS.md"} <= found


def broken_links(page: Path) -> list[str]:
    """The relative links of one Markdown file that reach no file, or no heading in one."""
    broken = []
    # Joined, so that a link whose text wraps onto the next line is read whole.
    for match in LINK.finditer("\n".join(prose(page.read_text(encoding="utf-8")))):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:, man: ... are not files of this repository
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no such heading")
    return broken


def test_every_relative_link_reaches_a_file_and_heading_that_exist() -> None:
    broken = {str(p.relative_to(REPO)): broken_links(p) for p in markdown_files()}
    assert {page: links for page, links in broken.items() if links} == {}


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Its part\n")
    page.write_text(
        "# Page\n\n[fine](other.md#its-part), [fine](#page), [web](https://example.org/x),\n"
        "[gone](missing.md), [no part](other.md#nope), [wrapped\ntext](#nowhere)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nope: no such heading",
        "#nowhere: no such heading",
    ]


def test_slugs_are_githubs() -> None:
    assert slug("Other distributions: `make install`") == "other-distributions-make-install"
    assert slug("knockd's command line") == "knockds-command-line"
    assert slug("Status, counters, metrics and the event log") == (
        "status-counters-metrics-and-the-event-log"
    )
    assert slug("The Debian package (Debian 12)") == "the-debian-package-debian-12"
    assert anchors("## A\n## A\n```\n## not a heading\n```\n") == {"a", "a-1"}
