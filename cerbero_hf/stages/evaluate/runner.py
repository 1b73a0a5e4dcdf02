"""Run the evaluation tasks on a generator and collect the results (paper §4.2).

``evaluate_tasks(tasks, generator, fmt, ...)`` loads each task's evaluation split (the first ``limit``
items), draws the shots with the recorded seed, builds the few-shot chats, generates greedily, cleans
the answers and scores them. The returned dict is what ``cerbero-hf evaluate --output`` writes:

``{"model", "generator", "format", "stop", "seed", "limit", "language", "created", "tasks": {name:
{"n", "skipped", "unknown", "failed", "truncated", "metrics", "headline", "config"}}, "predictions"?}``

Metrics are percentages. SQuAD-it: ``f1``/``exact_match`` (language-aware normalisation, headline
``f1``) and ``f1_squad``/``exact_match_squad`` (official normaliser). EVALITA: ``macro_f1`` (headline),
``weighted_f1``, ``accuracy``; ``unknown`` counts answers that matched no label (scored as wrong).
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections import Counter
from typing import Any, Callable, Sequence

from cerbero_hf.stages.evaluate.generators import clean_answer
from cerbero_hf.stages.evaluate.metrics import UNKNOWN, classification_scores, parse_label, squad_metrics
from cerbero_hf.stages.evaluate.prompts import PromptFormat, ShotSampler, few_shot_messages
from cerbero_hf.stages.evaluate.tasks import TaskConfig, load_examples

HEADLINE = {"squad": "f1", "classification": "macro_f1"}


def build_chats(task: TaskConfig, queries, pool, seed: int, question: str = "") -> tuple[list[list[dict]], list]:
    """Few-shot chats for ``queries`` with shots from ``pool``; also returns each query's shot ids."""
    sampler = ShotSampler(pool, task.shots, seed, task=task.name, balanced=task.balanced)
    chats, shot_ids = [], []
    for q in queries:
        shots = sampler.shots_for(q)
        chats.append(few_shot_messages([(s.input, s.target) for s in shots], q.input, task.instruction,
                                       task.confirmation, question))
        shot_ids.append([s.id for s in shots])
    return chats, shot_ids


def run_task(task: TaskConfig, generator, fmt: PromptFormat, *, seed: int = 42, limit: int | None = None,
             stop: Sequence[str] | None = None, articles: Sequence[str] = (), question: str = "",
             progress: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None) -> dict:
    """Evaluate one task; returns its result block plus ``"predictions"`` (one dict per example)."""
    queries, skipped = load_examples(task, task.eval_split)
    if limit is not None:
        queries = queries[:limit]
    if task.shot_split == task.eval_split:
        pool = load_examples(task, task.eval_split)[0]  # the whole split, not only the first `limit` items
    else:
        pool = load_examples(task, task.shot_split)[0]
    chats, shot_ids = build_chats(task, queries, pool, seed, question)
    stop = list(fmt.stop if stop is None else stop)
    if on_start:
        on_start(len(queries))
    truncated_before = generator.truncated
    outputs = generator.generate(chats, fmt, max_new_tokens=task.max_new_tokens, stop=stop, progress=progress)
    answers = [clean_answer(o["raw"], stop) for o in outputs]
    preds = []
    metrics: dict[str, Any]
    if task.kind == "squad":
        metrics = squad_metrics(answers, [q.golds for q in queries], **({"articles": articles} if articles else {}))
        unknown = sum(1 for a in answers if not a)
        for q, o, a, s in zip(queries, outputs, answers, shot_ids):
            preds.append({"id": q.id, "shots": s, "raw": o["raw"], "prediction": a, "golds": list(q.golds),
                          **({"error": o["error"]} if "error" in o else {})})
    else:
        labels = [parse_label(a, task.labels) for a in answers]
        metrics = classification_scores(labels, [q.target for q in queries], task.labels)
        unknown = sum(1 for lab in labels if lab == UNKNOWN)
        for q, o, a, lab, s in zip(queries, outputs, answers, labels, shot_ids):
            preds.append({"id": q.id, "shots": s, "raw": o["raw"], "answer": a, "prediction": lab, "gold": q.target,
                          **({"error": o["error"]} if "error" in o else {})})
        metrics["predicted"] = dict(Counter(labels))
    return {
        "n": len(queries), "skipped": skipped, "unknown": unknown,
        "failed": sum(1 for o in outputs if "error" in o),
        "truncated": generator.truncated - truncated_before,
        "headline": HEADLINE[task.kind], "metrics": metrics,
        "config": {**task.describe(), "stop": stop, "pool_size": len(pool)},
        "predictions": preds,
    }


def evaluate_tasks(tasks: Sequence[TaskConfig], generator, fmt: PromptFormat, *, seed: int = 42,
                   limit: int | None = None, stop: Sequence[str] | None = None, settings: dict | None = None,
                   language: str = "it", keep_predictions: bool = False, progress=None, on_task=None) -> dict:
    """Run every task; returns the results document (see the module docstring).

    Args:
        progress: called with the number of examples just finished.
        on_task: called as ``on_task(name, n_examples)`` when a task starts generating.

    Examples:
        >>> from cerbero_hf import LocalGenerator, card_scores, evaluation_settings, prompt_format, task_configs
        >>> tasks = task_configs(["squad_it", "sentipolc"], evaluation_settings("it"))
        >>> results = evaluate_tasks(tasks, LocalGenerator("galatolo/cerbero-7b"), prompt_format("cerbero"))  # doctest: +SKIP
        >>> card_scores(results)  # doctest: +SKIP
        {'squad_it': {'f1': 61.2, ...}, 'sentipolc': {'macro_f1': 70.1, ...}}
    """
    settings = settings or {}
    results = {
        "model": generator.info.get("model") or generator.info.get("endpoint"),
        "generator": {"kind": generator.kind, **generator.info},
        "format": fmt.name, "stop": list(fmt.stop if stop is None else stop), "seed": seed, "limit": limit,
        "language": language, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tasks": {},
    }
    predictions = {}
    for task in tasks:
        block = run_task(task, generator, fmt, seed=seed, limit=limit, stop=stop,
                         articles=settings.get("articles") or (), question=settings.get("instruction_question", ""),
                         progress=progress, on_start=functools.partial(on_task, task.name) if on_task else None)
        predictions[task.name] = block.pop("predictions")
        results["tasks"][task.name] = block
    results["generator"]["server_model"] = generator.info.get("server_model")
    if keep_predictions:
        results["predictions"] = predictions
    return results


def card_scores(results: dict) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for the model card (numbers only, rounded to 2 decimals).

    Examples:
        >>> from cerbero_hf import card_scores
        >>> card_scores({"tasks": {"squad_it": {"metrics": {"f1": 61.234, "exact_match": 48.5, "predicted": {}}}}})
        {'squad_it': {'f1': 61.23, 'exact_match': 48.5}}
    """
    return {name: {k: round(v, 2) for k, v in block["metrics"].items() if isinstance(v, (int, float))}
            for name, block in results["tasks"].items()}
