"""Package data read at run time, found through :mod:`importlib.resources` (works from a wheel).

- ``cards/``: the card templates :mod:`cerbero_hf.cards` renders: published dataset cards
  (``generated_corpus``, ``refined_corpus``, ``training_mix``), the model card (``model``) and the working
  cards of stage output folders (``folder`` around a ``stage`` body). The repository's
  ``dataset_scripts/*/README.md.j2`` and ``model_cards/cerbero.md.j2`` are the published copies; a test keeps
  them identical.
- ``recipes/demo.yaml``: the offline demo recipe.
- ``mlm_nll/``: the ``evaluate`` module published as a Space (``dataset_scripts/mlm_nll/`` is its copy).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def resource(*parts: str) -> Path:
    """The path of a packaged resource file or folder, e.g. ``resource("cards", "model.md.j2")``."""
    node = files(__name__).joinpath(*parts)
    with as_file(node) as path:  # a real path for an installed (unzipped) package
        return Path(path)


def card_template(name: str) -> Path:
    """A card template by name (``generated_corpus``, ``refined_corpus``, ``training_mix``, ``model``, ``folder``,
    ``stage``)."""
    return resource("cards", f"{name}.md.j2")
