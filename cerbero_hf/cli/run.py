"""``cerbero-hf run RECIPE.yaml``: the whole method, one typed YAML section per stage (recipe.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ORDER = 80
# the recipe re-runs its own stages when their settings change: --overwrite is about files it did not write
RUN_OVERWRITE_HELP = "Write into output folders holding files cerbero-hf did not write (they are kept)."


def print_manifest(manifest, console=None, statuses: dict | None = None) -> None:
    """The closing table, 80 columns wide: per stage its status this run, its time and one short line of counts.

    ``statuses``: what each stage did in this run (``done``, ``cached``, ``skipped``; from
    :class:`~cerbero_hf.cli._console.StageConsole`); a cached stage shows ``cached``, not the time of the run that
    made it. Output paths, full counts and configs are in ``manifest.json`` and in each output folder's card.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from cerbero_hf.cli._console import short_counts
    from cerbero_hf.recipe import STAGES

    recipe = manifest.data.get("recipe") or {}
    table = Table(title="cerbero-hf run", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, expand=True)
    table.add_column("stage", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=7)
    table.add_column("time", justify="right", no_wrap=True, min_width=7)
    table.add_column("counts", no_wrap=True, overflow="ellipsis", ratio=1)
    for stage in STAGES:
        entry = manifest.data["stages"].get(stage) or {}
        enabled = (recipe.get(stage) or {}).get("enabled", True)
        status = (statuses or {}).get(stage) or (entry.get("status") if entry and enabled else "skipped")
        if status == "skipped" or not entry:
            table.add_row(stage, "skipped" if status == "skipped" else status, "", "")
            continue
        seconds = f"{entry.get('seconds', 0):.1f} s" if status == "done" else ""
        table.add_row(stage, status, seconds, short_counts(entry.get("counts")))
    (console or Console()).print(table)


def register(app) -> None:
    @app.command()
    def run(
        recipe: Annotated[str, typer.Argument(help="Recipe YAML (see configs/cerbero-7b.yaml).")],
        only: Annotated[Optional[str], typer.Option(metavar="STAGE,...",
                                                    help="Stages to run (default: every enabled one).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option(
            "--set", metavar="KEY=VALUE", help="Override a recipe value: section.key=value (repeatable).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Re-run stages already done with the same config.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help=RUN_OVERWRITE_HELP)] = False,
        verbose: Annotated[bool, typer.Option("--verbose", help="Show the libraries' own progress bars, logs and "
                                                                "warnings (hidden by default).")] = False,
    ) -> None:
        """Run the recipe: seeds, generate, refine, score, filter, train, evaluate, publish (each skippable, resumable)."""
        from rich.console import Console

        from cerbero_hf import distributed
        from cerbero_hf.cli._console import StageConsole, calm_libraries
        from cerbero_hf.errors import InputError
        from cerbero_hf.recipe import STAGES, load_recipe, run_recipe

        stages = [s.strip() for s in only.split(",")] if only else None
        bad = [s for s in stages or [] if s not in STAGES]
        if bad:
            raise InputError(f"unknown stage {bad[0]!r} in --only; expected {', '.join(STAGES)}", column="--only")
        loaded = load_recipe(recipe, set_)
        if not distributed.is_main():  # under a launcher: this rank trains, the main process reports
            run_recipe(loaded, only=stages, force=force, overwrite=overwrite)
            return
        with calm_libraries(verbose), StageConsole(STAGES, Console(stderr=True)) as shown:
            manifest = run_recipe(loaded, only=stages, force=force, on_stage=shown.on_stage, overwrite=overwrite,
                                  on_event=shown.on_event)
        print_manifest(manifest, statuses=shown.statuses)
        Console(stderr=True).print(f"Manifest (outputs, full counts): {manifest.path}", soft_wrap=True, highlight=False)
        from cerbero_hf.cli.report import write_after_run  # the run's page, its path printed last

        command = ["cerbero-hf", "run", recipe, *(["--only", only] if only else []),
                   *[arg for value in set_ or [] for arg in ("--set", value)], *(["--force"] if force else []),
                   *(["--overwrite"] if overwrite else [])]
        write_after_run(manifest.path.parent, command)
