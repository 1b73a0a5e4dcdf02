"""Paper Fig. 1 for a run: nearest-neighbour embedding distances of the refined corpus, before and after refining.

The paper embedded every message of Fauno and of the refined Fauno and drew, per message, the cosine distances to
its 10 nearest neighbours (identical embeddings ignored). The report does the same on a sample of messages
(:data:`SAMPLE` per side, drawn with the report's seed): "before" is the refine stage's input (its kept and
rejected rows), "after" its kept rows. It is the one part of the report that runs a model: the run's own embedder
(the generate stage's ``embedder``, else the language pack's), and only when that model is on this machine (a
folder, or in the Hugging Face cache), so writing a report never reaches the network.
"""

from __future__ import annotations

import random
from pathlib import Path

from cerbero_hf.report.tables import config_files, sample_rows

SAMPLE = 250  # messages embedded per side: about 13 s in all on 2 CPU cores with all-MiniLM-L6-v2, 6 s of it loading
K = 10  # nearest neighbours per message, as in the paper
SAME = 1e-6  # a distance below this is an identical embedding (a repeated message): ignored, as in the paper


def distances(vectors, k: int = K):
    """Per row of unit ``vectors``, the cosine distances to its ``k`` nearest other rows (identical rows ignored),
    as one flat float array.

    Examples:
        >>> import numpy as np
        >>> from cerbero_hf.report.neighbours import distances
        >>> v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
        >>> distances(v, k=1).round(2).tolist()  # the repeated [1, 0] is not its own neighbour
        [0.4, 0.4, 0.2, 0.2]
    """
    import numpy as np

    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) < 2:
        return np.zeros(0, dtype=np.float32)
    dist = 1.0 - np.clip(v @ v.T, -1.0, 1.0)
    dist[dist < SAME] = np.inf  # itself and its exact copies
    k = min(k, len(v) - 1)
    nearest = np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1)
    return nearest[np.isfinite(nearest)]


def resolve_embedder(manifest: dict, embedder: str | None = None) -> tuple[str | None, str]:
    """``(model, "")`` for the embedder to use, or ``(None, why not)``: ``embedder`` when given, else the run's."""
    from cerbero_hf.languages import load_language
    from cerbero_hf.report.measures import stage_config

    generate, refine = stage_config(manifest, "generate"), stage_config(manifest, "refine")
    name = embedder or generate.get("embedder")
    if not name:
        name = load_language(generate.get("language") or refine.get("language") or "it").embedder
    if Path(name).is_dir():
        return str(name), ""
    if not Path(name).is_absolute() and name.count("/") <= 1:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return name, ""
    return None, (f"the embedder {name} is not on this machine (not a folder, not in the Hugging Face cache); "
                  "pass one with cerbero-hf report --embedder")


def sample_messages(files: list[Path], n: int, rng: random.Random) -> list[str]:
    """Up to ``n`` message texts of the rows in ``files``: ``n`` sampled rows' messages, shuffled, cut to ``n``."""
    rows = sample_rows(files, n, rng)
    texts = [m["content"] for r in rows for m in (r.get("messages") or []) if (m.get("content") or "").strip()]
    rng.shuffle(texts)
    return texts[:n]


def neighbours(manifest: dict, where: dict, embedder: str | None = None, *, sample: int = SAMPLE,
               seed: int = 0) -> dict | None:
    """Fig. 1 of the run: ``{"before", "after"}`` distance arrays, the embedder and the messages embedded; or
    ``{"skipped": why}``; ``None`` when no refine stage ran (``embedder="none"`` also skips it)."""
    folder = where.get(("refine", "refined"))
    if folder is None:
        return None
    if embedder == "none":
        return {"skipped": "skipped (--embedder none)"}
    model, why = resolve_embedder(manifest, embedder)
    if model is None:
        return {"skipped": why}
    from cerbero_hf.stages.generate.embedder import Embedder

    kept = config_files(folder)
    sides = {"before": kept + config_files(folder, "rejected"), "after": kept}
    texts = {side: sample_messages(files, sample, random.Random(f"{seed}:fig1:{side}")) for side, files in sides.items()}
    from transformers.utils import logging

    out: dict = {"embedder": model, "k": K, "sample": sample}
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # the report prints one line: no "Loading weights" bar
    try:
        encoder = Embedder(model, batch_size=16)  # short batches pad less: 25 % faster than 64 on a CPU
        for side, batch in texts.items():
            out[side] = distances(encoder.encode(batch))
            out[f"{side}_messages"] = len(batch)
    finally:
        if shown:
            logging.enable_progress_bar()
    return out
