"""What a training run produced (:class:`TrainResult`): returned by :func:`~cerbero_hf.stages.train.trainer.train`
and by the ``train`` stage (:mod:`cerbero_hf.stages.train.stage`, which re-exports it). It lives here, apart
from both, so the stage can call the trainer and the trainer can build the result without importing each
other."""

from __future__ import annotations

from dataclasses import dataclass

from cerbero_hf.stages.base import Result, output


@dataclass
class TrainResult(Result):
    """What a run produced: figures for the summary and the paths written."""

    rows: int = 0
    rejected: int = 0  # corpus rows not trained on (wrong types, oversized messages, ...): see the manifest
    steps: int = 0
    tokens: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    seconds: float | None = None
    resumed_from: str | None = None
    model: str | None = output()   # the model folder
    merged: str | None = output()  # the merged LoRA model folder, when merge_lora
    hub: str | None = output()     # the Hub repo id, when push_to_hub
