"""The documents in the repository: the README's and the docs' relative links resolve (file and #anchor), and every
citation of the design or the backend notes (``docs/design.md §4``, ``docs/backends.md §8d.6``) names a section
that exists. Stdlib only."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for folder in ("docs", "benchmarks")
                         for p in (ROOT / folder).rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\[\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
CITATION = re.compile(r"docs/(design|backends)\.md §(\d+[a-z]?)(?:\.(\d+))?")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: str) -> list[str]:
    path = ROOT / page
    problems = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            problems.append(f"{page}: {target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{page}: {target}: no such heading")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    assert (ROOT / page).exists(), page
    assert not broken_links(page)


def sections(path: Path) -> dict[str, str]:
    """'4' -> the text of '## 4. ...' up to the next numbered heading (also '8d' for '## 8d. ...')."""
    out, key, lines = {}, None, []
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{2,3}\s+(\d+[a-z]?)\.\s", line)
        if m:
            if key:
                out[key] = "\n".join(lines)
            key, lines = m.group(1), []
        elif key:
            lines.append(line)
    if key:
        out[key] = "\n".join(lines)
    return out


def test_citations_name_existing_sections():
    docs = {name: sections(ROOT / "docs" / f"{name}.md") for name in ("design", "backends")}
    files = [p for folder in ("swedge", "exporters", "calibration", "runtimes", "tests", "benchmarks", "docs")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".sh")] + [ROOT / "README.md"]
    problems = []
    for path in files:
        for doc, section, item in CITATION.findall(path.read_text(errors="replace")):
            text = docs[doc].get(section)
            if text is None:
                problems.append(f"{path.relative_to(ROOT)}: docs/{doc}.md §{section}: no such section")
            elif item and not re.search(rf"^\s*{item}\. ", text, re.M):
                problems.append(f"{path.relative_to(ROOT)}: docs/{doc}.md §{section}.{item}: no such item")
    assert not problems
