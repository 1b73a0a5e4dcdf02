"""``cerbero-hf refine INPUT OUTPUT``: the Fauno refinement (paper §3.1: tag repair, empty conversations,
system prompts, turn order, language check, duplicates) from a file, folder or Hub id to a Hub-layout folder.

Flags come from :class:`cerbero_hf.stages.refine.stage.RefineConfig` (the recipe's ``refine:`` keys).
"""

from __future__ import annotations

from typing import Any

from cerbero_hf.cli._config import config_command
from cerbero_hf.stages.refine.stage import RefineConfig

ORDER = 30


def report_table(result, seconds: float, lang_action: str, title: str = "cerbero-hf refine"):
    """The refinement report as a rich table: one row per rule (the rule list's order), and a total."""
    from rich.table import Table

    table = Table(title=f"{title}: {result.kept} of {result.input} conversations kept "
                        f"({seconds:.1f} s, language check: {lang_action})")
    table.add_column("rule")
    table.add_column("conversations removed", justify="right")
    table.add_column("messages changed", justify="right")
    for rule, removed in result.removed.items():
        table.add_row(rule, str(removed), str(result.changed.get(rule, 0)))
    table.add_row("total", str(sum(result.removed.values())), str(sum(result.changed.values())), style="bold")
    return table


def register(app) -> None:
    @config_command(app, "refine", RefineConfig, arguments=[
        ("input", "Corpus: parquet/jsonl/json/csv/arrow file, a folder (Hub layout or save_to_disk), or a Hub "
                  "dataset id. Rows in `messages` form or one Fauno transcript column."),
        ("output", "Output folder (Hub layout: configs default and rejected).")], writes_folder=True)
    def refine(config: RefineConfig, input: str, output: str, overwrite: bool = False) -> None:
        """Refine a Fauno-style corpus (paper §3.1): removed rows go to the `rejected` config with a reason."""
        import dataclasses
        import time
        from pathlib import Path

        from datasets.utils.logging import disable_progress_bar, enable_progress_bar
        from rich.console import Console

        from cerbero_hf.stages.base import Context
        from cerbero_hf.stages.refine.stage import run_refine

        config = dataclasses.replace(config, inputs=[input])
        console = Console(stderr=True)
        live: dict[str, Any] = {"status": None, "start": time.perf_counter(), "seconds": 0.0}

        def status(text: str | None) -> None:
            if live["status"] is not None:
                live["status"].stop()
            live["status"] = console.status(text) if text else None
            if live["status"] is not None:
                live["status"].start()

        def on_event(event: str, stats: dict) -> None:
            if event == "loading":
                disable_progress_bar()  # only the refinement's own bar: errors stay one line on stderr
                status(f"Loading {input} ...")
            elif event == "refining":
                status(None)
                enable_progress_bar()  # datasets shows the "Refining" bar
                live["start"] = time.perf_counter()
            elif event == "writing":
                live["seconds"] = time.perf_counter() - live["start"]
                disable_progress_bar()
                status(f"Writing {output} ...")

        try:
            result = run_refine(config, Context(output=Path(output), on_event=on_event, overwrite=overwrite))
        finally:
            status(None)
        Console().print(report_table(result, live["seconds"], config.lang_action))
        from cerbero_hf.io import check_kept, wrote_line

        Console().print(wrote_line(output))  # the load_dataset calls that work (an empty config cannot load)
        check_kept(output)  # nothing kept: exit 2, one line (the folder stays written)
