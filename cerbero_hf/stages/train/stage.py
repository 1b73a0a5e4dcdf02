"""The ``train`` stage: supervised fine-tuning of a base model on the filtered corpora with TRL (paper §4).

Config: :class:`~cerbero_hf.stages.train.config.TrainConfig` (TRL's ``SFTConfig`` with the paper's
defaults and the Cerbero fields; recipe section ``train``, CLI ``cerbero-hf train``). Importing it imports
TRL, so this module names it through :class:`TrainConfigRef`, which loads it when a recipe is read.
Input: the ``filter`` stage's ``generated`` and ``refined`` folders (columns ``id``, ``messages``,
``source``), trained on as the corpora ``generated`` and ``fauno`` unless ``corpora`` is set.
Output: a model folder (``save_pretrained`` layout, README model card, ``cerbero_train.json``), and
``<folder>-merged`` for a merged LoRA model.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cerbero_hf.errors import InputError
from cerbero_hf.stages.base import Context, Stage
from cerbero_hf.stages.train.result import TrainResult

if TYPE_CHECKING:  # importing it imports TRL
    from cerbero_hf.stages.train.config import TrainConfig

# filter output -> corpus name (the names the condition presets pick)
CORPUS_NAMES = {"generated": "generated", "refined": "fauno"}


class TrainConfigRef:
    """Stands for :class:`~cerbero_hf.stages.train.config.TrainConfig` without importing TRL.

    :meth:`from_recipe` builds the real config (importing TRL) to check the section; a disabled stage keeps
    its section as written (``to_dict``). Importing this module does not import TRL.
    """

    SECTION = "train"

    def __init__(self, section: dict | None = None):
        self.section = dict(section or {})

    def to_dict(self) -> dict:
        return dict(self.section)

    @classmethod
    def load(cls) -> type[TrainConfig]:
        """The real config class (imports TRL)."""
        from cerbero_hf.stages.train.config import TrainConfig

        return TrainConfig

    @classmethod
    def from_recipe(cls, section: dict | None, *, file: str | None = None, defaults: dict | None = None,
                    enabled: bool = True) -> Any:
        """The recipe's ``train:`` mapping -> a validated ``TrainConfig`` (a ``TrainConfigRef`` when disabled).

        Unknown keys, types, ranges and choices are one-line :class:`~cerbero_hf.errors.InputError` s naming
        ``train.<key>``; ``defaults`` (the recipe's ``language`` and ``seed``) fill keys the section omits.
        """
        config = cls.load().from_recipe(section, file=file, defaults=defaults, enabled=enabled)
        return config if enabled else cls(section)  # a disabled section is checked too, and kept as written


def filter_corpora(ctx: Context) -> list[str]:
    """The ``filter`` stage's output folders as ``NAME=PATH`` corpus specs (``generated``, ``fauno``)."""
    filtered = ctx.input("filter")
    corpora = [f"{name}={getattr(filtered, key)}" for key, name in CORPUS_NAMES.items()
               if getattr(filtered, key, None)]
    if not corpora:
        raise InputError("stage 'train' found no filtered corpus: enable 'filter' (or set train.corpora)",
                         column="train.corpora")
    return corpora


def run_train(config, ctx: Context) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.corpora`` (default: the filter stage's folders) into
    ``config.output_dir`` (default: ``ctx.output``)."""
    from cerbero_hf.stages.train.trainer import event_callback, train

    if isinstance(config, TrainConfigRef):
        config = TrainConfigRef.load().from_recipe(config.section, defaults={"language": ctx.language,
                                                                              "seed": ctx.seed})
    changes: dict[str, Any] = {}
    if not config.corpora:
        changes["corpora"] = filter_corpora(ctx)
    if not config.output_dir:
        changes["output_dir"] = str(ctx.output)
    if ctx.overwrite:  # cerbero-hf run --overwrite
        changes["overwrite"] = True
    on_event = ctx.on_event
    callbacks = [event_callback(on_event)] if on_event is not None else []  # the recipe console's rows
    on_note = (lambda line: on_event("note", {"message": line})) if on_event is not None else None
    return train(dataclasses.replace(config, **changes) if changes else config, callbacks=callbacks, on_note=on_note)


STAGE = Stage("train", TrainConfigRef, run_train, TrainResult, inputs=("filter",), folder="model",
              help=__doc__.splitlines()[0])
