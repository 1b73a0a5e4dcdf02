"""``cerbero-hf seeds``: OASST message table -> seed conversations (paper §3.1, METHOD.md D10)."""

from __future__ import annotations

from typing import Annotated

import typer

ORDER = 10


def _card_body(counts: dict, language: str, source: str) -> str:
    lines = [
        "# Seed conversations", "",
        f"Every root-to-leaf path of the `{language}` trees of `{source}`, one conversation per row "
        "(cerbero-hf `seeds`, Cerbero-7B §3.1).", "",
        "Configs: `default` (the paths), `messages` (every kept message: the initial diversity store), "
        "`rejected` (dropped messages with `rule` and `reason`).", "",
        "| count | value |", "| --- | ---: |",
    ]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines) + "\n"


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
        from datasets import Dataset
        from rich.console import Console
        from rich.table import Table

        from cerbero_hf.io import load_table, save_hub_folder
        from cerbero_hf.languages import load_language
        from cerbero_hf.schema import features, rejected_features
        from cerbero_hf.seeds import build_seeds

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
        counts = result.counts()
        if not result.paths:
            from cerbero_hf.errors import InputError

            raise InputError(f"no {code!r} trees found ({len(result.rejected)} messages dropped)", file=input)
        configs = {
            "default": Dataset.from_list(result.paths, features=features()),
            "messages": Dataset.from_list(result.messages, features=features()),
            "rejected": Dataset.from_list(result.rejected, features=rejected_features()),
        }
        save_hub_folder(output, configs, card_data={"language": [code], "tags": ["cerbero-hf", "seeds", "conversational"]},
                        body=_card_body(counts, code, input), pretty_name=f"Seed conversations ({code})")
        summary = Table(title=f"seeds -> {output}")
        summary.add_column("count")
        summary.add_column("value", justify="right")
        for key, value in counts.items():
            summary.add_row(key, str(value))
        Console().print(summary)
