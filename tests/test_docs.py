"""The project's docs stand on their own: no file points outside the repository to internal pages, every
default identifier (D1, D2, ...) cited anywhere has an entry in docs/method.md, links between the docs
resolve, and the published card templates link to the docs by URL, never by a local path."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import ROOT

import cerbero_hf
from cerbero_hf.cards import render_text

DOCS = ROOT / "docs"
METHOD = DOCS / "method.md"

# Patterns are assembled from pieces so that this file does not match them itself.
OUTSIDE = [re.escape(".." + "/shared"), re.escape("shared" + "/docs"),
           r"\b(?:METHOD|STACK|DESIGN)" + r"\.md\b",  # the internal pages, by file name
           r"\bMETHOD" + r"\s*(?:§|D\d)"]  # ... or by their short name followed by a section or a default
OUTSIDE_RE = re.compile("|".join(OUTSIDE))
# A default's identifier: D and one or two digits as a word of its own ("3D", "0xD1", "D1a" are not).
D_RE = re.compile(r"(?<![\w])D(\d{1,2})(?!\w)")
D_RANGE_RE = re.compile(r"(?<![\w])D(\d{1,2})\s*[–-]\s*D(\d{1,2})(?!\w)")
D_HEADING_RE = re.compile(r"^#{2,6}\s+D(\d{1,2})\b", re.MULTILINE)
LINK_RE = re.compile(r"\]\(([^)\n]+)\)")


@lru_cache(maxsize=1)
def repo_files() -> tuple[Path, ...]:
    """Tracked files plus untracked files git does not ignore (what a commit of the working tree would hold)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the repository's file list comes from git")
    names: set[str] = set()
    for extra in ([], ["--others", "--exclude-standard"]):
        out = subprocess.run(["git", "ls-files", "-z", *extra], cwd=ROOT, capture_output=True, check=True)
        names.update(n for n in out.stdout.decode("utf-8").split("\0") if n)
    return tuple(sorted(ROOT / n for n in names if (ROOT / n).is_file()))


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def text_files() -> list[tuple[Path, str]]:
    return [(p, t) for p in repo_files() if (t := text_of(p)) is not None]


def defined_defaults() -> list[int]:
    return [int(n) for n in D_HEADING_RE.findall(METHOD.read_text(encoding="utf-8"))]


def cited_defaults(text: str) -> set[int]:
    cited = {int(n) for n in D_RE.findall(text)}
    for low, high in D_RANGE_RE.findall(text):  # "D1–D13" cites every default in between
        cited.update(range(int(low), int(high) + 1))
    return cited


def test_docs_folder_has_the_four_pages():
    assert {p.name for p in DOCS.glob("*.md")} >= {"method.md", "architecture.md", "benchmarks.md", "deployment.md"}


def test_no_file_refers_to_internal_pages():
    files = text_files()
    assert any(p == METHOD for p, _ in files) and len(files) > 50  # the scan sees the repository
    offending = []
    for path, text in files:
        for lineno, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_RE.search(line):
                offending.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:120]}")
    assert not offending, "references to pages outside the repository:\n" + "\n".join(offending)


def test_every_default_has_one_entry_in_method():
    numbers = defined_defaults()
    assert numbers, "docs/method.md defines no default"
    assert len(numbers) == len(set(numbers)), f"a default is defined twice: {sorted(numbers)}"
    assert sorted(numbers) == list(range(1, max(numbers) + 1)), f"gaps in the defaults: {sorted(numbers)}"
    text = METHOD.read_text(encoding="utf-8")
    for part in re.split(r"^#{2,6}\s+D\d{1,2}\b", text, flags=re.MULTILINE)[1:]:
        entry = part.split("\n#", 1)[0]
        assert "**Value:**" in entry and "**Why:**" in entry, entry[:80]


def test_every_cited_default_resolves_in_method():
    defined = set(defined_defaults())
    missing = []
    for path, text in text_files():
        for lineno, line in enumerate(text.splitlines(), 1):
            for n in sorted(cited_defaults(line) - defined):
                missing.append(f"{path.relative_to(ROOT)}:{lineno}: D{n}")
    assert not missing, "defaults cited but not defined in docs/method.md:\n" + "\n".join(missing)


def test_default_pattern_ignores_lookalikes():
    assert cited_defaults("3D plots, 0xD1, D1a, AD10, D100") == set()
    assert cited_defaults("(D4) and D10; D14-D16, D29–D30") == {4, 10, 14, 15, 16, 29, 30}


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+)$", re.sub(r"```.*?```", "", text, flags=re.DOTALL), re.MULTILINE):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_links_between_docs_resolve():
    broken = []
    for page in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for target in LINK_RE.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def published_templates() -> list[Path]:
    return sorted(ROOT.glob("dataset_scripts/*/README.md.j2")) + sorted(ROOT.glob("model_cards/*.j2"))


def test_docs_url_is_the_projects():
    assert cerbero_hf.DOCS_URL.startswith(cerbero_hf.REPO_URL + "/") and cerbero_hf.REPO_URL.startswith("https://")


@pytest.mark.parametrize("template", published_templates(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_published_cards_link_to_the_docs_by_url(template: Path):
    source = template.read_text(encoding="utf-8")
    links = LINK_RE.findall(source)
    docs_links = [t for t in links if t.startswith("{{ docs_url }}/")]
    assert docs_links, "the card does not link to the project's docs"
    for target in docs_links:  # each linked page exists in docs/
        assert (DOCS / target.removeprefix("{{ docs_url }}/").split("#")[0]).is_file(), target
    # every link goes to a URL or to a file the card's own repo holds (a template value such as the histogram)
    assert all(re.match(r"https?://|\{\{", t) for t in links), links
    # no repository path outside those links (the published repo does not hold them)
    prose = LINK_RE.sub("](…)", source)
    top = {p.relative_to(ROOT).parts[0] for p in repo_files() if len(p.relative_to(ROOT).parts) > 1}
    assert not [d for d in top if f"{d}/" in prose], "a local repository path in the card's text"
    rendered = render_text(template, counts={}, stage_counts=[], models=[], params=[], recipe=[], corpora=[])
    assert f"({cerbero_hf.DOCS_URL}/method.md)" in rendered and "{{" not in rendered
