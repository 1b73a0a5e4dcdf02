"""The report's distributions and records, each read from what its stage wrote.

- :func:`nll`: per-message NLLs (``meta["nll"]``) of every scored corpus, before the filter (the score stage's
  folder) and after it (the filter stage's kept rows), summarised by the scorer's own ``summarize``;
- :func:`similarity`: ``meta["max_sim"]`` of the generated messages, with the threshold and the manifest's count
  of candidates rejected as too similar;
- :func:`lengths`: messages per generated conversation against the self-chat stage's target lengths;
- :func:`training`: the loss by step (``trainer_state.json``), the hyper-parameters and the trainer's record;
- :func:`evaluation`: the evaluate stage's scores (and EM) beside the paper's;
- :func:`details`: per stage its status, seconds and config hash; library versions; the command.
"""

from __future__ import annotations

import json
from pathlib import Path

from cerbero_hf.redact import drop_secrets
from cerbero_hf.report.manifest import locate
from cerbero_hf.report.paper import NLL_THRESHOLD, SIMILARITY_THRESHOLD, TARGET_LENGTHS
from cerbero_hf.report.tables import config_files, conversation_lengths, meta_list

TRAIN_KEYS = ("model", "condition", "corpora", "lora", "lora_r", "lora_alpha", "load_in_4bit", "merge_lora",
              "optim", "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps",
              "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing",
              "assistant_only_loss", "bf16", "gradient_checkpointing", "seed")
LIBRARIES = ("cerbero-hf", "datasets", "huggingface_hub", "pyarrow", "transformers", "trl", "peft", "torch",
             "sentence-transformers", "evaluate", "accelerate", "matplotlib")


def stage_config(manifest: dict, stage: str) -> dict:
    """The settings ``stage`` ran with (the manifest's record, else the recipe's section)."""
    entry = manifest["stages"].get(stage) or {}
    return entry.get("config") or ((manifest.get("recipe") or {}).get(stage) or {})


def nll(manifest: dict, where: dict) -> dict:
    """``{"threshold", "corpora": {corpus: {"scored": summary, "kept": summary | None, values...}}}``."""
    from cerbero_hf.resources.mlm_nll.pll_core import summarize

    threshold = stage_config(manifest, "filter").get("max_nll") if "filter" in manifest["stages"] else None
    corpora = {}
    for (stage, corpus), folder in where.items():
        if stage != "score":
            continue
        values = meta_list(config_files(folder), "nll")
        kept_folder = where.get(("filter", corpus))
        kept = meta_list(config_files(kept_folder), "nll") if kept_folder else None
        cut = threshold if threshold is not None else NLL_THRESHOLD
        corpora[corpus] = {"values": values, "kept_values": kept, "scored": summarize(values, threshold=cut),
                           "kept": summarize(kept, threshold=cut) if kept is not None else None,
                           "kept_messages": int(conversation_lengths(config_files(kept_folder)).sum())
                           if kept_folder else None}
    return {"threshold": threshold, "corpora": corpora}


def similarity(manifest: dict, where: dict) -> dict | None:
    """Nearest-neighbour cosine (``max_sim``) of every generated message in the generate stage's rows."""
    folder = where.get(("generate", "generated"))
    if folder is None:
        return None
    import numpy as np

    values = np.concatenate([meta_list(config_files(folder, c), "max_sim") for c in ("default", "rejected")])
    counts = (manifest["stages"]["generate"].get("counts") or {})
    return {"values": values, "threshold": stage_config(manifest, "generate").get("threshold", SIMILARITY_THRESHOLD),
            "rejected": counts.get("rejected_similar", 0), "accepted": counts.get("accepted_messages", 0)}


def lengths(manifest: dict, where: dict) -> dict | None:
    """Conversations per length in the generated corpus (kept rows), and the configured target lengths."""
    folder = where.get(("generate", "generated"))
    if folder is None:
        return None
    import numpy as np

    n = conversation_lengths(config_files(folder))
    values, counts = np.unique(n, return_counts=True)
    target = [int(v) for v in stage_config(manifest, "generate").get("lengths") or []]
    inside = int(((n >= min(target)) & (n <= max(target))).sum()) if target and len(n) else None
    return {"counts": {int(v): int(c) for v, c in zip(values, counts)}, "target": target,
            "paper": TARGET_LENGTHS, "within_target": inside, "conversations": int(len(n))}


def _trainer_state(model: Path) -> dict | None:
    """``trainer_state.json`` of the model folder, else of its latest checkpoint."""
    candidates = [model / "trainer_state.json"]
    checkpoints = [p for p in model.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    candidates += [p / "trainer_state.json" for p in sorted(checkpoints, key=lambda p: -int(p.name.split("-")[-1]))]
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
    return None


def training(run_dir: Path, manifest: dict) -> dict | None:
    """The loss curve, hyper-parameters and result of the train stage (``None`` when it did not run)."""
    entry = manifest["stages"].get("train") or {}
    if entry.get("status") != "done":
        return None
    config = drop_secrets(entry.get("config") or {})
    model = locate(run_dir, manifest, (entry.get("outputs") or {}).get("model"))
    state = _trainer_state(model) if model else None
    record = {}
    if model and (model / "cerbero_train.json").is_file():
        record = json.loads((model / "cerbero_train.json").read_text(encoding="utf-8"))
    history = (state or {}).get("log_history") or []
    distributed = ((record.get("data") or {}).get("distributed") or {})
    params = {k: config[k] for k in TRAIN_KEYS if k in config}
    if distributed.get("global_batch_size"):
        params["global batch size"] = distributed["global_batch_size"]
    return {"loss": [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h],
            "eval_loss": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h],
            "params": params, "config": config, "counts": entry.get("counts") or {},
            "corpora": (record.get("data") or {}).get("corpora") or [],
            "state_found": state is not None}


def evaluation(run_dir: Path, manifest: dict) -> dict | None:
    """The run's headline scores (the manifest's) and SQuAD-it EM (``results.json``), beside the paper's."""
    entry = manifest["stages"].get("evaluate") or {}
    if entry.get("status") != "done":
        return None
    counts = entry.get("counts") or {}
    scores = dict(counts.get("scores") or {})
    results = locate(run_dir, manifest, (entry.get("outputs") or {}).get("results"))
    tasks: dict = {}
    if results and results.is_file():
        tasks = json.loads(results.read_text(encoding="utf-8")).get("tasks") or {}
    squad = (tasks.get("squad_it") or {}).get("metrics") or {}
    if "exact_match" in squad:
        scores["squad_it_em"] = round(squad["exact_match"], 2)
    return {"scores": scores, "metrics": counts.get("metrics") or {}, "examples": counts.get("examples"),
            "n": {t: b.get("n") for t, b in tasks.items()}, "model": stage_config(manifest, "evaluate").get("model")}


def versions() -> dict[str, str]:
    """Installed versions of the libraries the run uses (read from package metadata, nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def details(manifest: dict) -> dict:
    """Per stage: status, seconds, config hash; the recorded command; versions; the recipe (no secrets)."""
    stages = {s: {"status": e.get("status"), "seconds": e.get("seconds"), "config_hash": e.get("config_hash")}
              for s, e in manifest["stages"].items() if isinstance(e, dict)}
    return {"stages": stages, "command": manifest.get("command"), "versions": versions(),
            "recipe": drop_secrets(manifest.get("recipe") or {})}
