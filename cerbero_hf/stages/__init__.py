"""The pipeline's stages, one folder each, and :data:`STAGES`, their ordered registry.

``seeds`` → ``generate`` ; ``refine`` → ``score`` → ``filter`` → ``train`` → ``evaluate`` → ``publish``

Each stage module (``<stage>/stage.py``) defines a config dataclass, a typed result, ``run(config, ctx)``
and ``STAGE`` (:class:`cerbero_hf.stages.base.Stage`). Importing the registry imports only those small
modules; the heavy libraries are imported inside ``run``.
"""

from __future__ import annotations

import importlib

# stage name -> module holding its STAGE (quality holds two: score and filter)
_MODULES = {
    "seeds": "cerbero_hf.stages.seeds.stage",
    "generate": "cerbero_hf.stages.generate.stage",
    "refine": "cerbero_hf.stages.refine.stage",
    "score": "cerbero_hf.stages.quality.stage",
    "filter": "cerbero_hf.stages.quality.stage",
    "train": "cerbero_hf.stages.train.stage",
    "evaluate": "cerbero_hf.stages.evaluate.stage",
    "publish": "cerbero_hf.stages.publish.stage",
}
NAMES = tuple(_MODULES)


def get_stage(name: str):
    """The :class:`~cerbero_hf.stages.base.Stage` called ``name``."""
    module = importlib.import_module(_MODULES[name])
    return getattr(module, "STAGES", {}).get(name) or module.STAGE


def all_stages() -> list:
    """Every stage, in pipeline order."""
    return [get_stage(name) for name in NAMES]
