"""``cerbero-hf refine``: METHOD.md §4 (placeholder until the refine module lands)."""

from __future__ import annotations


def register(app) -> None:
    @app.command()
    def refine(input: str, output: str) -> None:
        """Refine a Fauno-style corpus (METHOD.md §4)."""
        from cerbero_hf.refine import run_refine_cli

        run_refine_cli(input, output)
