"""``cerbero-hf evaluate``: SQuAD-it 3-shot and EVALITA 5-shot, as in the paper (METHOD.md §7, D29-D32)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ORDER = 60


def _parse_shots(value: str | None, tasks: list[str]) -> dict[str, int]:
    """``"3"`` (every task) or ``"squad_it=3,sentipolc=5"``."""
    from cerbero_hf.errors import InputError

    if not value:
        return {}
    try:
        if "=" not in value:
            return {t: int(value) for t in tasks}
        return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in value.split(",") if part.strip())}
    except ValueError:
        raise InputError(f"--shots must be N or task=N,... (got {value!r})") from None


def _stop_strings(values: list[str] | None) -> list[str] | None:
    """``--stop`` values with ``\\n`` / ``\\t`` escapes decoded; None keeps the format's default."""
    if not values:
        return None
    return [v.replace("\\n", "\n").replace("\\t", "\t") for v in values]


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


def register(app) -> None:
    @app.command()
    def evaluate(
        model: Annotated[str, typer.Argument(help="Local model folder or Hub id; with --endpoint, the model name to send.")],
        tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "squad_it,sentipolc,ironita,ami2020",
        limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N items of each task.")] = None,
        shots: Annotated[Optional[str], typer.Option(help="Shots: N for every task, or task=N,... "
                                                          "(default 3 for SQuAD-it, 5 for EVALITA).")] = None,
        format: Annotated[str, typer.Option("--format", help="Prompt format: chat (the model's chat template), "
                                                              "cerbero, fauno or camoscio (METHOD.md §7.3).")] = "chat",
        stop: Annotated[Optional[list[str]], typer.Option(help="Stop string (repeatable; '\\n' allowed); "
                                                               "default per format (D32).")] = None,
        endpoint: Annotated[Optional[str], typer.Option(help="Evaluate a model behind this URL (TGI, vLLM, "
                                                             "transformers serve, OpenAI-compatible).")] = None,
        max_new_tokens: Annotated[Optional[int], typer.Option(help="Override every task's generation length "
                                                                   "(defaults: 100 for SQuAD-it, 16 for EVALITA).")] = None,
        api_key_env: Annotated[Optional[str], typer.Option(help="Environment variable holding the endpoint's "
                                                                "API key (read, never printed).")] = None,
        data_dir: Annotated[Optional[Path], typer.Option(help="Read task T from DATA_DIR/T/ instead of the Hub.")] = None,
        output: Annotated[Path, typer.Option(help="Results JSON file.")] = Path("results.json"),
        predictions: Annotated[bool, typer.Option("--predictions", help="Store every example's prompt shots, "
                                                                        "raw output and parsed answer.")] = False,
        update_card: Annotated[bool, typer.Option("--update-card", help="Merge the scores into the model card "
                                                                        "(model-index and eval table).")] = False,
        card: Annotated[Optional[Path], typer.Option(help="Model card (README.md or its folder) for --update-card; "
                                                          "default: MODEL when it is a folder.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the shot draws (recorded in the results).")] = 42,
        batch_size: Annotated[int, typer.Option(help="Prompts per generate call (local model).")] = 16,
        concurrency: Annotated[int, typer.Option(help="Requests in flight (endpoint).")] = 8,
        threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice; 1 is "
                                                             "often fastest on a busy machine).")] = None,
        device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... (default: cuda when available).")] = None,
        dtype: Annotated[Optional[str], typer.Option(help="float32, bfloat16, float16 (default: bf16 on GPU).")] = None,
        revision: Annotated[Optional[str], typer.Option(help="Model revision on the Hub.")] = None,
        instruction: Annotated[bool, typer.Option("--instruction/--no-instruction",
                                                  help="Add benchita's instruction turn (METHOD.md §7.4).")] = False,
        balanced: Annotated[bool, typer.Option("--balanced", help="Class-balanced shots for EVALITA.")] = False,
        task_config: Annotated[Optional[Path], typer.Option(help="YAML merged over the language's task settings.")] = None,
        language: Annotated[str, typer.Option(help="Language pack code or YAML.")] = "it",
    ) -> None:
        """Few-shot evaluation: SQuAD-it (F1/EM) and EVALITA SENTIPOLC, IronITA, AMI 2020 (macro F1)."""
        import json

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from cerbero_hf.errors import InputError
        from cerbero_hf.evaluation.prompts import prompt_format
        from cerbero_hf.evaluation.runner import card_scores, evaluate_tasks
        from cerbero_hf.evaluation.tasks import evaluation_settings, task_configs

        console = Console(stderr=True)
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        settings = evaluation_settings(language, task_config)
        configs = task_configs(names, settings, data_dir=data_dir, shots=_parse_shots(shots, names),
                               balanced=balanced, instruction=instruction)
        if max_new_tokens is not None:
            for config in configs:
                config.max_new_tokens = max_new_tokens
        fmt = prompt_format(format, language, settings)
        card_path = card or (Path(model) if Path(model).is_dir() else None)
        if update_card and (card_path is None or not (card_path.is_file() or (card_path / "README.md").is_file())):
            raise InputError("--update-card needs a model card: pass --card README.md (or a folder holding one)",
                             file=str(card_path) if card_path else None)
        if endpoint:
            from cerbero_hf.evaluation.generators import EndpointGenerator

            generator = EndpointGenerator(endpoint, model=model, concurrency=concurrency, seed=seed,
                                          api_key_env=api_key_env)
        else:
            from cerbero_hf.evaluation.generators import LocalGenerator

            try:
                generator = LocalGenerator(model, revision=revision, device=device, dtype=dtype,
                                           batch_size=batch_size, threads=threads)
            except OSError as err:
                raise InputError(f"cannot load model: {str(err).splitlines()[0]}", file=model) from None

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            current = {}

            def on_task(name, n):
                current["id"] = bar.add_task(name, total=n)

            results = evaluate_tasks(configs, generator, fmt, seed=seed, limit=limit, stop=_stop_strings(stop),
                                     settings=settings, language=language, keep_predictions=predictions,
                                     progress=lambda k: bar.advance(current["id"], k), on_task=on_task)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        Console().print(_table(results))
        console.print(f"Results written to {output}")
        if update_card:
            from cerbero_hf.model_card import update_eval_results

            hub_ids = {c.name: c.dataset for c in configs if data_dir is None}
            update_eval_results(card_path, card_scores(results), Path(model).name if Path(model).exists() else model,
                                hub_ids or None)
            console.print(f"Model card updated: {card_path}")
