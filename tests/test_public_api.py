"""The public face: every name a user needs comes from ``cerbero_hf``, loaded on first use."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import cerbero_hf

HEAVY = ("torch", "datasets", "transformers", "trl", "ray", "sentence_transformers", "peft")


def test_import_cerbero_hf_loads_no_heavy_library():
    code = "import sys, json, cerbero_hf; print(json.dumps(sorted(m for m in %r if m in sys.modules)))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_every_public_name_resolves_to_where_it_lives():
    assert cerbero_hf.__all__ == ["__version__", *sorted(cerbero_hf._PUBLIC)]
    for name, module in cerbero_hf._PUBLIC.items():
        value = getattr(cerbero_hf, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert set(cerbero_hf.__all__) <= set(dir(cerbero_hf))


def test_the_names_the_issue_lists_are_public():
    needed = {"SelfChat", "EndpointBackend", "LocalBackend", "EmbeddingStore", "build_seeds", "Refiner",
              "default_rules", "PLLScorer", "QualityFilter", "TrainConfig", "train", "evaluate_tasks", "TaskConfig",
              "publish_dataset", "publish_model", "publish_metric", "load_recipe", "run_recipe", "load_language",
              "LanguagePack", "SeedsConfig", "GenerateConfig", "RefineConfig", "ScoreConfig", "FilterConfig",
              "EvaluateConfig", "PublishConfig", "InputError"}
    assert needed <= set(cerbero_hf.__all__)


def test_an_unknown_name_is_an_attribute_error():
    try:
        cerbero_hf.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("no AttributeError")
