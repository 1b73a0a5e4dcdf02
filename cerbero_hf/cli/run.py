"""``cerbero-hf run RECIPE.yaml``: the whole method, one typed YAML section per stage (recipe.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ORDER = 80


def print_manifest(manifest, console=None) -> None:
    """The closing table: every stage with its status, seconds, counts and output paths."""
    from rich.console import Console
    from rich.table import Table

    from cerbero_hf.recipe import STAGES

    table = Table(title=f"cerbero-hf run -> {manifest.path.parent}")
    for col in ("stage", "status", "seconds", "counts", "outputs"):
        table.add_column(col, overflow="fold")
    for stage in STAGES:
        entry = manifest.data["stages"].get(stage)
        if not entry:
            table.add_row(stage, "skipped", "", "", "")
            continue
        counts = ", ".join(f"{k}={v}" for k, v in (entry.get("counts") or {}).items())
        outputs = "\n".join(str(v) for v in (entry.get("outputs") or {}).values())
        table.add_row(stage, entry.get("status", ""), f"{entry.get('seconds', 0):.1f}", counts, outputs)
    (console or Console()).print(table)


def register(app) -> None:
    @app.command()
    def run(
        recipe: Annotated[str, typer.Argument(help="Recipe YAML (see configs/cerbero-7b.yaml).")],
        only: Annotated[Optional[str], typer.Option(help="Comma-separated stages to run (default: every enabled one).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option(
            "--set", help="Override a value: section.key=value (repeatable).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Re-run stages already done with the same config.")] = False,
    ) -> None:
        """Run the recipe: seeds, generate, refine, score, filter, train, evaluate, publish (each skippable, resumable)."""
        from rich.console import Console

        from cerbero_hf.errors import InputError
        from cerbero_hf.recipe import STAGES, load_recipe, run_recipe

        stages = [s.strip() for s in only.split(",")] if only else None
        bad = [s for s in stages or [] if s not in STAGES]
        if bad:
            raise InputError(f"unknown stage {bad[0]!r} in --only; expected {', '.join(STAGES)}", column="--only")
        console = Console(stderr=True)
        loaded = load_recipe(recipe, set_)

        def on_stage(stage, status, result):
            if status == "running":
                return
            console.print(f"[bold]{stage}[/bold]: {status}" + (f" {result.counts}" if result and result.counts else ""))

        with console.status("Running recipe ..."):
            manifest = run_recipe(loaded, only=stages, force=force, on_stage=on_stage)
        print_manifest(manifest)
        console.print(f"Manifest: {manifest.path}")
