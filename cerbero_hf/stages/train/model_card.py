"""Model cards for fine-tuned Cerbero models (paper §4), rendered with huggingface_hub.

``build_model_card(...)`` fills the packaged ``model`` card template through :func:`cerbero_hf.cards.render`
(the one card renderer) with a ``ModelCardData`` header (base model, datasets, language,
license, tags, ``model-index``): the training data and recipe tables, the loss mode, the prompt format
with a usage snippet, the evaluation table, limitations and the citation. ``write_card(config, ...)``
renders it for a training run; ``write_saved(config, ...)`` makes what a save wrote public (PEFT's own card
and ``adapter_config.json`` name the base by its local path). Models and corpora are named by
:func:`public_id`: a Hub id, or the name of a local folder, never a local path.

``update_eval_results(card, results, model_name)`` is what ``cerbero-hf evaluate --update-card`` calls: it
merges new scores into the card's ``model-index`` (as ``EvalResult`` entries) and rewrites the table
between the ``eval-results`` markers, keeping everything else in the README as it was.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

TEMPLATE_NAME = "model"  # cerbero_hf/resources/cards/model.md.j2 (published copy: model_cards/cerbero.md.j2)
EVAL_START = "<!-- eval-results:start -->"
EVAL_END = "<!-- eval-results:end -->"
NO_RESULTS = "No evaluation results yet: `cerbero-hf evaluate MODEL OUTPUT --update-card` fills this table."


def public_id(spec: str) -> str:
    """A model or corpus as a public card names it (``base_model``, ``datasets``): a Hub id as it is, a Hub cache
    folder (``.../models--org--name/snapshots/REV``) by its Hub id, any other local path by its folder name (a
    data file by its stem), with the characters a Hub name cannot hold replaced by ``-``."""
    from cerbero_hf.io import FILE_SUFFIXES, is_hub_id

    if is_hub_id(spec):
        return spec
    path = Path(str(spec).rstrip("/"))
    cached = [p.split("--", 1)[1] for p in path.parts if re.fullmatch(r"(models|datasets)--.+", p)]
    if cached:
        return cached[-1].replace("--", "/")
    name = path.name
    for suffix in sorted(FILE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return re.sub(r"[^\w.-]+", "-", name).strip("-.")[:96].strip("-.") or "model"


def _task_type(task: str) -> str:
    return "question-answering" if "squad" in task.lower() else "text-classification"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def eval_table(eval_results: list | None) -> str:
    """The Markdown evaluation table (one row per task, one column per metric) between its markers."""
    if not eval_results:
        return f"{EVAL_START}\n{NO_RESULTS}\n{EVAL_END}"
    tasks: dict[str, dict[str, Any]] = {}
    datasets: dict[str, str] = {}
    metrics: list[str] = []
    for r in eval_results:
        tasks.setdefault(r.dataset_name, {})[r.metric_type] = r.metric_value
        datasets[r.dataset_name] = r.dataset_type
        if r.metric_type not in metrics:
            metrics.append(r.metric_type)
    lines = ["| Task | Dataset | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for task, scores in tasks.items():
        cells = [_fmt(scores[m]) if m in scores else "–" for m in metrics]
        lines.append(f"| {task} | `{datasets[task]}` | " + " | ".join(cells) + " |")
    return f"{EVAL_START}\n" + "\n".join(lines) + f"\n{EVAL_END}"


def to_eval_results(results: dict[str, dict[str, float]], dataset_ids: dict[str, str] | None = None) -> list:
    """``{task: {metric: value}}`` -> ``EvalResult`` list (dataset type = its Hub id when known)."""
    from huggingface_hub import EvalResult

    ids = dataset_ids or {}
    return [EvalResult(task_type=_task_type(task), task_name=task, dataset_type=ids.get(task, task),
                       dataset_name=task, metric_type=metric, metric_name=metric, metric_value=float(value))
            for task, scores in results.items() for metric, value in scores.items()]


def build_model_card(*, model_name: str, base_model: str, corpora: list[dict], condition: str, seed: int,
                     recipe: dict[str, Any], assistant_only_loss: bool, stop_strings: list[str],
                     user_tag: str, assistant_tag: str, repo_id: str | None = None, language: str = "it",
                     language_name: str = "Italian", license: str = "apache-2.0", fauno_tags: bool = False,
                     condition_note: str = "", example_prompt: str = "...",
                     results: dict[str, dict[str, float]] | None = None, dataset_ids: dict[str, str] | None = None,
                     tags: list[str] | None = None, adapter: bool = False):
    """Render the card for a trained model.

    Args:
        base_model: the base model's Hub id or name (a local path is named by :func:`public_id`).
        corpora: one dict per training corpus: ``name``, ``hub_id`` (or None), ``weight``, ``rows``; the
            ``datasets`` metadata lists each by its Hub id, else by :func:`public_id` of its name.
        recipe: the hyper-parameters shown in the recipe table (name -> value); never secrets.
        assistant_only_loss: which loss the run used, stated in the card.
        results: optional ``{task: {metric: value}}`` for the evaluation table and ``model-index``.
        adapter: the card of a LoRA adapter (``library_name: peft``), not of a whole model.

    Returns:
        A ``huggingface_hub.ModelCard``; ``card.save(path)`` writes the README.
    """
    from huggingface_hub import ModelCardData

    from cerbero_hf.cards import render

    eval_results = to_eval_results(results, dataset_ids) if results else None
    data = ModelCardData(
        base_model=public_id(base_model),
        datasets=list(dict.fromkeys(c.get("hub_id") or public_id(c["name"]) for c in corpora)) or None,
        language=[language], license=license, library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["cerbero-hf", "trl", "sft", "cerbero-7b", f"condition-{condition}", *(tags or [])],
        model_name=model_name, eval_results=eval_results)
    if assistant_only_loss:
        loss_mode = ("assistant-only loss: only the assistant replies, each closed by the EOS token, are in the "
                     "loss; generation stops at the EOS token or the user tag.")
    else:
        loss_mode = ("full-conversation loss: every token of the rendered conversation, user turns included, is in "
                     "the loss, as in the paper's \"trained on full conversations\".")
    return render(
        TEMPLATE_NAME, data, kind="model", model_name=model_name, base_model=base_model,
        repo_id=repo_id or model_name, corpora=corpora, condition=condition, condition_note=condition_note,
        seed=seed, recipe=[(k, _fmt(v)) for k, v in recipe.items()], loss_mode=loss_mode, fauno_tags=fauno_tags,
        user_tag=user_tag, assistant_tag=assistant_tag, stop_json=json.dumps(stop_strings, ensure_ascii=False),
        stop_text=", ".join(f"`{s}`" for s in stop_strings), example_json=json.dumps(example_prompt, ensure_ascii=False),
        language_name=language_name, eval_table=eval_table(eval_results))


def update_eval_results(card_path_or_folder: str | os.PathLike, results: dict[str, dict[str, float]],
                        model_name: str, dataset_ids: dict[str, str] | None = None) -> None:
    """Merge evaluation scores into a model card, keeping everything else.

    Args:
        card_path_or_folder: a README.md or the model folder holding it.
        results: ``{task: {metric: value}}``, e.g. ``{"squad_it": {"f1": 72.55, "exact_match": 55.6}}``.
        model_name: the name recorded in ``model-index`` when the card names no model yet (a card of ours
            names it: its ``model_name``, not the evaluated folder's name such as ``model-merged``).
        dataset_ids: optional ``{task: Hub dataset id}`` recorded as each result's dataset type.

    A (task, metric) pair already in the card is replaced; other existing results stay. The table between
    the ``eval-results`` markers is rewritten (appended as an "Evaluation" section if the card has none).
    """
    from huggingface_hub import ModelCard

    path = Path(card_path_or_folder)
    if path.is_dir():
        path = path / "README.md"
    card = ModelCard.load(path)
    old = card.data.eval_results or []
    ids = {r.dataset_name: r.dataset_type for r in old} | (dataset_ids or {})
    new = to_eval_results(results, ids)
    merged = {(r.dataset_name, r.metric_type): r for r in old}
    merged.update({(r.dataset_name, r.metric_type): r for r in new})  # replaced in place, new ones appended
    card.data.model_name = card.data.model_name or model_name
    card.data.eval_results = list(merged.values())
    table = eval_table(card.data.eval_results)
    text = card.text
    start, end = text.find(EVAL_START), text.find(EVAL_END)
    if start != -1 and end > start:
        text = text[:start] + table + text[end + len(EVAL_END):]
    else:
        text = text.rstrip("\n") + "\n\n## Evaluation\n\n" + table + "\n"
    card.text = text
    card.save(path)


def write_card(cfg, report: dict, stops: list[str], folder: str | Path, merged: bool = False) -> Path:
    """Render and save the model card (README.md) of a training run into ``folder``.

    Args:
        cfg: the run's :class:`~cerbero_hf.stages.train.config.TrainConfig`.
        report: the training-set report of ``build_training_set`` (corpora, rows used).
        stops: the stop strings of the inference template.
        merged: the card of ``OUTPUT-merged`` (LoRA adapter merged into the base weights).
    """
    from cerbero_hf.languages import load_language

    pack = load_language(cfg.language)
    name = cfg.model_name or (cfg.hub_model_id or Path(cfg.output_dir).name).split("/")[-1]
    repo = cfg.hub_model_id + ("-merged" if merged else "") if cfg.hub_model_id else name
    corpora = [{"name": c["name"] if c["hub_id"] else public_id(c["path"]), "hub_id": c["hub_id"],
                "weight": c["weight"], "rows": c["rows_used"]} for c in report["corpora"]]
    note = "LoRA adapter merged into the base weights" if merged else ("LoRA adapter" if cfg.lora else "")
    recipe = cfg.recipe_table()
    setup = report.get("distributed")
    if setup:  # how it trained, so a reader can reproduce the run
        world = setup["world_size"]
        recipe["processes"] = (f"{world} processes ({setup['launcher']}, {setup['distributed_type']}"
                               + (f", {setup['backend']})" if setup.get("backend") else ")") if world > 1 else "1")
        recipe["global batch"] = (f"{setup['global_batch_size']} = {setup['per_device_batch_size']} per device x "
                                  f"{setup['gradient_accumulation_steps']} accumulation x {world} "
                                  f"process{'es' if world > 1 else ''}")
    card = build_model_card(
        model_name=name, base_model=public_id(cfg.model), corpora=corpora, condition=cfg.condition, seed=cfg.seed,
        recipe=recipe, assistant_only_loss=cfg.assistant_only_loss, stop_strings=stops, adapter=cfg.lora and not merged,
        user_tag=pack.user_tag, assistant_tag=pack.fauno_assistant_tag if cfg.fauno_tags else pack.assistant_tag,
        repo_id=repo, language=pack.code, language_name=pack.name, license=cfg.license, fauno_tags=cfg.fauno_tags,
        condition_note=note, example_prompt=pack.extra.get("example_prompt", "..."),
        tags=["lora"] if cfg.lora else None)
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


def write_saved(cfg, report: dict, stops: list[str], folder: str | Path) -> None:
    """Make a folder a save just wrote (a checkpoint, the final model) public: PEFT's ``adapter_config.json``
    names the base by :func:`public_id` (``base_model_name_or_path`` is the local path it was loaded from; loading
    the adapter onto a given base, as the merge and a resume do, does not read it), and the README PEFT writes
    (``base_model:`` the local path) is replaced by this run's card."""
    folder = Path(folder)
    config = folder / "adapter_config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        if data.get("base_model_name_or_path") not in (None, public_id(cfg.model)):
            data["base_model_name_or_path"] = public_id(cfg.model)
            config.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    if (folder / "README.md").is_file():
        write_card(cfg, report, stops, folder)
