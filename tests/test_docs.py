"""The README stays a five-minute read and the docs stay reachable: the README under 200 lines, its docs table
linking every page of docs/ (and only pages that exist), and every relative link in the README and docs/
pointing at a file that exists (and, with a #fragment into a Markdown page, at one of its headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 200
DOCS_TABLE = "## The docs"

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target); images (![..](..)) are not links to pages
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without code blocks and code spans: a `[x](y)` shown as code is no link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)  # http:, https:, mailto: ...


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", page.read_text()), re.MULTILINE)}


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def section(text: str, title: str) -> str:
    assert title in text, f"README.md has no {title!r} section: a table of the pages of docs/, a row each"
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end >= 0 else len(text)]


def test_the_readme_is_a_five_minute_read():
    lines = README.read_text().count("\n")
    assert lines < MAX_README_LINES, (
        f"README.md has {lines} lines (under {MAX_README_LINES}: what tlbench is, the two commands, the picture, the code "
        f"map, how to add things, the docs table); move reference text to a page of docs/ and link it from the docs table"
    )


def test_the_docs_table_links_every_page_of_docs_and_only_pages_that_exist():
    table = section(README.read_text(), DOCS_TABLE)
    linked = {(README.parent / target.split("#", 1)[0]).resolve() for target in links(table) if is_relative(target)}
    on_disk = {page.resolve() for page in DOCS.glob("*.md")}
    missing = sorted(str(p.relative_to(REPO)) for p in linked - on_disk)
    assert not missing, f"README's {DOCS_TABLE!r} table links pages docs/ lacks: {missing}"
    unlisted = sorted(str(p.relative_to(REPO)) for p in on_disk - linked)
    assert not unlisted, f"pages of docs/ missing from README's {DOCS_TABLE!r} table (a row each: page, what it holds): {unlisted}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for target in links(page.read_text()):
        if not is_relative(target):
            continue
        path, _, fragment = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        if not found.exists():
            broken.append(f"{target} (no file {found.relative_to(REPO) if found.is_relative_to(REPO) else found})")
        elif fragment and found.suffix == ".md" and fragment not in anchors(found):
            broken.append(f"{target} (no heading #{fragment} in {found.relative_to(REPO)})")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_the_link_checks_see_links_and_skip_code():
    text = "a [page](docs/a.md#b) and `[shown](not/a/link.md)`\n```\n[in a block](nope.md)\n```\n![img](pic.png) [web](https://x.org)"
    assert links(text) == ["docs/a.md#b", "https://x.org"]
    assert [t for t in links(text) if is_relative(t)] == ["docs/a.md#b"]
    assert slug("Watching a run") == "watching-a-run" and slug("Two readings: as stated, as run") == "two-readings-as-stated-as-run"
