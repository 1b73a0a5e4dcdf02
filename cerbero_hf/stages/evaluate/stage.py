"""The ``evaluate`` stage: few-shot SQuAD-it (3-shot) and EVALITA (5-shot) scores of a model (paper §4.2).

Config: :class:`EvaluateConfig` (recipe section ``evaluate``, CLI ``cerbero-hf evaluate MODEL``).
Input: in a recipe, the ``train`` stage's model (its merged LoRA model when there is one); from the CLI,
any local folder, Hub id or endpoint model. Output: ``results.json`` (per task: ``n``, ``skipped``,
``unknown``, ``failed``, ``metrics``, ``headline``, ``config``; ``predictions`` with ``predictions: true``)
and, with ``update_card``, the scores merged into the model card (``model-index`` and its table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cerbero_hf.config import Config, setting
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import result_paths, writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output
from cerbero_hf.stages.evaluate.prompts import FORMATS
from cerbero_hf.stages.evaluate.tasks import TASKS


@dataclass
class EvaluateConfig(Config):
    """Which tasks, how they are prompted, and which generator answers them.

    Examples:
        >>> from cerbero_hf import EvaluateConfig
        >>> EvaluateConfig().tasks
        ['squad_it', 'sentipolc', 'ironita', 'ami2020']
        >>> EvaluateConfig(format="alpaca")
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: column 'evaluate.format': evaluate.format: unknown prompt format 'alpaca'; ...
    """

    SECTION = "evaluate"
    tasks: list[str] = setting(default_factory=lambda: list(TASKS),
                               help=f"Tasks to run (built in: {', '.join(TASKS)}).")
    limit: int | None = setting(None, help="Evaluate only the first N items of each task.", ge=1)
    shots: str | None = setting(None, help="Shots: N for every task, or task=N,... (default 3 for SQuAD-it, "
                                           "5 for EVALITA).")
    format: str = setting("chat", help="Prompt format: chat (the model's chat template), cerbero, fauno or "
                                       "camoscio (transcript formats of the paper's baselines).", choices=FORMATS)
    stop: list[str] | None = setting(None, help="Stop strings, comma-separated ('\\n' allowed); default: the "
                                                "format's (its user tag, or a newline for camoscio).")
    endpoint: str | None = setting(None, help="Evaluate a model behind this URL (TGI, vLLM, transformers serve, "
                                              "OpenAI-compatible).")
    max_new_tokens: int | None = setting(None, help="Override every task's generation length (defaults: 100 for "
                                                    "SQuAD-it, 16 for EVALITA).", ge=1)
    api_key_env: str | None = setting(None, help="Environment variable holding the endpoint's API key (read, "
                                                 "never printed).")
    data_dir: str | None = setting(None, help="Read task T from DATA_DIR/T/ instead of the Hub.")
    predictions: bool = setting(False, help="Store every example's prompt shots, raw output and parsed answer.")
    update_card: bool = setting(True, help="Merge the scores into the trained model's card (model-index and eval "
                                           "table) when it has one.", cli=False)
    seed: int = setting(42, help="Seed of the shot draws (recorded in the results).")
    batch_size: int = setting(16, help="Prompts per generate call (local model).", ge=1)
    concurrency: int = setting(8, help="Requests in flight (endpoint).", ge=1)
    threads: int | None = setting(None, help="torch CPU threads (default: torch's choice; 1 is often fastest on "
                                             "a busy machine).", ge=1)
    device: str | None = setting(None, help="cpu, cuda, ... (default: cuda when available).")
    dtype: str | None = setting(None, help="Weights dtype (default: bfloat16 on a GPU that supports it, else "
                                           "float32).", choices=("float32", "bfloat16", "float16"))
    revision: str | None = setting(None, help="Model revision on the Hub.")
    instruction: bool = setting(False, help="Add benchita's instruction turn before the shots.")
    balanced: bool = setting(False, help="Class-balanced shots for EVALITA.")
    task_config: str | None = setting(None, help="YAML merged over the language's task settings.")
    language: str = setting("it", help="Language pack code or YAML.")

    def __post_init__(self) -> None:
        if self.format not in FORMATS:  # the same words as prompt_format's error, at parse time
            raise InputError(f"evaluate.format: unknown prompt format {self.format!r}; choose one of "
                             f"{', '.join(FORMATS)}", column="evaluate.format")
        super().__post_init__()
        if not self.tasks:
            raise InputError("evaluate.tasks must name at least one task", column="evaluate.tasks")
        builtin = self.task_config is None and self.language == "it"  # other packs may define other tasks
        unknown = [t for t in self.tasks if t not in TASKS] if builtin else []
        if unknown:
            raise InputError(f"evaluate.tasks: unknown task {unknown[0]!r}; known: {', '.join(TASKS)}",
                             column="evaluate.tasks")
        parse_shots(self.shots, self.tasks)


@dataclass
class EvaluateResult(Result):
    """Examples scored, the headline score of each task (``f1`` for SQuAD-it, ``macro_f1`` for EVALITA)."""

    examples: int = 0
    scores: dict = field(default_factory=dict)  # task -> headline score (percent, 2 decimals)
    metrics: dict = field(default_factory=dict)  # task -> name of its headline metric
    results: str | None = output()


def parse_shots(value: str | None, tasks: list[str]) -> dict[str, int]:
    """``"3"`` (every task) or ``"squad_it=3,sentipolc=5"`` as ``{task: shots}``."""
    if not value:
        return {}
    try:
        if "=" not in value:
            shots = {t: int(value) for t in tasks}
        else:
            shots = {k.strip(): int(v) for k, v in (part.split("=", 1) for part in value.split(",") if part.strip())}
    except ValueError:
        raise InputError(f"evaluate.shots must be N or task=N,... (got {value!r})", column="evaluate.shots") from None
    if any(n < 0 for n in shots.values()):
        raise InputError(f"evaluate.shots must be >= 0 (got {value!r})", column="evaluate.shots")
    return shots


def stop_strings(values: list[str] | None) -> list[str] | None:
    """Stop strings with ``\\n`` / ``\\t`` escapes decoded; None keeps the format's default."""
    if not values:
        return None
    return [v.replace("\\n", "\n").replace("\\t", "\t") for v in values]


def _card_file(card: str | Path | None) -> Path | None:
    if card is None:
        return None
    card = Path(card)
    return card if card.is_file() else card / "README.md" if (card / "README.md").is_file() else None


def make_generator(config: EvaluateConfig, model: str):
    """The endpoint or local generator the config asks for (a model that cannot load is an input error)."""
    if config.endpoint:
        from cerbero_hf.stages.evaluate.generators import EndpointGenerator

        return EndpointGenerator(config.endpoint, model=model, concurrency=config.concurrency, seed=config.seed,
                                 api_key_env=config.api_key_env)
    from cerbero_hf.stages.evaluate.generators import LocalGenerator

    try:
        return LocalGenerator(model, revision=config.revision, device=config.device, dtype=config.dtype,
                              batch_size=config.batch_size, threads=config.threads)
    except OSError as err:
        raise InputError(f"cannot load model: {str(err).splitlines()[0]}", file=model) from None


def evaluate_model(config: EvaluateConfig, model: str, results_path: str | Path, *, card: str | Path | None = None,
                   update_card: bool = False, progress: Callable[[int], None] | None = None,
                   on_task: Callable[[str, int], None] | None = None) -> EvaluateResult:
    """Evaluate ``model`` on ``config.tasks``, write ``results_path`` and (with ``update_card``) the card.

    Args:
        model: a local folder or Hub id (with ``config.endpoint``: the model name sent to the server).
        card: the model card (README.md or its folder) that ``update_card`` merges the scores into.
        progress: called with the number of examples just finished.
        on_task: called as ``on_task(name, n_examples)`` when a task starts generating.

    Under a launcher (``torchrun``, ``accelerate launch``) it runs on the main process only (``cerbero-hf evaluate``
    leaves the other ranks idle); called on another rank it refuses, so results are never written twice.

    Examples:
        >>> from cerbero_hf import EvaluateConfig, evaluate_model
        >>> config = EvaluateConfig(tasks=["squad_it"], format="cerbero", limit=100)
        >>> result = evaluate_model(config, "galatolo/cerbero-7b", "out/results.json")  # doctest: +SKIP
    """
    from cerbero_hf import distributed
    from cerbero_hf.stages.evaluate.prompts import prompt_format

    if not distributed.is_main():
        raise InputError(f"evaluation runs on the main process only; this is rank {distributed.rank()} "
                         "(call evaluate_model where cerbero_hf.distributed.is_main())")
    from cerbero_hf.stages.evaluate.runner import card_scores, evaluate_tasks
    from cerbero_hf.stages.evaluate.tasks import evaluation_settings, load_examples, task_configs

    settings = evaluation_settings(config.language, config.task_config)
    tasks = task_configs(config.tasks, settings, data_dir=config.data_dir,
                         shots=parse_shots(config.shots, config.tasks), balanced=config.balanced,
                         instruction=config.instruction)
    if config.max_new_tokens is not None:
        for task in tasks:
            task.max_new_tokens = config.max_new_tokens
    fmt = prompt_format(config.format, config.language, settings)
    card_file = _card_file(card)
    if update_card and card_file is None:
        raise InputError("--update-card needs a model card: pass --card README.md (or a folder holding one)",
                         file=str(card) if card else None)
    for task in tasks:  # read every task file first: a broken one fails before a model is loaded
        for split in dict.fromkeys((task.eval_split, task.shot_split)):
            load_examples(task, split)
    doc = evaluate_tasks(tasks, make_generator(config, model), fmt, seed=config.seed, limit=config.limit,
                         stop=stop_strings(config.stop), settings=settings, language=config.language,
                         keep_predictions=config.predictions, progress=progress, on_task=on_task)
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if update_card and card_file is not None:  # (checked above: no card is an input error)
        from cerbero_hf.stages.train.model_card import update_eval_results

        hub_ids = {t.name: t.dataset for t in tasks} if config.data_dir is None else None
        update_eval_results(card_file, card_scores(doc), Path(model).name if Path(model).exists() else model, hub_ids)
    blocks = doc["tasks"]
    return EvaluateResult(examples=sum(b["n"] for b in blocks.values()),
                          scores={t: round(b["metrics"][b["headline"]], 2) for t, b in blocks.items()},
                          metrics={t: b["headline"] for t, b in blocks.items()}, results=str(path))


@writes_output(lambda config, ctx: result_paths(ctx, ("train", "merged"), ("train", "model")))
def run_evaluate(config: EvaluateConfig, ctx: Context) -> EvaluateResult:
    """Evaluate the ``train`` stage's model (merged when LoRA was merged); write ``ctx.output/results.json``.

    ``update_card`` merges the scores into that model's card when it has one.
    """
    trained = ctx.input("train")
    model = getattr(trained, "merged", None) or getattr(trained, "model", None)
    if not model:
        raise InputError("stage 'evaluate' found no trained model: the train stage recorded no model folder",
                         column="train")
    update = config.update_card and (Path(model) / "README.md").is_file()
    return evaluate_model(config, str(model), Path(ctx.output) / "results.json", card=model, update_card=update)


STAGE = Stage("evaluate", EvaluateConfig, run_evaluate, EvaluateResult, inputs=("train",), folder="eval",
              help=__doc__.splitlines()[0])
