"""``cerbero-hf refine``: the Fauno refinement of METHOD.md §4 (tag repair, empty, turn order, duplicates,
system prompts, language check) from a file, folder or Hub id to a Hub-layout folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ORDER = 30


def report_table(report, title: str = "cerbero-hf refine"):
    """The refinement report as a rich table: rule, conversations removed, messages changed."""
    from rich.table import Table

    table = Table(title=f"{title}: {report.kept} of {report.input_rows} conversations kept "
                        f"({report.seconds:.1f} s, language check: {report.lang_action})")
    table.add_column("rule")
    table.add_column("conversations removed", justify="right")
    table.add_column("messages changed", justify="right")
    for rule, removed, changed in report.rows():
        table.add_row(rule, str(removed), str(changed))
    table.add_row("total", str(sum(report.removed.values())), str(sum(report.changed.values())), style="bold")
    return table


def register(app) -> None:
    @app.command()
    def refine(
        input: Annotated[str, typer.Argument(help="Corpus: parquet/jsonl/json/csv/arrow file, a folder "
                                                  "(Hub layout or save_to_disk), or a Hub dataset id. Rows in "
                                                  "`messages` form or one Fauno transcript column.")],
        output: Annotated[Path, typer.Argument(help="Output folder (Hub layout: configs default and rejected).")],
        language: Annotated[str, typer.Option(help="Language pack: built-in code or YAML file.")] = "it",
        lang_action: Annotated[str, typer.Option(help="What to do with messages detected as English: "
                                                      "flag, drop-message or drop-conversation (D19).")] = "flag",
        num_proc: Annotated[Optional[int], typer.Option(help="Worker processes for the parallel rules.")] = None,
        text_column: Annotated[Optional[str], typer.Option(help="Transcript column (default: `messages` rows, "
                                                               "else input/text/conversation/...).")] = None,
        license: Annotated[str, typer.Option(help="License field of the output dataset card.")] = "unknown",
    ) -> None:
        """Refine a Fauno-style corpus (METHOD.md §4): removed rows go to the `rejected` config with a reason."""
        from rich.console import Console

        from cerbero_hf.errors import InputError
        from cerbero_hf.refine import LANG_ACTIONS

        if lang_action not in LANG_ACTIONS:
            raise InputError(f"--lang-action must be one of {', '.join(LANG_ACTIONS)}, got {lang_action!r}")
        console = Console(stderr=True)
        with console.status(f"Loading {input} ..."):
            from datasets.utils.logging import disable_progress_bar, enable_progress_bar

            from cerbero_hf.io import load_table
            from cerbero_hf.refiner import Refiner

            disable_progress_bar()  # only the refinement's own bar: errors stay one line on stderr
            ds = load_table(input)
            refiner = Refiner(language, lang_action=lang_action, text_column=text_column, num_proc=num_proc,
                              source=Path(str(input)).stem)
            text_column = refiner.check_input(ds, file=str(input))
        enable_progress_bar()
        kept, rejected, report = refiner.run(ds, file=str(input))  # datasets shows the "Refining" bar
        disable_progress_bar()
        with console.status(f"Writing {output} ..."):
            refiner.write(output, kept, rejected, report, license=license)
        Console().print(report_table(report))
        Console().print(f"Wrote {output}: load_dataset('{output}') and load_dataset('{output}', 'rejected').")
