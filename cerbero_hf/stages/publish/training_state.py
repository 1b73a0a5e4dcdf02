"""What of a trained model folder is training state (left out when publishing a model), and the LoRA hint.

``transformers.Trainer`` leaves resume state in its output folder: ``checkpoint-*/`` (and DeepSpeed's
``global_step*/``) folders holding ``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``, ``rng_state*.pth`` and
``trainer_state.json``. None of it is needed to load the model, and it is large. A LoRA output
(``adapter_config.json``, no ``config.json``) is an adapter: it loads only with PEFT on top of its base model.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

STATE_DIRS = ("checkpoint-*", "global_step*")  # Trainer / DeepSpeed checkpoints: resume state, not the model
STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json")


def is_training_state(path: str) -> bool:
    """True for a repo path that is training state (see the module docstring), not part of the model."""
    *dirs, name = path.split("/")
    return (any(fnmatch.fnmatch(d, p) for d in dirs for p in STATE_DIRS)
            or any(fnmatch.fnmatch(name, p) for p in STATE_FILES))


def lora_hint(folder: Path) -> str:
    """The one-line hint shown when a LoRA adapter folder is published: what it needs, where the merged model is."""
    import json

    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        base = None
    merged = Path(str(folder) + "-merged")
    on = f" on top of {base}" if base else ""
    then = (f"publish {merged} for a standalone model" if (merged / "config.json").is_file()
            else f"for a standalone model, train with --merge-lora and publish {merged}")
    return f"note: {folder} is a LoRA adapter: it loads with PEFT{on}; {then}."
