"""``cerbero-hf train``: supervised fine-tuning with the Cerbero recipe on TRL (paper §4, Table 1).

The flags are the fields of :class:`cerbero_hf.stages.train.config.TrainConfig` (TRL's ``SFTConfig`` plus
the Cerbero fields), parsed by a ``HfArgumentParser`` as in TRL's ``trl/scripts/sft.py``; ``--config
RECIPE.yaml`` reads a recipe's ``train:`` section (or a flat YAML of the same keys) and flags override
it. The parser (and TRL) is imported inside the command, so ``cerbero-hf --help`` stays fast.
"""

from __future__ import annotations

import typer

ORDER = 50

USAGE = "[--config RECIPE.yaml] [CORPUS ...] OUTPUT [--FLAG VALUE ...]"
ARGUMENTS = ("A CORPUS is PATH, NAME=PATH or NAME=PATH@WEIGHT (a file, a Hub-layout folder or a Hub dataset id); "
             "corpora add to the recipe's. A first argument ending in .yaml is read as --config. Put CORPUS and "
             "OUTPUT before flags such as --lora that take an optional true/false.")


def _progress_callback(progress, every: float = 2.0):
    """A transformers ``TrainerCallback`` that drives a rich progress bar (imported lazily).

    The bar is redrawn from the training thread at most every ``every`` seconds, and only on a terminal
    (no refresh thread competing with the training loop for the GIL; no frames written into log files).
    """
    import time

    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        task = None
        last = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.task = progress.add_task("training", total=state.max_steps or None, loss="–")
            progress.update(self.task, completed=state.global_step, refresh=True)

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if now - self.last >= every or state.global_step >= state.max_steps:
                self.last = now
                progress.update(self.task, completed=state.global_step, refresh=progress.console.is_terminal)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.task is not None and logs and "loss" in logs:
                progress.update(self.task, loss=f"{logs['loss']:.4f}")

    return RichProgress()


def _processes(cfg) -> str:
    """``2 (torchrun), global batch 8``: how many ranks trained, started how, and the global batch."""
    from cerbero_hf import distributed
    from cerbero_hf.stages.train.ranks import global_batch

    world = distributed.world_size()
    how = f" ({distributed.launcher()})" if world > 1 else ""
    return f"{world}{how}, global batch {global_batch(cfg)}"


def _summary(res, cfg):
    from rich.table import Table

    table = Table(title="cerbero-hf train", show_header=False)
    rate = res.tokens / res.seconds if res.seconds else 0.0
    rows = [("condition", cfg.condition), ("training rows", res.rows),
            ("rejected rows", f"{res.rejected} (reasons in cerbero_train.json)" if res.rejected else 0),
            ("steps", res.steps),
            ("tokens (this run)", f"{res.tokens:,}"),
            ("train loss", f"{res.train_loss:.4f}" if res.train_loss else "–"),
            ("eval loss", f"{res.eval_loss:.4f}" if res.eval_loss is not None else "–"),
            ("time", f"{res.seconds:.1f} s ({rate:,.0f} tokens/s)"),
            ("processes", _processes(cfg)),
            ("loss mode", "assistant-only" if cfg.assistant_only_loss else "full conversation"),
            ("resumed from", res.resumed_from or "–"), ("model", res.model),
            ("merged model", res.merged or "–"), ("Hub repo", res.hub or "–")]
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def parse_train_args(argv: list[str]):
    """``cerbero-hf train`` arguments -> a validated ``TrainConfig`` (``--help`` prints the flags and exits).

    Values come from, lowest first: the config's defaults, the recipe (``--config``; its top-level
    ``language`` and ``seed`` fill the section's), the flags. Positional arguments are corpora and, last,
    the output folder.
    """
    import argparse

    from cerbero_hf.cli._train_help import TrainHelpFormatter
    from cerbero_hf.config import load_yaml
    from cerbero_hf.errors import InputError
    from cerbero_hf.stages.train.config import TrainConfig, parser

    argv = list(argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml")):
        argv[:1] = ["--config", argv[0]]
    p = parser(usage="cerbero-hf train " + USAGE, formatter_class=TrainHelpFormatter,
               description="Fine-tune a model on the corpora with TRL's SFTTrainer (paper §4, Table 1). " + ARGUMENTS
               + " Every flag also takes its underscore spelling (--max_steps for --max-steps).")
    p.add_argument("--config", metavar="RECIPE.yaml", help="A recipe (its train: section) or a YAML of train keys.")
    if "-h" in argv or "--help" in argv:
        p.print_help()
        raise SystemExit(0)
    for action in p._actions:  # the flags given, only: the recipe's values must survive unset flags
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    namespace, rest = p.parse_known_args(argv)
    given = vars(namespace)
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        raise InputError(f"unknown option {unknown[0]} (cerbero-hf train --help lists the flags)")
    section, defaults, recipe = {}, {}, given.pop("config", None)
    if recipe:
        from cerbero_hf.recipe import expand_env

        data = load_yaml(recipe, "recipe")
        # only what train reads is expanded: ${TGI_URL} in the generate section is no concern of training
        section = expand_env(data.get("train", data) or {}, "train" if "train" in data else "")
        if "train" in data:
            defaults = expand_env({k: data[k] for k in ("language", "seed") if k in data})
    corpora, output = (rest[:-1], rest[-1]) if rest else ([], None)
    if output is not None:
        given["output_dir"] = output
    values = {**section, **given}
    if corpora or "corpora" in given:
        values["corpora"] = list(section.get("corpora") or []) + list(given.get("corpora") or []) + corpora
    try:
        cfg = TrainConfig.from_recipe(values, file=recipe, defaults=defaults)
    except InputError as err:
        key = (err.column or "")[len("train."):]
        if key in given:  # name the flag the user typed, not the recipe key
            raise InputError(err.message.replace(f"train.{key}", "--" + key.replace("_", "-"))) from None
        raise
    if not cfg.corpora:
        raise InputError("no corpora: pass CORPUS arguments or list them under 'corpora' in the recipe")
    if not cfg.output_dir:
        raise InputError("an output folder is needed: pass OUTPUT (or --output-dir)")
    return cfg


def register(app) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                 add_help_option=False, short_help="Fine-tune a model on the corpora with TRL's SFTTrainer "
                                                   "(paper §4, Table 1).",
                 help="Fine-tune a model on the corpora with TRL's SFTTrainer (paper §4, Table 1). Arguments: "
                      + USAGE + ". " + ARGUMENTS + " cerbero-hf train --help lists the flags (every TrainConfig "
                      "field).")
    def train(ctx: typer.Context) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from cerbero_hf import distributed
        from cerbero_hf.stages.train.trainer import check_inputs
        from cerbero_hf.stages.train.trainer import train as run_train

        cfg = parse_train_args(ctx.args)
        check_inputs(cfg)
        console = Console(stderr=True)
        note = lambda line: console.print(f"note: {line}", highlight=False, soft_wrap=True)  # noqa: E731
        if not distributed.is_main():  # under a launcher only the main process prints
            run_train(cfg)
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn()]
        with Progress(*columns, console=console, auto_refresh=False) as progress:
            res = run_train(cfg, callbacks=[_progress_callback(progress)], on_note=note)
        Console().print(_summary(res, cfg))
