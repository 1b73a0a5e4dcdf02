"""``cerbero-hf seeds``: OASST message table -> seed conversations (paper §3.1, METHOD.md D10)."""

from __future__ import annotations

from typing import Annotated

import typer

ORDER = 10


def register(app) -> None:
    @app.command()
    def seeds(
        input: Annotated[str, typer.Argument(help="OASST message table: a file, a folder or a Hub dataset id.")],
        output: Annotated[str, typer.Argument(help="Output folder (Hub layout).")],
        language: Annotated[str, typer.Option(help="Language code (OASST `lang`) or a language-pack YAML.")] = "it",
        split: Annotated[str, typer.Option(help="Split of a Hub dataset, e.g. 'train+validation'.")] = "train",
    ) -> None:
        """Build seed conversations from the OASST trees of one language (every root-to-leaf path)."""
        import datasets
        from rich.console import Console
        from rich.table import Table

        from cerbero_hf.io import load_table
        from cerbero_hf.languages import load_language
        from cerbero_hf.seeds import build_seeds, write_seed_folder

        datasets.disable_progress_bars()  # our own status line instead
        code = load_language(language).code
        console = Console(stderr=True)
        with console.status(f"Reading {input} ..."):
            table = load_table(input, split=split)
        with console.status(f"Building {code} trees from {len(table)} messages ..."):
            try:
                result = build_seeds(table, code)
            except Exception as err:
                from cerbero_hf.errors import InputError

                if isinstance(err, InputError) and err.file is None:
                    raise InputError(err.message, file=input, row=err.row, column=err.column) from None
                raise
        counts = write_seed_folder(result, output, code, source=input)
        summary = Table(title=f"seeds -> {output}")
        summary.add_column("count")
        summary.add_column("value", justify="right")
        for key, value in counts.items():
            summary.add_row(key, str(value))
        Console().print(summary)
