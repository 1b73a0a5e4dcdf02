"""Folder-level PLL scoring and NLL filtering: what ``cerbero-hf score`` and the ``score`` / ``filter`` stages run.

- :func:`score_dataset`: score every message of a corpus in chunks; chunks are saved under
  ``<work_dir>/.score-partial/`` so an interrupted run resumes where it stopped.
- :func:`score_and_filter`: score, apply :class:`~cerbero_hf.stages.quality.filter.QualityFilter`, and write a
  Hub-layout folder (``default`` kept, ``rejected`` removed parts with reasons) with a card.
- :func:`score_folder` / :func:`filter_folder`: the two halves, for the recipe's ``score`` and ``filter`` stages.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from cerbero_hf.errors import InputError
from cerbero_hf.stages.quality.resume import PARTIAL, resume_key


def score_dataset(ds, scorer, work_dir, *, chunk_rows: int = 256, progress=None):
    """Return ``ds`` with ``meta`` carrying per-message NLLs (:class:`~cerbero_hf.stages.quality.pll.PLLScorer` output).

    ``progress(n_rows)`` is called after every forward pass of the scorer with the rows that pass advanced
    (a fraction of the chunk's rows, in proportion to its masked copies scored), so the advances of a chunk add
    up to its rows. Chunks already on disk for the same input and scorer settings are reused (one advance of
    their rows); the partial folder is removed by the caller once the output is written.
    """
    partial = Path(work_dir) / PARTIAL
    scorer._load()
    key = resume_key(partial, ds._fingerprint, scorer.model_id, scorer.variant, scorer.max_length)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "key").write_text(key)
    metas = []
    for start in range(0, len(ds), chunk_rows):
        f = partial / f"chunk-{start:09d}.json"
        rows = min(chunk_rows, len(ds) - start)
        if f.exists():
            part = json.loads(f.read_text())
            if progress:
                progress(rows)
        else:
            advance = _RowAdvances(progress, rows) if progress is not None else None
            try:
                part = scorer(ds[start:start + chunk_rows], progress=advance)["meta"]
            except InputError as err:  # the scorer counts rows within the chunk: name the row of the input
                row = None if err.row is None else err.row + start
                raise InputError(err.message, file=err.file, row=row, column=err.column) from None
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps(part, ensure_ascii=False))
            tmp.replace(f)
            if advance is not None:
                advance.finish()
        metas.extend(part)
    return ds.remove_columns("meta").add_column("meta", metas).select_columns(ds.column_names)


class _RowAdvances:
    """The scorer's ``(copies done, copies in all)`` reports of one chunk as row advances adding up to ``rows``."""

    def __init__(self, progress: Callable[[float], None], rows: int):
        self.progress, self.rows, self.done = progress, rows, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = self.rows * done / total if total else self.rows
        if now > self.done:
            self.progress(now - self.done)
            self.done = now

    def finish(self) -> None:  # a chunk with nothing to score still advances by its rows
        if self.done < self.rows:
            self.progress(self.rows - self.done)


def card_body(model: str, variant: str, max_nll: float | None, policy: str | None, summaries: dict,
              counts: dict) -> str:
    """The Markdown of a scored (and possibly filtered) corpus card."""
    if max_nll is None:
        rule = "Nothing was removed yet: the `filter` stage (or `cerbero-hf score`) applies the NLL cut."
    else:
        rule = (f"Messages were kept only when their NLL is < {max_nll:g} (policy `{policy}`). "
                "Removed parts are in the `rejected` config with a `reason`.")
    from cerbero_hf.cards import stage_body, table

    rows = [(name, s["count"], f"{s['mean']:.3f}", f"{s['median']:.3f}", f"{100 * s['share_under']:.1f} %")
            for name, s in summaries.items() if s["count"]]
    return stage_body(
        "MLM NLL-scored corpus",
        f"Every message was scored with the masked LM `{model}` (pseudo-log-likelihood, variant `{variant}`, "
        f"natural log, mean over tokens; Cerbero-7B §3.4, Salazar et al. 2020). {rule} Per-message scores "
        "are in `meta` (`nll`, `nll_tokens`, `nll_mean`).",
        sections=[("", f"Conversations: {counts['rows']} in, {counts['kept']} kept, {counts['rejected']} rejected "
                       f"rows. Messages: {counts['messages']} in, {counts['kept_messages']} kept."),
                  ("", table(["corpus", "messages", "mean", "median", "share < max"], rows,
                             right=("messages", "mean", "median", "share < max")))])


def _write(out: Path, kept, rejected, scorer_model: str, variant: str, max_nll, policy, summaries, counts) -> None:
    """Write ``default`` and ``rejected`` (always both: an empty one is written with its schema, announced in the
    README only when datasets can load it, see :mod:`cerbero_hf.io`) and the card."""
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import rejected_features

    if rejected is None:  # the score stage rejects nothing; its rejected config is empty, with the schema
        rejected = Dataset.from_dict({k: [] for k in rejected_features()}, features=rejected_features())
    save_hub_folder(out, {"default": kept, "rejected": rejected}, card_data={"tags": ["cerbero-hf", "mlm-nll"]},
                    body=card_body(scorer_model, variant, max_nll, policy, summaries, counts))


def _filter_and_write(scored, out: Path, quality, model: str, variant: str) -> tuple[dict, dict]:
    """Split a scored dataset with ``quality``, write ``out`` (kept + rejected + card); returns (counts, summaries)."""
    from cerbero_hf.stages.quality.summary import message_nlls, summarize

    kept, rejected = quality.split(scored)
    all_nll = message_nlls(scored)
    summaries = {"input": summarize(all_nll, threshold=quality.max_nll),
                 "kept": summarize(message_nlls(kept), threshold=quality.max_nll)}
    counts = {"rows": len(scored), "kept": len(kept), "rejected": len(rejected), "messages": len(all_nll),
              "kept_messages": sum(len(m) for m in kept["messages"])}
    _write(out, kept, rejected, model, variant, quality.max_nll, quality.policy, summaries, counts)
    return counts, summaries


def _score(ds, scorer, out, engine, source, chunk_rows: int, progress, stats: dict):
    """:func:`score_dataset` in this process, or on Ray when ``engine`` says so (:mod:`.ray_score`)."""
    if engine is not None and engine.ray:
        from cerbero_hf.stages.quality.ray_score import score_dataset_ray

        return score_dataset_ray(ds, scorer, out, engine, source=source, progress=progress, stats=stats)
    return score_dataset(ds, scorer, out, chunk_rows=chunk_rows, progress=progress)


def score_and_filter(ds, out, scorer, quality, *, chunk_rows: int = 256, progress=None, engine=None,
                     source=None) -> dict:
    """Score ``ds``, filter it with ``quality`` and write ``out``; returns counts, summaries and seconds (and
    ``ray``: blocks, skipped, workers, nodes, retries when ``engine`` is Ray; ``source``: where ``ds`` was read
    from)."""
    out = Path(out)
    t0 = time.perf_counter()
    stats: dict = {}
    scored = _score(ds, scorer, out, engine, source, chunk_rows, progress, stats)
    seconds = time.perf_counter() - t0
    counts, summaries = _filter_and_write(scored, out, quality, scorer.model_id, scorer.variant)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return {"counts": counts, "summaries": summaries, "seconds": seconds, "ray": stats or None}


def score_folder(src, dest, scorer, *, chunk_rows: int = 256, progress=None, engine=None) -> dict:
    """Score the kept rows of corpus folder ``src`` into ``dest`` (every row kept); returns the NLL summary.

    ``progress(done, total)``: rows scored so far (moving with every forward pass; per block on Ray) and rows in
    all. ``engine``: an :class:`~cerbero_hf.engine.EngineConfig` (Ray when ``engine.ray``), or None (here).
    """
    from cerbero_hf.io import load_table
    from cerbero_hf.stages.quality.summary import message_nlls, summarize

    ds = load_table(src)
    done = [0.0]

    def advance(n: float) -> None:
        done[0] += n
        progress(done[0], len(ds))

    scored = _score(ds, scorer, dest, engine, src, chunk_rows, advance if progress else None, {})
    nlls = message_nlls(scored)
    summary = summarize(nlls)
    counts = {"rows": len(ds), "kept": len(ds), "rejected": 0, "messages": len(nlls), "kept_messages": len(nlls)}
    _write(Path(dest), scored, None, scorer.model_id, scorer.variant, None, None, {"input": summary}, counts)
    shutil.rmtree(Path(dest) / PARTIAL, ignore_errors=True)
    return summary


def filter_folder(src, dest, quality) -> tuple[int, int]:
    """Apply ``quality`` to the scored folder ``src`` and write ``dest``; returns (kept rows, rejected rows)."""
    from cerbero_hf.io import load_table

    scored = load_table(src)
    first = json.loads(scored["meta"][0]) if len(scored) else {}
    model, variant = first.get("nll_model") or "", first.get("nll_variant") or "pll"
    counts, _ = _filter_and_write(scored, Path(dest), quality, model, variant)
    return counts["kept"], counts["rejected"]
