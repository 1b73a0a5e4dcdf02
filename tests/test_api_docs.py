"""The API reference (docs/api.md, built by `make docs`) renders every public name, and the site's config holds
together: a public name added to ``cerbero_hf._PUBLIC`` without its ``::: path`` entry fails here.

The strict build itself (``mkdocs build --strict``: broken links and cross-references, docstrings that do not
parse, a rendered name without a docstring) runs in ``make test``; this test is the cheap part, with no mkdocs.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter

import yaml
from conftest import ROOT

import cerbero_hf

API = ROOT / "docs" / "api.md"
DIRECTIVE_RE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def _entries() -> list[str]:
    return DIRECTIVE_RE.findall(API.read_text(encoding="utf-8"))


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_public_name_has_one_entry_in_the_api_reference():
    public = [name for name in cerbero_hf.__all__ if name != "__version__"]
    entries = Counter(path.rpartition(".")[2] for path in _entries())
    missing = [name for name in public if name not in entries]
    assert not missing, f"public names missing from {API.relative_to(ROOT)} (add `::: <module>.<name>`): {missing}"
    twice = [name for name, n in entries.items() if n > 1]
    assert not twice, f"names rendered twice in {API.relative_to(ROOT)}: {twice}"


def test_every_entry_is_the_public_object():
    """Each ``::: path`` names the object ``from cerbero_hf import <name>`` gives (so a moved name is noticed)."""
    wrong = []
    for path in _entries():
        name = path.rpartition(".")[2]
        try:
            same = _resolve(path) is getattr(cerbero_hf, name)
        except (ImportError, AttributeError):
            same = False
        if not same:
            wrong.append(f"::: {path} (cerbero_hf.{name} lives in {cerbero_hf._PUBLIC.get(name, '?')})")
    assert not wrong, "API reference entries that are not the public objects:\n" + "\n".join(wrong)


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's ``!!python/...`` values (the slug function) read as None: nothing is imported or run."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def test_the_site_has_every_guide_and_the_reference():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    assert config["strict"] is True and config["docs_dir"] == "docs"
    pages = []

    def walk(node):
        if isinstance(node, str):
            pages.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config["nav"])
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert set(pages) == on_disk, f"docs pages not in mkdocs.yml's nav, or nav entries without a page: {set(pages) ^ on_disk}"
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["options"]
    assert handler["docstring_style"] == "google"
