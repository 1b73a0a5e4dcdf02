"""The ``publish`` stage: the filtered corpora (with their cards), the ``mlm_nll`` metric and the model (paper §5).

Config: :class:`PublishConfig` (recipe section ``publish``, off unless ``enabled: true``; CLI
``cerbero-hf publish REPO_ID PATH --repo-type dataset|model|space`` uploads one folder with the same upload
settings).
Inputs: the ``filter`` stage's corpora (``generated``, ``refined``), the ``train`` stage's model (its
merged LoRA model when there is one), and, for the corpus cards, the counts and settings recorded in
the results of ``seeds``, ``generate``, ``refine``, ``score`` and ``filter``.
Output: ``<output>/<corpus_name>-<corpus>/`` (each corpus copied with its published card), then every
item pushed to ``<namespace>/<name>`` on the Hub (only the files the stages wrote, see
:mod:`~cerbero_hf.stages.publish.files`; a symbolic link out of a folder is refused), or copied to
``local_dir/{datasets,spaces,models}/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cerbero_hf.config import Config, setting
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import result_paths, writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output

CORPORA = ("generated", "refined")  # the filter stage's two corpora, published as two datasets
TEMPLATES = {"generated": "generated_corpus", "refined": "refined_corpus"}
LOCAL_KINDS = {"dataset": "datasets", "metric": "spaces", "model": "models"}


@dataclass
class PublishConfig(Config):
    """Where the corpora, the metric and the model go, and how uploads are retried.

    Examples:
        >>> from cerbero_hf import PublishConfig
        >>> config = PublishConfig(namespace="you", corpus_name="cerbero-chat-it")
        >>> config.private, config.model_name, config.token_env  # private repos; the token is read from $HF_TOKEN
        (True, 'cerbero-7b-repro', 'HF_TOKEN')
    """

    SECTION = "publish"
    namespace: str | None = setting(None, help="Hub user or organisation the repos are created under.", cli=False)
    local_dir: str | None = setting(None, help="Copy everything under this folder instead of pushing to the Hub.",
                                    cli=False)
    corpus_name: str | None = setting(None, help="Prefix of the corpus repos, <corpus_name>-generated and "
                                                 "<corpus_name>-refined (default: cerbero-chat-<language>).",
                                      cli=False)
    model_name: str = setting("cerbero-7b-repro", help="Name of the model repo.", cli=False)
    metric_name: str = setting("mlm_nll", help="Name of the metric Space (evaluate.load('<namespace>/<name>') "
                                               "fetches <name>.py).", cli=False)
    private: bool = setting(True, help="Create new repos as private (corpora, metric and model); false makes them "
                                       "public.", cli=False)
    endpoint: str | None = setting(None, help="Hub endpoint URL (default: HF_ENDPOINT, else huggingface.co).")
    token_env: str = setting("HF_TOKEN", help="Environment variable holding the Hub token (never printed).")
    retries: int = setting(5, help="Retries on transient Hub errors (5xx, 429, dropped connections), with "
                                   "exponential backoff.", ge=0)
    backoff: float = setting(1.0, help="First retry wait in seconds (doubles each time).", ge=0)
    include_training_state: bool = setting(False, help="With a model: also upload the training state "
                                                       "(checkpoint-*/, optimizer.pt, rng_state.pth, ...).")
    language: str = setting("it", help="Language pack code or YAML (the corpus cards' language).", cli=False)
    seed: int = setting(42, help="The run's seed, recorded in the corpus cards.", cli=False)


@dataclass
class PublishResult(Result):
    """How many items were published, and where each went."""

    published: int = 0
    targets: dict = field(default_factory=dict)  # "<kind>:<name>" -> Hub repo id or local folder
    staged: str | None = output()  # the corpora as published, with their cards
    local_dir: str | None = output()  # with ``local_dir``: where everything was copied


def token(config: PublishConfig) -> str | None:
    """The Hub token from ``config.token_env`` (None: huggingface_hub's own lookup); never printed."""
    import os

    value = os.environ.get(config.token_env) or None
    if value is None and config.token_env != "HF_TOKEN":
        raise InputError(f"environment variable {config.token_env} is not set", column="publish.token_env")
    return value


def _get(result, *names):
    """The first of ``names`` that ``result`` (a typed result, possibly from another version) has set."""
    for name in names:
        value = getattr(result, name, None)
        if value is not None:
            return value
    return None


def stage_counts(inputs: dict, name: str) -> dict:
    """The pipeline counts a corpus card shows, from the typed results (seeds -> ... -> NLL filter)."""
    if name == "generated":
        seeds, gen = inputs.get("seeds"), inputs.get("generate")
        picked = {"seed conversations": _get(seeds, "paths"),
                  "generated conversations": _get(gen, "conversations"),
                  "accepted messages": _get(gen, "accepted_messages"),
                  "rejected by similarity": _get(gen, "rejected_similar", "rejected_messages"),
                  "failed conversations": _get(gen, "failed")}
    else:
        ref = inputs.get("refine")
        removed = _get(ref, "removed")
        picked = {"input conversations": _get(ref, "input")}
        if isinstance(removed, dict):
            picked.update({f"removed by {rule}": n for rule, n in removed.items() if n})
        else:
            picked["removed"] = removed
        picked["refined"] = _get(ref, "kept")
    flt = inputs.get("filter")
    picked["kept after NLL filter"] = _get(flt, f"{name}_kept")
    picked["rejected parts (NLL filter)"] = _get(flt, f"{name}_rejected_parts", f"{name}_rejected")
    return {k: v for k, v in picked.items() if v is not None}


def card_settings(inputs: dict, name: str, configs: dict | None = None, language: str = "it") -> dict:
    """Models, thresholds, license and recipe settings for a corpus card.

    Read from the earlier stages' configs when the runner hands them over (``ctx.configs``: stage ->
    config), else from whatever their results recorded (``model``, ``embedder``, ``threshold``, ``max_nll``,
    ``license``, ``params``); missing values are left out of the card.
    """
    import dataclasses

    from cerbero_hf.languages import load_language

    configs = configs or {}
    gen, score, flt, ref = ((configs.get(s), inputs.get(s)) for s in ("generate", "score", "filter", "refine"))

    def value(pair, *names):
        return _get(pair[0], *names) if pair[0] is not None else _get(pair[1], *names)

    pack = load_language(language)
    models = {"mlm": value(score, "model") or (pack.mlm if configs.get("score") else None)}
    if name == "generated":
        models.update(generator=value(gen, "model", "generator"),
                      embedder=value(gen, "embedder") or (pack.embedder if configs.get("generate") else None))
    max_nll = value(flt, "max_nll")
    thresholds = {"similarity": value(gen, "threshold") if name == "generated" else None, "nll": max_nll}
    recipe = {}
    for stage, (config, result) in (("generate" if name == "generated" else "refine", gen if name == "generated"
                                      else ref), ("filter", flt)):
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            params = dataclasses.asdict(config)
        else:
            params = _get(result, "params")
        if isinstance(params, dict):
            recipe[stage] = params  # secret-named keys are dropped by the card
    return {"models": {k: str(v) for k, v in models.items() if v},
            "thresholds": {k: v for k, v in thresholds.items() if v is not None}, "recipe": recipe,
            "license": value(ref, "license") if name == "refined" else "cc-by-nc-4.0", "max_nll": max_nll}


def corpus_card(folder: Path, name: str, inputs: dict, config: PublishConfig, repo_id: str,
                configs: dict | None = None) -> None:
    """Render the published dataset card (template ``generated_corpus`` / ``refined_corpus``) into ``folder``."""
    from cerbero_hf.cards import dataset_card
    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language
    from cerbero_hf.stages.quality.summary import message_nlls

    pack = load_language(config.language)
    found = card_settings(inputs, name, configs, config.language)
    refined = _get(inputs.get("refine"), "refined") if name == "refined" else None
    license = found["license"] or (_folder_license(Path(refined)) if refined else None) or "unknown"
    dataset_card(folder, template=TEMPLATES[name], repo_id=repo_id, language=pack.code, language_name=pack.name,
                 license=license, recipe=found["recipe"], models=found["models"], thresholds=found["thresholds"],
                 seeds={"recipe": config.seed}, stage_counts=stage_counts(inputs, name),
                 nll=[v for v in message_nlls(load_table(folder)) if v is not None],
                 nll_threshold=found["max_nll"])


def _folder_license(folder: Path) -> str | None:
    """The license the refine stage wrote into its output folder's card (its ``license`` setting)."""
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard.load(folder / "README.md").data.license
    except Exception:  # noqa: BLE001 - no card, or not ours: no license known
        return None


def copy_tree(src: Path, dest: Path) -> None:
    """Replace ``dest`` with a copy of ``src`` (without caches, sqlite replay caches and checkpoints).

    A symbolic link in ``src`` that points out of it is refused first (:func:`~cerbero_hf.stages.publish.files.
    local_files`): the copy would hold the outside file's content as a plain file, which publish would upload.
    """
    import shutil

    from cerbero_hf.stages.publish.files import local_files

    local_files(src)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite", "checkpoint-*"))


@writes_output(lambda config, ctx: result_paths(ctx, ("filter", "generated"), ("filter", "refined")))
def run_publish(config: PublishConfig, ctx: Context) -> PublishResult:
    """Stage the corpora with their cards, then push (or copy) corpora, metric and model."""
    from cerbero_hf.languages import load_language
    from cerbero_hf.resources import resource
    from cerbero_hf.stages.publish.hub import publish

    if not config.local_dir and not config.namespace:
        raise InputError("publish.namespace is empty: set your Hub user or org (or publish.local_dir)",
                         column="publish.namespace")
    corpus_name = config.corpus_name or f"cerbero-chat-{load_language(config.language).code}"
    out = Path(ctx.output)
    items = []  # (kind, folder, repo name)
    filtered = ctx.inputs.get("filter")
    for name in CORPORA:
        src = getattr(filtered, name, None)
        if src and Path(src).exists():
            staged = out / f"{corpus_name}-{name}"
            copy_tree(Path(src), staged)
            corpus_card(staged, name, ctx.inputs, config, f"{config.namespace or 'local'}/{staged.name}",
                        getattr(ctx, "configs", None))
            items.append(("dataset", staged, staged.name))
    metric = resource("mlm_nll")
    if metric.exists():
        items.append(("metric", metric, config.metric_name))
    trained = ctx.inputs.get("train")
    model = getattr(trained, "merged", None) or getattr(trained, "model", None)
    if model and Path(model).exists():
        items.append(("model", Path(model), config.model_name))
    secret = None if config.local_dir else token(config)
    targets = {}
    for kind, folder, name in items:
        if config.local_dir:
            dest = Path(config.local_dir) / LOCAL_KINDS[kind] / name
            copy_tree(folder, dest)
            targets[f"{kind}:{name}"] = str(dest)
        else:
            repo = f"{config.namespace}/{name}"
            publish(folder, repo, kind=kind, private=config.private, token=secret, endpoint=config.endpoint,
                    retries=config.retries, backoff=config.backoff,
                    include_training_state=config.include_training_state)
            targets[f"{kind}:{name}"] = repo
    return PublishResult(published=len(targets), targets=targets, staged=str(out) if out.exists() else None,
                         local_dir=config.local_dir)


STAGE = Stage("publish", PublishConfig, run_publish, PublishResult,
              inputs=("seeds", "generate", "refine", "score", "filter", "train"), any_of=True, enabled=False,
              help=__doc__.splitlines()[0])
