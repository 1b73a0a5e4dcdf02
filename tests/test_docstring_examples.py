"""The examples in the public names' docstrings run, so the API reference (`make docs`) never shows a stale one.

Every public name (``cerbero_hf.__all__``) has an ``Examples:`` section in its docstring, and the doctests of the
modules that define them run here (``doctest``, ELLIPSIS on), each module in a fresh scratch folder as the current
directory: an example may write ``out/...`` as a user would. An example that needs a model, a server or the Hub
is marked ``# doctest: +SKIP``: it is rendered, not run. No model is loaded: the file takes about 20 s, mostly
importing datasets, transformers and TRL.
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import cerbero_hf

PUBLIC = {name: getattr(cerbero_hf, name) for name in cerbero_hf._PUBLIC}
# the modules that define the public names (a rule is defined in its own module, re-exported by rules/__init__)
MODULES = sorted({obj.__name__ if inspect.ismodule(obj) else obj.__module__ for obj in PUBLIC.values()} | {"cerbero_hf"})
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_every_public_name_has_an_example():
    missing = [name for name, obj in PUBLIC.items() if ">>> " not in (obj.__doc__ or "")]
    assert not missing, f"public names without an example (`Examples:` with >>> lines) in their docstring: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(module), optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {module} failed (above)"
