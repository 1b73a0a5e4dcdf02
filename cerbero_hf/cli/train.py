"""``cerbero-hf train``: supervised fine-tuning with the Cerbero recipe on TRL (METHOD.md §6)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ORDER = 50


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


def _summary(res, cfg):
    from rich.table import Table

    table = Table(title="cerbero-hf train", show_header=False)
    rate = res.tokens / res.seconds if res.seconds else 0.0
    rows = [("condition", cfg.condition), ("training rows", res.rows), ("steps", res.steps),
            ("tokens (this run)", f"{res.tokens:,}"), ("train loss", f"{res.train_loss:.4f}" if res.train_loss else "–"),
            ("eval loss", f"{res.eval_loss:.4f}" if res.eval_loss is not None else "–"),
            ("time", f"{res.seconds:.1f} s ({rate:,.0f} tokens/s)"),
            ("loss mode", "assistant-only" if cfg.assistant_only_loss else "full conversation"),
            ("resumed from", res.resumed_from or "–"), ("model", res.output_dir),
            ("merged model", res.merged_dir or "–"), ("Hub repo", res.hub_repo or "–")]
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def register(app) -> None:
    @app.command()
    def train(
        args: Annotated[list[str], typer.Argument(
            help="[RECIPE.yaml] [CORPUS ...] OUTPUT. A CORPUS is PATH, NAME=PATH or NAME=PATH@WEIGHT "
                 "(a file, a Hub-layout folder or a Hub dataset id); corpora add to the recipe's.")],
        condition: Annotated[Optional[str], typer.Option(help="fauno | generated | full (METHOD.md §6.1).")] = None,
        model: Annotated[Optional[str], typer.Option(help="Base model id or local path.")] = None,
        lora: Annotated[Optional[bool], typer.Option("--lora/--full", help="LoRA through PEFT, or full fine-tuning (the paper).")] = None,
        qlora: Annotated[Optional[bool], typer.Option("--qlora", help="LoRA on a 4-bit base (bitsandbytes, GPU).")] = None,
        merge: Annotated[Optional[bool], typer.Option("--merge", help="With LoRA, also write OUTPUT-merged (merge_and_unload).")] = None,
        push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", metavar="REPO", help="Push checkpoints and the final model to this Hub repo.")] = None,
        hub_strategy: Annotated[Optional[str], typer.Option(help="checkpoint | every_save | end | all_checkpoints.")] = None,
        public: Annotated[Optional[bool], typer.Option("--public", help="Create the Hub repo public (default private).")] = None,
        assistant_only_loss: Annotated[Optional[bool], typer.Option("--assistant-only-loss/--full-loss", help="Loss on assistant replies only (METHOD.md D26).")] = None,
        fauno_tags: Annotated[Optional[bool], typer.Option("--fauno-tags", help="Render replies with the Fauno tag [|AI|] (D27).")] = None,
        max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimiser steps.")] = None,
        epochs: Annotated[Optional[float], typer.Option(help="Epochs (Table 1: 1).")] = None,
        max_length: Annotated[Optional[int], typer.Option(help="Sequence length (Table 1: 8192).")] = None,
        learning_rate: Annotated[Optional[float], typer.Option(help="Learning rate (Table 1: 5e-6).")] = None,
        batch_size: Annotated[Optional[int], typer.Option(help="Micro batch size per device (Table 1: 4).")] = None,
        grad_accum: Annotated[Optional[int], typer.Option(help="Gradient accumulation steps (D25: 4).")] = None,
        packing: Annotated[Optional[bool], typer.Option("--packing/--no-packing", help="Sequence packing (D25: on).")] = None,
        save_steps: Annotated[Optional[int], typer.Option(help="Save (and push) a checkpoint every N steps.")] = None,
        seed: Annotated[Optional[int], typer.Option(help="Shuffle and training seed (D28: 42).")] = None,
        language: Annotated[Optional[str], typer.Option(help="Language pack code or YAML.")] = None,
        resume: Annotated[Optional[bool], typer.Option("--resume/--no-resume", help="Continue from the last checkpoint in OUTPUT (default on).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Any TrainConfig field, e.g. --set warmup_steps=0.")] = None,
    ) -> None:
        """Fine-tune a model on the corpora with TRL's SFTTrainer (METHOD.md §6, Table 1)."""
        import yaml
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from cerbero_hf.errors import InputError
        from cerbero_hf.training import TrainConfig, check_inputs
        from cerbero_hf.training import train as run_train

        if len(args) < 2:
            raise InputError("give at least one CORPUS (or a RECIPE.yaml) and an OUTPUT folder")
        *inputs, output = args
        recipe = inputs[0] if inputs[0].endswith((".yaml", ".yml")) else None
        corpora = inputs[1:] if recipe else inputs
        overrides = dict(condition=condition, model=model, lora=True if qlora else lora, load_in_4bit=qlora,
                         merge_lora=merge, hub_strategy=hub_strategy, assistant_only_loss=assistant_only_loss,
                         fauno_tags=fauno_tags, max_steps=max_steps, num_train_epochs=epochs, max_length=max_length,
                         learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                         gradient_accumulation_steps=grad_accum, packing=packing, save_steps=save_steps, seed=seed,
                         language=language, resume=resume, output_dir=output)
        if push_to_hub:
            overrides.update(push_to_hub=True, hub_model_id=push_to_hub)
        if public:
            overrides["hub_private_repo"] = False
        for item in set_ or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"--set expects KEY=VALUE, got {item!r}")
            overrides[key.strip()] = yaml.safe_load(value)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        cfg = TrainConfig.from_yaml(recipe, **overrides) if recipe else TrainConfig.from_dict(overrides)
        cfg.corpora = list(cfg.corpora) + corpora
        if not cfg.corpora:
            raise InputError("no corpora: pass CORPUS arguments or list them under 'corpora' in the recipe")

        check_inputs(cfg)
        console = Console(stderr=True)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn()]
        with Progress(*columns, console=console, auto_refresh=False) as progress:
            res = run_train(cfg, callbacks=[_progress_callback(progress)])
        Console().print(_summary(res, cfg))
