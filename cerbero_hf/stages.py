"""One function per recipe stage: ``run_<stage>(recipe, out) -> StageResult`` (used by ``recipe.run_recipe``).

Each stage reads the previous stage's folder under ``out`` and writes its own:

``seeds/`` → ``generated/`` ; ``refined/`` ; ``scored/{generated,refined}/`` → ``filtered/{generated,refined}/``
→ ``model/`` → ``eval/results.json`` → ``published/`` (or the Hub).

The stages are thin: the work lives in the library modules (seeds, generation, refiner, quality,
training, evaluation, hub), which the per-stage CLI commands call too.
"""

from __future__ import annotations

import json
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.recipe import Recipe, StageResult

CORPORA = ("generated", "refined")  # the two corpora of the method, scored and filtered separately (D24)


def _need(path: Path, stage: str) -> Path:
    if not path.exists():
        raise InputError(f"stage {stage!r} needs {path}: run the earlier stage first (or enable it in the recipe)")
    return path


def run_seeds(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.io import load_table
    from cerbero_hf.seeds import write_seeds

    sec = recipe.seeds
    counts = write_seeds(load_table(sec.input, split=sec.split), out / "seeds", recipe.language, source=sec.input)
    return StageResult(counts=counts, outputs={"seeds": str(out / "seeds")})


def make_backend(sec):
    """The generator backend of a ``generate`` section."""
    from cerbero_hf.generation.backends import EndpointBackend, LocalBackend

    if sec.backend == "local":
        return LocalBackend(sec.model, mode="chat")
    if sec.backend != "endpoint":
        raise InputError(f"generate.backend must be 'endpoint' or 'local', got {sec.backend!r}", column="generate.backend")
    if not sec.endpoint:
        raise InputError("generate.endpoint is empty: set it in the recipe or export TGI_URL", column="generate.endpoint")
    return EndpointBackend(sec.endpoint, mode=sec.mode, model=sec.model, api_key_env=sec.api_key_env,
                           concurrency=sec.concurrency, max_attempts=sec.max_attempts)


def run_generate(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.diversity import Embedder
    from cerbero_hf.generation.corpus import generate_corpus
    from cerbero_hf.io import load_table

    sec = recipe.generate
    seeds = load_table(_need(out / "seeds", "generate"))
    summary = generate_corpus(
        seeds, make_backend(sec), Embedder(sec.embedder), out / "generated", max_conversations=sec.max_conversations,
        seed=recipe.seed, threshold=sec.threshold, language=recipe.language, max_attempts=sec.max_attempts,
        max_new_tokens=sec.max_new_tokens, temperature=sec.temperature, top_p=sec.top_p, lengths=tuple(sec.lengths),
        index=sec.index, map_progress=False)
    return StageResult(counts=_flat_counts(summary), outputs={"generated": str(out / "generated")})


def run_refine(recipe: Recipe, out: Path) -> StageResult:
    from datasets import concatenate_datasets

    from cerbero_hf.io import load_table
    from cerbero_hf.refiner import Refiner

    sec = recipe.refine
    refiner = Refiner(recipe.language, lang_action=sec.lang_action, text_column=sec.text_column,
                      num_proc=sec.num_proc, source="fauno")
    tables = [load_table(spec) for spec in sec.inputs]
    ds = tables[0] if len(tables) == 1 else concatenate_datasets(tables)
    kept, rejected, report = refiner.run(ds, file=", ".join(sec.inputs))
    refiner.write(out / "refined", kept, rejected, report, license=sec.license)
    counts = {"input": report.input_rows, "kept": report.kept, "rejected": len(rejected)}
    counts.update({f"removed by {rule}": removed for rule, removed, _ in report.rows() if removed})
    return StageResult(counts=counts, outputs={"refined": str(out / "refined")})


def run_score(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.quality import PLLScorer
    from cerbero_hf.scoring import score_folder

    sec = recipe.score
    scorer = PLLScorer(sec.model, variant=sec.variant, batch_tokens=sec.batch_tokens)
    counts, outputs = {}, {}
    for name in CORPORA:
        if not (out / name).exists():
            continue
        summary = score_folder(out / name, out / "scored" / name, scorer)
        counts[f"{name} messages"] = summary["count"]
        counts[f"{name} mean NLL"] = round(summary["mean"], 4) if summary["count"] else None
        outputs[name] = str(out / "scored" / name)
    if not outputs:
        raise InputError("stage 'score' found no corpus: enable 'generate' or 'refine'")
    return StageResult(counts=counts, outputs=outputs)


def run_filter(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.quality import QualityFilter
    from cerbero_hf.scoring import filter_folder

    sec = recipe.filter
    quality = QualityFilter(max_nll=sec.max_nll, policy=sec.policy)
    counts, outputs = {}, {}
    for name in CORPORA:
        src = out / "scored" / name
        if not src.exists():
            continue
        kept, rejected = filter_folder(src, out / "filtered" / name, quality)
        counts[f"{name} kept"], counts[f"{name} rejected parts"] = kept, rejected
        outputs[name] = str(out / "filtered" / name)
    if not outputs:
        raise InputError("stage 'filter' found no scored corpus: enable 'score'")
    return StageResult(counts=counts, outputs=outputs)


def run_train(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.training import TrainConfig, train

    settings = {k: v for k, v in recipe.train.items() if k != "enabled"}
    if not settings.get("corpora"):
        names = {"generated": "generated", "refined": "fauno"}
        settings["corpora"] = [f"{names[n]}={out / 'filtered' / n}" for n in CORPORA if (out / "filtered" / n).exists()]
    settings.setdefault("output_dir", str(out / "model"))
    settings.setdefault("seed", recipe.seed)
    settings.setdefault("language", recipe.language)
    result = train(TrainConfig.from_dict(settings, file="recipe: train"))
    counts = {"rows": result.rows, "steps": result.steps, "tokens": result.tokens, "train loss": result.train_loss}
    outputs = {"model": result.output_dir}
    if result.merged_dir:
        outputs["merged"] = result.merged_dir
    if result.hub_repo:
        outputs["hub"] = result.hub_repo
    return StageResult(counts=counts, outputs=outputs)


def trained_model(recipe: Recipe, out: Path) -> str:
    """The folder evaluation and publishing use: the merged LoRA model when there is one."""
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    outputs = manifest.get("stages", {}).get("train", {}).get("outputs", {})
    return outputs.get("merged") or outputs.get("model") or str(_need(out / "model", "evaluate"))


def run_evaluate(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.evaluation.generators import LocalGenerator
    from cerbero_hf.evaluation.prompts import prompt_format
    from cerbero_hf.evaluation.runner import card_scores, evaluate_tasks
    from cerbero_hf.evaluation.tasks import evaluation_settings, task_configs

    sec = recipe.evaluate
    model = trained_model(recipe, out)
    settings = evaluation_settings(recipe.language)
    configs = task_configs(sec.tasks, settings, data_dir=sec.data_dir)
    results = evaluate_tasks(configs, LocalGenerator(model, batch_size=sec.batch_size), prompt_format("chat", recipe.language, settings),
                             seed=recipe.seed, limit=sec.limit, settings=settings, language=recipe.language)
    path = out / "eval" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if sec.update_card and (Path(model) / "README.md").exists():
        from cerbero_hf.model_card import update_eval_results

        update_eval_results(model, card_scores(results), Path(model).name,
                            None if sec.data_dir else {c.name: c.dataset for c in configs})
    counts = {"examples": sum(block["n"] for block in results["tasks"].values())}
    counts.update({f"{task} {block['headline']}": round(block["metrics"][block["headline"]], 2)
                   for task, block in results["tasks"].items()})
    return StageResult(counts=counts, outputs={"results": str(path)})


def _stage_counts(out: Path, name: str) -> dict:
    """The pipeline counts a corpus card shows, read from the manifest (seeds → ... → NLL filter)."""
    stages = json.loads((out / "manifest.json").read_text()).get("stages", {})
    counts = lambda stage: stages.get(stage, {}).get("counts") or {}  # noqa: E731
    if name == "generated":
        gen = counts("generate")
        picked = {"seed conversations": counts("seeds").get("paths"),
                  "generated conversations": gen.get("summary conversations"),
                  "accepted messages": gen.get("summary accepted_messages"),
                  "rejected by similarity": gen.get("summary rejected_messages"),
                  "failed conversations": gen.get("summary failed")}
    else:
        ref = counts("refine")
        picked = {"input conversations": ref.get("input"),
                  **{k: v for k, v in ref.items() if k.startswith("removed by")}, "refined": ref.get("kept")}
    flt = counts("filter")
    picked["kept after NLL filter"] = flt.get(f"{name} kept")
    picked["rejected parts (NLL filter)"] = flt.get(f"{name} rejected parts")
    return {k: v for k, v in picked.items() if v is not None}


def _corpus_card(recipe: Recipe, out: Path, name: str, folder: Path, repo_id: str) -> None:
    """Render the published dataset card (dataset_scripts/<template>/README.md.j2) into ``folder``."""
    import dataclasses

    from cerbero_hf.dataset_card import dataset_card
    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language
    from cerbero_hf.quality import message_nlls

    pack = load_language(recipe.language)
    section = recipe.generate if name == "generated" else recipe.refine
    models = {"mlm": recipe.score.model}
    if name == "generated":
        models.update(generator=recipe.generate.model, embedder=recipe.generate.embedder)
    dataset_card(folder, template="generated_corpus" if name == "generated" else "refined_corpus", repo_id=repo_id,
                 language=pack.code, language_name=pack.name,
                 license="cc-by-nc-4.0" if name == "generated" else recipe.refine.license,
                 recipe={name: dataclasses.asdict(section), "filter": dataclasses.asdict(recipe.filter)},
                 models=models, thresholds={"similarity": recipe.generate.threshold, "nll": recipe.filter.max_nll},
                 seeds={"recipe": recipe.seed}, stage_counts=_stage_counts(out, name),
                 nll=[v for v in message_nlls(load_table(folder)) if v is not None],
                 nll_threshold=recipe.filter.max_nll)


def run_publish(recipe: Recipe, out: Path) -> StageResult:
    from cerbero_hf.hub import publish

    sec = recipe.publish
    if not sec.local_dir and not sec.namespace:
        raise InputError("publish.namespace is empty: set your Hub user or org (or publish.local_dir)",
                         column="publish.namespace")
    ns = sec.namespace or "local"
    items = []  # (kind, folder, repo name)
    for name in CORPORA:
        if (out / "filtered" / name).exists():
            staged = out / "publish" / f"{sec.corpus_name}-{name}"
            _copy_tree(out / "filtered" / name, staged)
            _corpus_card(recipe, out, name, staged, f"{ns}/{staged.name}")
            items.append(("dataset", staged, staged.name))
    metric = Path(__file__).resolve().parent.parent / "dataset_scripts" / "mlm_nll"
    if metric.exists():
        items.append(("metric", metric, sec.metric_name))
    if (out / "model").exists():
        items.append(("model", Path(trained_model(recipe, out)), sec.model_name))
    outputs = {}
    for kind, folder, name in items:
        if sec.local_dir:
            dest = Path(sec.local_dir) / {"dataset": "datasets", "metric": "spaces", "model": "models"}[kind] / name
            _copy_tree(folder, dest)
            outputs[f"{kind}:{name}"] = str(dest)
        else:
            repo = f"{sec.namespace}/{name}"
            publish(folder, repo, kind=kind, private=sec.private)
            outputs[f"{kind}:{name}"] = repo
    return StageResult(counts={"published": len(outputs)}, outputs=outputs)


def _copy_tree(src: Path, dest: Path) -> None:
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite", "checkpoint-*"))


def _flat_counts(summary: dict) -> dict:
    flat = {}
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) or value is None:
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key} {k}": v for k, v in value.items() if isinstance(v, (int, float, str))})
    return flat
