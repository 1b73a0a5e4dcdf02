"""``cerbero-hf evaluate MODEL``: SQuAD-it 3-shot and EVALITA 5-shot, as in the paper (§4.2).

Flags come from :class:`cerbero_hf.stages.evaluate.stage.EvaluateConfig` (the recipe's ``evaluate:`` keys);
``--output``, ``--update-card`` and ``--card`` are this command's own (a recipe updates the trained model's
card: ``evaluate.update_card``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from cerbero_hf.cli._config import config_command
from cerbero_hf.stages.evaluate.stage import EvaluateConfig

ORDER = 60


def _table(results: dict):
    """One row per (task, metric); the headline metric first and marked with *."""
    from rich.table import Table

    table = Table(title=f"cerbero-hf evaluate: {results['model']} ({results['format']}, seed {results['seed']})")
    for col in ("task", "n", "metric", "value", "unknown", "skipped", "failed"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for name, block in results["tasks"].items():
        metrics = {k: v for k, v in block["metrics"].items() if isinstance(v, float)}
        order = [block["headline"]] + [k for k in metrics if k != block["headline"]]
        for i, key in enumerate(order):
            first = i == 0
            table.add_row(name if first else "", str(block["n"]) if first else "", key + (" *" if first else ""),
                          f"{metrics[key]:.2f}", str(block["unknown"]) if first else "",
                          str(block["skipped"]) if first else "", str(block["failed"]) if first else "",
                          end_section=i == len(order) - 1)
    return table


EXTRA = [
    inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default=Path("results.json"),
                      annotation=Annotated[Path, typer.Option(help="Results JSON file.")]),
    inspect.Parameter("update_card", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--update-card", help="Merge the scores into the model card (model-index and eval "
                                                 "table).")]),
    inspect.Parameter("card", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[Optional[Path], typer.Option(
                          help="Model card (README.md or its folder) for --update-card; default: MODEL when it "
                               "is a folder.")]),
]


def register(app) -> None:
    @config_command(app, "evaluate", EvaluateConfig, arguments=[
        ("model", "Local model folder or Hub id; with --endpoint, the model name to send.")], extra=EXTRA)
    def evaluate(config: EvaluateConfig, model: str, output: Path = Path("results.json"), update_card: bool = False,
                 card: Path | None = None) -> None:
        """Few-shot evaluation: SQuAD-it (F1/EM) and EVALITA SENTIPOLC, IronITA, AMI 2020 (macro F1)."""
        import json

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from cerbero_hf import distributed
        from cerbero_hf.stages.evaluate.stage import evaluate_model

        console = Console(stderr=True)
        if distributed.launched():  # examples are few and generation is cheap next to training: one process
            if not distributed.is_main():
                return
            console.print(f"note: under {distributed.launcher()} evaluation runs on the main process only; the "
                          f"other {distributed.world_size() - 1} rank(s) stay idle", highlight=False)
        card_path = card or (Path(model) if Path(model).is_dir() else None)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            current = {}

            def on_task(name, n):
                current["id"] = bar.add_task(name, total=n)

            evaluate_model(config, model, output, card=card_path, update_card=update_card,
                           progress=lambda k: bar.advance(current["id"], k), on_task=on_task)
        Console().print(_table(json.loads(Path(output).read_text(encoding="utf-8"))))  # what evaluate_model wrote
        console.print(f"Results written to {output}")
        if update_card:
            console.print(f"Model card updated: {card_path}")
