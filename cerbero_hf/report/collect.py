"""What a run's report shows, read from the run's own outputs: ``manifest.json`` and the stages' folders.

:func:`collect` returns one plain mapping (numbers, sampled rows, per-message values) that
:mod:`cerbero_hf.report.html` renders. Counts are the manifest's, as the stages recorded them; what the
manifest does not hold (rules' reasons, NLL and similarity distributions, lengths, the loss curve) is read
from the stages' outputs, never recomputed another way; only Fig. 1 embeds a sample of messages
(:mod:`.neighbours`). Stages that did not run are simply absent.
"""

from __future__ import annotations

import random
from pathlib import Path

from cerbero_hf.report.manifest import done, find_manifest, load_manifest, locate
from cerbero_hf.report.measures import details, evaluation, lengths, nll, similarity, training
from cerbero_hf.report.tables import config_files, row_count, rows_of_rule, rules_and_reasons, sample_rows

# stage -> the corpus folders it writes (manifest ``outputs`` keys); the order of the funnel
CORPUS_OUTPUTS = {"seeds": ("seeds",), "generate": ("generated",), "refine": ("refined",),
                  "score": ("generated", "refined"), "filter": ("generated", "refined")}
GENERATE_REASONS = {"rejected_similar": "cosine to a stored message above the threshold",
                    "rejected_empty": "empty or unparsable reply", "rejected_length": "too short or too long",
                    "rejected_too_long": "over max_chars"}


def folders(run_dir: Path, manifest: dict) -> dict[tuple[str, str], Path]:
    """``(stage, corpus) -> folder`` for every corpus folder a finished stage wrote."""
    out = {}
    for stage, entry in done(manifest).items():
        for corpus in CORPUS_OUTPUTS.get(stage, ()):
            found = locate(run_dir, manifest, (entry.get("outputs") or {}).get(corpus))
            if found is not None and found.is_dir():
                out[(stage, corpus)] = found
    return out


def _total(value) -> int:
    return sum(v for v in value.values() if isinstance(v, int)) if isinstance(value, dict) else int(value or 0)


def funnel(manifest: dict, where: dict[tuple[str, str], Path]) -> list[dict]:
    """One row per stage (and corpus): what went in, what was kept, what was rejected, by rule; the manifest's
    counts, with ``in`` of the filter read from the scored folder (the manifest has no such count)."""
    rows = []
    for stage, entry in done(manifest).items():
        c = entry.get("counts") or {}
        if stage == "seeds":
            rejected = c.get("rejected") or {}
            rows.append(dict(stage=stage, corpus="seeds", unit="messages", kept=c.get("messages", 0),
                             rejected=_total(rejected), rules={k: v for k, v in rejected.items() if v},
                             note=f"{c.get('paths', 0):,} seed conversations from {c.get('trees', 0):,} trees"))
        elif stage == "generate":
            kept = c.get("complete", 0) + c.get("short", 0)
            rows.append(dict(stage=stage, corpus="generated", unit="conversations", kept=kept,
                             rejected=c.get("failed", 0), rules={"selfchat": c["failed"]} if c.get("failed") else {},
                             note=f"{c.get('complete', 0):,} complete, {c.get('short', 0):,} short"))
            rules = {k.removeprefix("rejected_"): c[k] for k in GENERATE_REASONS if c.get(k)}
            rows.append(dict(stage=stage, corpus="generated", unit="candidate messages",
                             kept=c.get("accepted_messages", 0), rejected=c.get("rejected_messages", 0), rules=rules,
                             note=f"{c.get('requests_sent', 0):,} requests, {c.get('requests_replayed', 0):,} replayed"))
        elif stage == "refine":
            removed = c.get("removed") or {}
            rows.append(dict(stage=stage, corpus="refined", unit="conversations", kept=c.get("kept", 0),
                             rejected=c.get("rejected", 0), rules={k: v for k, v in removed.items() if v},
                             inputs=c.get("input"), note="changed: " + ", ".join(
                                 f"{k} {v:,}" for k, v in (c.get("changed") or {}).items() if v)))
        elif stage == "score":
            for corpus in CORPUS_OUTPUTS[stage]:
                if c.get(f"{corpus}_messages") is not None:
                    rows.append(dict(stage=stage, corpus=corpus, unit="messages scored", kept=c[f"{corpus}_messages"],
                                     rejected=0, rules={}, note=f"mean NLL {c.get(f'{corpus}_mean_nll')}"))
        elif stage == "filter":
            for corpus in CORPUS_OUTPUTS[stage]:
                if c.get(f"{corpus}_kept") is not None:
                    scored = where.get(("score", corpus))
                    rows.append(dict(stage=stage, corpus=corpus, unit="conversations", kept=c[f"{corpus}_kept"],
                                     rejected=c.get(f"{corpus}_rejected", 0),
                                     rules={"mlm_nll": c[f"{corpus}_rejected"]} if c.get(f"{corpus}_rejected") else {},
                                     inputs=row_count(config_files(scored)) if scored else None,
                                     note="rejected: removed parts (a truncated conversation is kept and rejected)"))
        elif stage == "train":
            rows.append(dict(stage=stage, corpus="training mix", unit="rows", kept=c.get("rows", 0),
                             rejected=c.get("rejected", 0), rules={}, note=f"{c.get('steps', 0):,} steps, "
                                                                           f"{c.get('tokens', 0):,} tokens"))
    for row in rows:
        row.setdefault("inputs", row["kept"] + row["rejected"])
        row["seconds"] = (manifest["stages"][row["stage"]] or {}).get("seconds")
    return rows


def rejections(where: dict[tuple[str, str], Path]) -> list[dict]:
    """Per stage and corpus with a ``rejected`` config: each rule's rows and reason patterns (from its columns)."""
    out = []
    for (stage, corpus), folder in where.items():
        if stage == "score":
            continue
        files = config_files(folder, "rejected")
        for rule, entry in rules_and_reasons(files).items():
            out.append(dict(stage=stage, corpus=corpus, rule=rule, count=entry["count"], patterns=entry["patterns"]))
    return out


def examples(where: dict[tuple[str, str], Path], k: int, seed: int) -> list[dict]:
    """``k`` sampled rejected rows per rule and ``k`` sampled kept rows, per stage and corpus."""
    out = []
    for (stage, corpus), folder in where.items():
        if stage == "score":
            continue
        rejected = config_files(folder, "rejected")
        by_rule = {}
        for rule in rules_and_reasons(rejected):
            by_rule[rule] = rows_of_rule(rejected, rule, k, random.Random(f"{seed}:{stage}:{corpus}:{rule}"))
        kept = sample_rows(config_files(folder), k, random.Random(f"{seed}:{stage}:{corpus}:kept"))
        out.append(dict(stage=stage, corpus=corpus, rejected=by_rule, kept=kept))
    return out


def collect(run_dir: str | Path, *, examples_per_rule: int = 3, seed: int = 0, embedder: str | None = None) -> dict:
    """Everything the report shows, for the run whose ``manifest.json`` is in ``run_dir`` (``embedder``: the model
    of Fig. 1, :func:`cerbero_hf.report.neighbours.neighbours`)."""
    from cerbero_hf.report.neighbours import neighbours

    path = find_manifest(run_dir)
    manifest = load_manifest(path)
    run = path.parent
    where = folders(run, manifest)
    stages = done(manifest)
    return {
        "run_dir": str(run), "manifest": manifest, "stages": list(stages),
        "funnel": funnel(manifest, where), "rejections": rejections(where),
        "examples": examples(where, examples_per_rule, seed),
        "nll": nll(manifest, where), "similarity": similarity(manifest, where),
        "neighbours": neighbours(manifest, where, embedder, seed=seed), "lengths": lengths(manifest, where),
        "train": training(run, manifest), "evaluation": evaluation(run, manifest), "details": details(manifest),
    }
