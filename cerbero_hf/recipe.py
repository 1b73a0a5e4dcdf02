"""The YAML recipe: one typed section per stage, run in order by ``cerbero-hf run RECIPE.yaml``.

Sections (each may set ``enabled: false`` to skip it; each reads the previous stage's output folder):

``seeds`` → ``generate`` → ``refine`` → ``score`` → ``filter`` → ``train`` → ``evaluate`` → ``publish``

Every stage writes into ``<output_dir>/<stage>/`` and records itself in ``<output_dir>/manifest.json``
(config, counts, seconds, output paths). Re-running the same recipe skips stages already done with the
same config and resumes the unfinished one (generation replays its request cache; training resumes from
its last checkpoint). Values like ``${TGI_URL}`` are read from the environment; secrets are referenced by
the *name* of their environment variable (``api_key_env``) and never written anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cerbero_hf.errors import InputError

STAGES = ("seeds", "generate", "refine", "score", "filter", "train", "evaluate", "publish")


@dataclass
class SeedsSection:
    """OASST trees → root-to-leaf seed conversations (METHOD §2). ``input``: OASST table (file, folder or Hub id)."""

    enabled: bool = True
    input: str = "OpenAssistant/oasst1"
    split: str = "train"


@dataclass
class GenerateSection:
    """Self-chat generation with the diversity filter (METHOD §3, D1–D13).

    backend: ``endpoint`` (``endpoint`` URL, ``mode`` chat|completion, ``api_key_env``) or ``local`` (``model``).
    """

    enabled: bool = True
    backend: str = "endpoint"
    endpoint: str = "${TGI_URL}"
    mode: str = "chat"
    model: str = "meta-llama/Llama-2-70b-chat-hf"
    api_key_env: str | None = None
    embedder: str = "sentence-transformers/distiluse-base-multilingual-cased-v2"
    threshold: float = 0.9
    index: str = "exact"
    max_conversations: int | None = None
    concurrency: int = 64
    max_attempts: int = 5
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    lengths: list[int] = field(default_factory=lambda: [4, 6, 8, 10])


@dataclass
class RefineSection:
    """Refinement of an existing corpus (METHOD §4). ``inputs``: Fauno files/folders/Hub ids, refined together."""

    enabled: bool = True
    inputs: list[str] = field(default_factory=lambda: [
        "andreabac3/Quora-Italian-Fauno-Baize", "andreabac3/StackOverflow-Italian-Fauno-Baize",
        "andreabac3/MedQuaAD-Italian-Fauno-Baize"])
    lang_action: str = "flag"
    text_column: str | None = None
    num_proc: int = 1
    license: str = "gpl-3.0"


@dataclass
class ScoreSection:
    """MLM pseudo-log-likelihood of every message (METHOD §5, D21–D23), generated and refined corpora."""

    enabled: bool = True
    model: str = "dbmdz/bert-base-italian-xxl-cased"
    variant: str = "pll"
    batch_tokens: int | None = None  # None: sized to the model and device (PLLScorer)


@dataclass
class FilterSection:
    """The NLL < max_nll quality filter (METHOD §5.3, D24), applied to each scored corpus separately."""

    enabled: bool = True
    max_nll: float = 2.0
    policy: str = "truncate"


@dataclass
class EvaluateSection:
    """SQuAD-it 3-shot and EVALITA 5-shot (METHOD §7, D29–D32) of the trained model."""

    enabled: bool = True
    tasks: list[str] = field(default_factory=lambda: ["squad_it", "sentipolc", "ironita", "ami2020"])
    limit: int | None = None
    data_dir: str | None = None
    batch_size: int = 16
    update_card: bool = True


@dataclass
class PublishSection:
    """Push corpora, metric and model to the Hub (``namespace`` = user or org), or copy them to ``local_dir``."""

    enabled: bool = False
    namespace: str = ""
    private: bool = True
    local_dir: str | None = None
    corpus_name: str = "cerbero-chat-it"
    model_name: str = "cerbero-7b-repro"
    metric_name: str = "mlm_nll"


@dataclass
class Recipe:
    """A whole run. ``train`` is :class:`cerbero_hf.training.TrainConfig` as a dict (validated when it runs)."""

    output_dir: str = "runs/cerbero"
    language: str = "it"
    seed: int = 42
    seeds: SeedsSection = field(default_factory=SeedsSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    refine: RefineSection = field(default_factory=RefineSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    filter: FilterSection = field(default_factory=FilterSection)
    train: dict = field(default_factory=lambda: {"enabled": True})
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    publish: PublishSection = field(default_factory=PublishSection)

    def section(self, name: str):
        return getattr(self, name)

    def enabled(self, name: str) -> bool:
        sec = self.section(name)
        return bool(sec.get("enabled", True) if isinstance(sec, dict) else sec.enabled)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in strings (recursively) from the environment."""
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    return value


def _build(cls, data: dict, where: str, file: str | None):
    if not isinstance(data, dict):
        raise InputError(f"section {where!r} must be a mapping", file=file, column=where)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown setting {where}.{unknown[0]}", file=file, column=f"{where}.{unknown[0]}")
    return cls(**data)


def parse_recipe(data: dict, file: str | None = None) -> Recipe:
    """Validate a recipe mapping into a :class:`Recipe` (unknown keys are errors naming the key)."""
    if not isinstance(data, dict):
        raise InputError("a recipe must be a YAML mapping", file=file)
    hints = {f.name: f for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise InputError(f"unknown recipe section {unknown[0]!r}; expected {', '.join(hints)}", file=file,
                         column=unknown[0])
    kwargs: dict[str, Any] = {}
    section_types = {"seeds": SeedsSection, "generate": GenerateSection, "refine": RefineSection,
                     "score": ScoreSection, "filter": FilterSection, "evaluate": EvaluateSection,
                     "publish": PublishSection}
    for key, value in data.items():
        if key in section_types:
            kwargs[key] = _build(section_types[key], value or {}, key, file)
        elif key == "train":
            kwargs[key] = {"enabled": True, **(value or {})}
        else:
            kwargs[key] = value
    recipe = Recipe(**kwargs)
    from cerbero_hf.diversity import INDEXES

    if recipe.generate.index not in INDEXES:  # fail before any stage runs, not inside generate
        raise InputError(f"generate.index must be {' or '.join(INDEXES)}, got {recipe.generate.index!r}", file=file,
                         column="generate.index")
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML; ``overrides`` are ``section.key=value`` strings (YAML-typed values)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError("no such recipe file", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse recipe: {str(err).splitlines()[0]}", file=str(path)) from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"override {item!r} is not section.key=value")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return parse_recipe(expand_env(data), file=str(path))


def config_hash(section: Any) -> str:
    payload = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Manifest:
    """``manifest.json``: what ran, with which config, counts, timings and output paths."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"stages": {}}

    def done(self, stage: str, digest: str) -> bool:
        entry = self.data["stages"].get(stage)
        return bool(entry and entry.get("status") == "done" and entry.get("config_hash") == digest)

    def record(self, stage: str, **entry) -> None:
        self.data["stages"][stage] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False, default=str))
        tmp.replace(self.path)


@dataclass
class StageResult:
    counts: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


def run_recipe(recipe: Recipe, *, only: list[str] | None = None, force: bool = False,
               on_stage: Callable[[str, str, StageResult | None], None] | None = None) -> Manifest:
    """Run the enabled stages in order; returns the manifest. ``on_stage(stage, status, result)`` reports progress."""
    from cerbero_hf import stages

    out = Path(recipe.output_dir)
    manifest = Manifest(out / "manifest.json")
    manifest.data["recipe"] = _public(recipe.to_dict())
    upstream = ""  # a stage's digest covers every earlier enabled stage, so new inputs re-run it
    for stage in STAGES:
        if not recipe.enabled(stage):
            if on_stage:
                on_stage(stage, "skipped", None)
            continue
        digest = config_hash({"stage": recipe.section(stage), "language": recipe.language, "seed": recipe.seed,
                              "upstream": upstream})
        upstream = digest
        if only and stage not in only:
            if on_stage:
                on_stage(stage, "skipped", None)
            continue
        if not force and manifest.done(stage, digest):
            if on_stage:
                on_stage(stage, "cached", StageResult(**{k: manifest.data["stages"][stage][k] for k in ("counts", "outputs")}))
            continue
        start = time.time()
        manifest.record(stage, status="running", config_hash=digest, started=start)
        result = getattr(stages, f"run_{stage}")(recipe, out)
        manifest.record(stage, status="done", config_hash=digest, seconds=round(time.time() - start, 2),
                        counts=result.counts, outputs=result.outputs,
                        config=_public(dataclasses.asdict(recipe.section(stage))
                                       if dataclasses.is_dataclass(recipe.section(stage)) else recipe.section(stage)))
        if on_stage:
            on_stage(stage, "done", result)
    return manifest


def _public(config: Any) -> Any:
    """Drop values that look like secrets (keys named *token*/*key* holding values, not env-var names)."""
    if isinstance(config, dict):
        return {k: ("<redacted>" if re.search(r"token|secret|password|api_key$", k, re.I) and config[k] else _public(v))
                for k, v in config.items()}
    if isinstance(config, list):
        return [_public(v) for v in config]
    return config
