"""MkDocs hooks of `make docs` (mkdocs.yml): README.md as the home page, and a strict API reference.

* ``docs/index.md`` holds the line ``--8<-- "README.md"``: the README's text replaces it, so the home page is
  the README and is never a copy that drifts.
* A relative link that leaves docs/ (the README's ``docs/method.md``, ``CONTRIBUTING.md``, a config file) becomes
  a link into docs/ when it points there, or to the file on GitHub otherwise; links inside docs/ are left to
  MkDocs, which checks them (``validation`` in mkdocs.yml).
* Every ``::: dotted.path`` of a page must name an object with a docstring: one without is a warning, which
  ``--strict`` turns into a failed build (mkdocstrings alone would render an empty entry).
* :class:`SphinxRoles` (a griffe extension, mkdocs.yml) renders the docstrings' Sphinx roles (``:class:`X```,
  ``:func:`~a.b.f```, ...): a link when the role names an object the API reference renders (autorefs checks it),
  plain code otherwise.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REPO_BLOB = "https://github.com/cerbero-hf/cerbero-hf/blob/main"  # cerbero_hf.REPO_URL, without importing it
INCLUDE_RE = re.compile(r'^--8<-- "([^"]+)"\s*$', re.MULTILINE)
LINK_RE = re.compile(r"(\]\()([^)\s]+)(\))")
DIRECTIVE_RE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)
ROLE_RE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)`")
log = logging.getLogger("mkdocs.hooks.cerbero")  # under "mkdocs": `--strict` counts its warnings


def _relink(markdown: str, base: Path, page_dir: Path) -> str:
    """Rewrite the relative links of ``markdown`` (written relative to ``base``) for a page in ``page_dir``."""

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # a URL, or an anchor of this page
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        dest = (base / path).resolve()
        if dest.is_relative_to(DOCS):
            new = Path(os.path.relpath(dest, page_dir)).as_posix() + hash_ + anchor
        elif dest.is_relative_to(ROOT):
            new = f"{REPO_BLOB}/{dest.relative_to(ROOT).as_posix()}" + hash_ + anchor
        else:
            return match.group(0)  # MkDocs reports it
        return match.group(1) + new + match.group(3)

    return LINK_RE.sub(fix, markdown)


def on_page_markdown(markdown, page, config, files):
    page_dir = Path(page.file.abs_src_path).parent

    def include(match: re.Match) -> str:
        source = ROOT / match.group(1)
        return _relink(source.read_text(encoding="utf-8"), source.parent, page_dir)

    markdown = INCLUDE_RE.sub(include, markdown)
    for path in DIRECTIVE_RE.findall(markdown):
        module, _, name = path.rpartition(".")
        try:
            doc = getattr(importlib.import_module(module), name).__doc__
        except (ImportError, AttributeError) as err:
            log.warning("%s: ::: %s does not resolve (%s)", page.file.src_uri, path, err)
            continue
        if not (doc or "").strip():
            log.warning("%s: %s has no docstring", page.file.src_uri, path)
    return _relink(markdown, page_dir, page_dir)


try:
    import griffe
except ImportError:  # mkdocs loads this file as hooks before mkdocstrings needs griffe
    griffe = None


class SphinxRoles(griffe.Extension if griffe else object):
    """Sphinx roles in docstrings -> a cross-reference to an entry of the API reference, or inline code."""

    def on_package(self, *, pkg, loader, **kwargs) -> None:
        collection = loader.modules_collection
        rendered = {self._canonical(collection, path) for path in DIRECTIVE_RE.findall((DOCS / "api.md").read_text())}

        def convert(obj) -> None:
            if obj.docstring is not None:
                obj.docstring.value = ROLE_RE.sub(lambda m: self._role(m, obj, collection, rendered), obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    convert(member)

        convert(pkg)

    @staticmethod
    def _canonical(collection, path: str) -> str | None:
        try:
            return collection[path].canonical_path
        except Exception:  # noqa: BLE001 - an unknown or unresolvable name is rendered as code
            return None

    def _role(self, match: re.Match, obj, collection, rendered: set) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.lstrip(".").rpartition(".")[2] if short else target.lstrip(".")
        if target.startswith("."):  # relative to the module's package
            package = obj.module.path if obj.module.is_package else obj.module.path.rpartition(".")[0]
            path = package + target
        elif target.startswith("cerbero_hf"):
            path = target
        else:
            first, _, rest = target.partition(".")
            try:
                path = obj.resolve(first) + (f".{rest}" if rest else "")
            except Exception:  # noqa: BLE001 - not a name in scope (a builtin, a typo): plain code
                path = None
        canonical = path and self._canonical(collection, path)
        return f"[`{shown}`][{canonical}]" if canonical in rendered else f"`{shown}`"
