"""``cerbero-hf demo``: the offline demo. For now it refines the bundled Fauno-shaped sample (METHOD.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ORDER = 90


def sample_path() -> Path:
    """The bundled Fauno-shaped sample (built by dataset_scripts/fauno_sample/build.py)."""
    return Path(__file__).resolve().parent.parent / "data" / "fauno_sample.jsonl"


def demo_refine(out_dir: str | Path):
    """Refine the bundled sample into ``out_dir/refined``; returns the :class:`~cerbero_hf.refiner.Report`."""
    from cerbero_hf.refiner import Refiner
    from cerbero_hf.io import load_table

    refiner = Refiner("it", source="fauno_sample")
    kept, rejected, report = refiner.run(load_table(sample_path()), file=str(sample_path()))
    refiner.write(Path(out_dir) / "refined", kept, rejected, report, license="apache-2.0",
                  title="Refined Fauno-shaped sample (cerbero-hf demo)")
    return report


def register(app) -> None:
    @app.command()
    def demo(
        output: Annotated[Path, typer.Option(help="Folder for the demo outputs.")] = Path("demo-output"),
    ) -> None:
        """Run the offline demo: refine the bundled Fauno-shaped sample and print its report."""
        from rich.console import Console

        from cerbero_hf.cli.refine import report_table

        report = demo_refine(output)
        Console().print(report_table(report, title="cerbero-hf demo: refine"))
        Console().print(f"Refined corpus: {output / 'refined'}")
