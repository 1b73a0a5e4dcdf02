"""``cerbero-hf report RUN_DIR``: one self-contained HTML page of a run (cerbero_hf/report/).

``run`` and ``demo`` write the same page at their end (:func:`write_after_run`) and print its path last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ORDER = 85


def write_after_run(run_dir, argv: list[str] | None = None, console=None) -> Path | None:
    """Record the command in the manifest, write ``<run_dir>/report.html`` and print ``Report: PATH``.

    A report that cannot be written (a bug, a full disk) does not fail the run that finished: one note line
    says why, and ``cerbero-hf report RUN_DIR`` can be run again later.
    """
    import sys

    from rich.console import Console

    from cerbero_hf.report.build import record_command, write_report

    console = console or Console(stderr=True)
    try:
        if argv is not None:
            record_command(run_dir, argv)
        path = write_report(run_dir)
    except Exception as err:  # noqa: BLE001 - the run is done: its report is an extra
        first = (str(err).strip().splitlines() or [""])[0]
        console.print(f"note: the report was not written ({type(err).__name__}: {first}); "
                      f"try cerbero-hf report {run_dir}", soft_wrap=True, highlight=False, markup=False)
        return None
    console.print(f"Report: {path}", soft_wrap=True, highlight=False, markup=False)
    sys.stdout.flush()
    return path


def register(app) -> None:
    @app.command()
    def report(
        run_dir: Annotated[Path, typer.Argument(help="The run's output_dir (holding manifest.json), or a demo "
                                                     "output folder.")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE",
                                                       help="HTML file to write (default: RUN_DIR/report.html).")
                          ] = None,
        examples: Annotated[int, typer.Option(help="Rows shown per rule and per kept corpus.", min=0)] = 3,
        seed: Annotated[int, typer.Option(help="Seed of the sampled rows (the same seed shows the same rows).")] = 0,
        embedder: Annotated[Optional[str], typer.Option(
            metavar="MODEL", help="Embedding model of Fig. 1: a folder or a cached Hub id; none: no Fig. 1 "
                                  "(default: the run's, when on this machine).")] = None,
    ) -> None:
        """Write one HTML page of a run: funnel, examples, NLL and similarity figures, training, scores.

        Fig. 1 (nearest-neighbour distances before and after refining) embeds 250 sampled messages per side with the
        run's embedder, when it is on this machine; nothing is downloaded.

        The page is self-contained (inline styles and SVG figures, no script, nothing fetched) and works for
        partial runs: it shows the stages that ran. Figures need the plot extra (matplotlib).
        """
        from cerbero_hf.report.build import write_report

        path = write_report(run_dir, output, examples=examples, seed=seed, embedder=embedder)
        typer.echo(str(path))
