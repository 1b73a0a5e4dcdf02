"""The train stage across ranks: the training rows prepared once, the set-up recorded, a resume checked.

Under a launcher (``torchrun``, ``accelerate launch``; see :mod:`cerbero_hf.distributed`) the main process prepares
the rows for every rank (:func:`training_data`); :func:`how_trained` is what ``cerbero_train.json`` and the card
record of the set-up; :func:`batch_note` the start's one line on the global batch; :func:`check_resume` refuses a
checkpoint written by another number of processes. In one process each does the plain thing.
"""

from __future__ import annotations

import json
from pathlib import Path

from cerbero_hf import distributed
from cerbero_hf.errors import InputError
from cerbero_hf.stages.train.config import TrainConfig
from cerbero_hf.stages.train.data import build_training_set

PREPARED = ".cerbero-hf-data"  # the training rows the main process prepared for every rank (removed at the end)
PAPER_GLOBAL_BATCH = 128  # Table 1: micro batch 4 x gradient accumulation 4 x 8 GPUs


def _split(ds, fraction: float, seed: int):
    n_eval = int(round(len(ds) * fraction))
    if n_eval == 0 or n_eval >= len(ds):
        return ds, None
    parts = ds.train_test_split(test_size=n_eval, shuffle=False, seed=seed)
    return parts["train"], parts["test"]


def training_data(cfg: TrainConfig):
    """``(train rows, eval rows or None, data report)``: the corpora mixed, shuffled and split.

    Under a launcher the main process prepares them once into ``OUTPUT/.cerbero-hf-data`` and every rank reads
    that copy, so TRL's tokenisation (which runs on the main process first) is cached next to it and the other
    ranks read the cache instead of tokenising the corpus again.
    """
    if not distributed.launched():
        ds, report = build_training_set(cfg.corpora, condition=cfg.condition, seed=cfg.seed, language=cfg.language)
        return (*_split(ds, cfg.eval_fraction, cfg.seed), report)
    from datasets import load_from_disk

    folder = cfg.output_path() / PREPARED

    def prepare() -> None:
        import shutil

        ds, report = build_training_set(cfg.corpora, condition=cfg.condition, seed=cfg.seed, language=cfg.language)
        shutil.rmtree(folder, ignore_errors=True)
        for name, part in zip(("train", "eval"), _split(ds, cfg.eval_fraction, cfg.seed)):
            if part is not None:
                part.select_columns(["messages"]).save_to_disk(str(folder / name))
        (folder / "report.json").write_text(json.dumps(report, ensure_ascii=False, default=str), encoding="utf-8")

    distributed.on_main(prepare)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    train_ds = load_from_disk(str(folder / "train"))
    eval_ds = load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
    return train_ds, eval_ds, report


def global_batch(cfg: TrainConfig) -> int:
    """Sequences per optimizer step over every rank: per-device batch x gradient accumulation x processes."""
    return cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * distributed.world_size()


def how_trained(cfg: TrainConfig, trainer) -> dict:
    """The set-up a reader needs to reproduce the run: processes, batch sizes, launcher, distributed type."""
    world = distributed.world_size()
    kind = getattr(trainer.accelerator.state.distributed_type, "value", str(trainer.accelerator.state.distributed_type))
    return {"world_size": world, "per_device_batch_size": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "global_batch_size": global_batch(cfg),
            "launcher": distributed.launcher(), "distributed_type": "none" if kind == "NO" else kind,
            "backend": getattr(trainer.accelerator.state, "backend", None) if world > 1 else None}


def batch_note(cfg: TrainConfig) -> str | None:
    """One line when the global batch differs from the paper's (Table 1: 4 x accumulation 4 x 8 GPUs = 128)."""
    world, size = distributed.world_size(), global_batch(cfg)
    if size == PAPER_GLOBAL_BATCH:
        return None
    return (f"global batch {size} = {cfg.per_device_train_batch_size} per device x {cfg.gradient_accumulation_steps} "
            f"accumulation x {world} process{'es' if world > 1 else ''}; the paper's recipe: 4 x 4 x 8 = "
            f"{PAPER_GLOBAL_BATCH} (Table 1)")


def check_resume(last: str | None) -> None:
    """Refuse to resume a checkpoint written by another number of processes: the data order and the optimizer
    steps would not line up (one line; ``--resume false`` starts over)."""
    if last is None:
        return
    states = sorted(p.name for p in Path(last).glob("rng_state*.pth"))
    if not states:
        return
    then = 1 if states == ["rng_state.pth"] else len([s for s in states if s != "rng_state.pth"])
    now = distributed.world_size()
    if then != now:
        raise InputError(f"{Path(last).name} was written by {then} process{'es' if then > 1 else ''} and this run has "
                         f"{now}: resume with {then}, or pass --resume false to start over", file=str(last))
