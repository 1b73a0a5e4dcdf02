"""``cerbero-hf demo`` (what ``make demo`` runs): the whole method offline on tiny models (cerbero_hf/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ORDER = 90


def register(app) -> None:
    @app.command()
    def demo(
        output: Annotated[Path, typer.Option(help="Folder for the demo outputs.")] = Path("demo-output"),
        force: Annotated[bool, typer.Option("--force", help="Re-run stages already done.")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", help="Show the libraries' own progress bars, logs and "
                                                                "warnings (hidden by default).")] = False,
    ) -> None:
        """Run the whole recipe offline: seeds, self-chat, refine, score, filter, LoRA SFT, evaluate, publish."""
        import time

        from rich.console import Console

        from cerbero_hf.cli._console import StageConsole, calm_libraries
        from cerbero_hf.cli.run import print_manifest
        from cerbero_hf.demo import run_demo
        from cerbero_hf.recipe import STAGES

        console = Console(stderr=True)
        start = time.time()
        with calm_libraries(verbose), StageConsole(STAGES, console) as shown:
            manifest, model_seconds = run_demo(output, force=force, log=shown.note, on_stage=shown.on_stage,
                                               on_event=shown.on_event)
        print_manifest(manifest, statuses=shown.statuses)
        out = Console()
        out.print(f"Tiny models built in {sum(model_seconds.values()):.1f} s: {output / 'models'}")
        out.print("Demo thresholds are tuned for the tiny models (see cerbero_hf/resources/recipes/demo.yaml): "
                  "NLL filter < 6.5 instead of the paper's 2.0; 16 conversations of 4-6 messages.")
        out.print("Look at:", soft_wrap=True)
        for path in (output / "run" / "manifest.json", output / "run", output / "hub"):
            out.print(f"  {path}", soft_wrap=True, highlight=False)
        out.print(f"Total: {time.time() - start:.1f} s")
        from cerbero_hf.cli.report import write_after_run  # the run's page, its path printed last

        write_after_run(manifest.path.parent, ["cerbero-hf", "demo", "--output", str(output),
                                               *(["--force"] if force else [])], console=out)
