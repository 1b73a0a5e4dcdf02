"""cerbero-hf: the Cerbero-7B method (arXiv 2311.15698) as a Hugging Face Datasets and Hub plugin.

Every name a user needs is importable from here, and loaded on first use (PEP 562): ``import cerbero_hf``
imports neither torch, datasets, transformers, trl nor ray. The names are the contract; the modules behind
them (listed in :data:`_PUBLIC`) are where they live today and may move.

>>> from cerbero_hf import SelfChat, EndpointBackend, PLLScorer, QualityFilter, run_recipe  # doctest: +SKIP
>>> import cerbero_hf
>>> "SelfChat" in cerbero_hf.__all__
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The project's home and its documentation, linked from every published card (cerbero_hf.cards).
REPO_URL = "https://github.com/cerbero-hf/cerbero-hf"
DOCS_URL = f"{REPO_URL}/blob/main/docs"

# public name -> the module that defines it
_PUBLIC = {
    # errors, languages, the recipe
    "InputError": "cerbero_hf.errors",
    "LanguagePack": "cerbero_hf.languages",
    "load_language": "cerbero_hf.languages",
    "load_recipe": "cerbero_hf.recipe",
    "run_recipe": "cerbero_hf.recipe",
    "EngineConfig": "cerbero_hf.engine",
    "load_table": "cerbero_hf.io",
    "save_hub_folder": "cerbero_hf.hub_folder",
    "load_config": "cerbero_hf.io",
    # seeds
    "SeedsConfig": "cerbero_hf.stages.seeds.stage",
    "build_seeds": "cerbero_hf.stages.seeds.oasst",
    "seeds_from_oasst": "cerbero_hf.stages.seeds.oasst",
    "write_seeds": "cerbero_hf.stages.seeds.oasst",
    # self-chat generation
    "GenerateConfig": "cerbero_hf.stages.generate.config",
    "SelfChat": "cerbero_hf.stages.generate.selfchat",
    "EndpointBackend": "cerbero_hf.stages.generate.backends.endpoint",
    "LocalBackend": "cerbero_hf.stages.generate.backends.local",
    "EmbeddingStore": "cerbero_hf.stages.generate.store",
    "seed_messages": "cerbero_hf.stages.generate.corpus",
    # refinement
    "RefineConfig": "cerbero_hf.stages.refine.stage",
    "Refiner": "cerbero_hf.stages.refine.refiner",
    "refine": "cerbero_hf.stages.refine.refiner",
    "default_rules": "cerbero_hf.stages.refine.rules",
    "Schema": "cerbero_hf.stages.refine.rules",
    "TagRepair": "cerbero_hf.stages.refine.rules",
    "EmptyConversation": "cerbero_hf.stages.refine.rules",
    "SystemPrompts": "cerbero_hf.stages.refine.rules",
    "TrailingUserTurns": "cerbero_hf.stages.refine.rules",
    "TurnOrder": "cerbero_hf.stages.refine.rules",
    "LanguageCheck": "cerbero_hf.stages.refine.rules",
    "ForeignLanguage": "cerbero_hf.stages.refine.rules",
    "DuplicateMajority": "cerbero_hf.stages.refine.rules",
    # quality
    "ScoreConfig": "cerbero_hf.stages.quality.stage",
    "FilterConfig": "cerbero_hf.stages.quality.stage",
    "PLLScorer": "cerbero_hf.stages.quality.pll",
    "QualityFilter": "cerbero_hf.stages.quality.filter",
    # training
    "TrainConfig": "cerbero_hf.stages.train.config",
    "train": "cerbero_hf.stages.train.trainer",
    # evaluation
    "EvaluateConfig": "cerbero_hf.stages.evaluate.stage",
    "TaskConfig": "cerbero_hf.stages.evaluate.tasks",
    "task_configs": "cerbero_hf.stages.evaluate.tasks",
    "evaluate_tasks": "cerbero_hf.stages.evaluate.runner",
    "evaluate_model": "cerbero_hf.stages.evaluate.stage",
    "evaluation_settings": "cerbero_hf.stages.evaluate.tasks",
    "prompt_format": "cerbero_hf.stages.evaluate.prompts",
    "LocalGenerator": "cerbero_hf.stages.evaluate.generators",
    "EndpointGenerator": "cerbero_hf.stages.evaluate.generators",
    "card_scores": "cerbero_hf.stages.evaluate.runner",
    # publishing
    "PublishConfig": "cerbero_hf.stages.publish.stage",
    "publish_dataset": "cerbero_hf.stages.publish.hub",
    "publish_model": "cerbero_hf.stages.publish.hub",
    "publish_metric": "cerbero_hf.stages.publish.hub",
    # the run report (the package cerbero_hf.report is itself the callable)
    "report": "cerbero_hf.report",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str):
    """Load a public name on first use; ``__version__`` is the installed distribution's (pyproject.toml is the
    one source)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("cerbero-hf")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'cerbero_hf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load lazily above
    from cerbero_hf.engine import EngineConfig  # noqa: F401
    from cerbero_hf.errors import InputError  # noqa: F401
    from cerbero_hf.hub_folder import save_hub_folder  # noqa: F401
    from cerbero_hf.io import load_config, load_table  # noqa: F401
    from cerbero_hf.languages import LanguagePack, load_language  # noqa: F401
    from cerbero_hf.recipe import load_recipe, run_recipe  # noqa: F401
    from cerbero_hf.report import report  # noqa: F401
    from cerbero_hf.stages.evaluate.generators import EndpointGenerator, LocalGenerator  # noqa: F401
    from cerbero_hf.stages.evaluate.prompts import prompt_format  # noqa: F401
    from cerbero_hf.stages.evaluate.runner import card_scores, evaluate_tasks  # noqa: F401
    from cerbero_hf.stages.evaluate.stage import EvaluateConfig, evaluate_model  # noqa: F401
    from cerbero_hf.stages.evaluate.tasks import TaskConfig, evaluation_settings, task_configs  # noqa: F401
    from cerbero_hf.stages.generate.backends.endpoint import EndpointBackend  # noqa: F401
    from cerbero_hf.stages.generate.backends.local import LocalBackend  # noqa: F401
    from cerbero_hf.stages.generate.config import GenerateConfig  # noqa: F401
    from cerbero_hf.stages.generate.corpus import seed_messages  # noqa: F401
    from cerbero_hf.stages.generate.selfchat import SelfChat  # noqa: F401
    from cerbero_hf.stages.generate.store import EmbeddingStore  # noqa: F401
    from cerbero_hf.stages.publish.hub import publish_dataset, publish_metric, publish_model  # noqa: F401
    from cerbero_hf.stages.publish.stage import PublishConfig  # noqa: F401
    from cerbero_hf.stages.quality.filter import QualityFilter  # noqa: F401
    from cerbero_hf.stages.quality.pll import PLLScorer  # noqa: F401
    from cerbero_hf.stages.quality.stage import FilterConfig, ScoreConfig  # noqa: F401
    from cerbero_hf.stages.refine.refiner import Refiner, refine  # noqa: F401
    from cerbero_hf.stages.refine.rules import (  # noqa: F401
        DuplicateMajority,
        EmptyConversation,
        ForeignLanguage,
        LanguageCheck,
        Schema,
        SystemPrompts,
        TagRepair,
        TrailingUserTurns,
        TurnOrder,
        default_rules,
    )
    from cerbero_hf.stages.refine.stage import RefineConfig  # noqa: F401
    from cerbero_hf.stages.seeds.oasst import build_seeds, seeds_from_oasst, write_seeds  # noqa: F401
    from cerbero_hf.stages.seeds.stage import SeedsConfig  # noqa: F401
    from cerbero_hf.stages.train.config import TrainConfig  # noqa: F401
    from cerbero_hf.stages.train.trainer import train  # noqa: F401
