"""``cerbero-hf seeds INPUT OUTPUT``: OASST message table -> seed conversations (paper §3.1).

Flags come from :class:`cerbero_hf.stages.seeds.stage.SeedsConfig` (the recipe's ``seeds:`` keys).
"""

from __future__ import annotations

from cerbero_hf.cli._config import config_command
from cerbero_hf.stages.seeds.stage import SeedsConfig

ORDER = 10


def register(app) -> None:
    @config_command(app, "seeds", SeedsConfig, arguments=[
        ("input", "OASST message table: a file, a folder or a Hub dataset id."),
        ("output", "Output folder (Hub layout).")], writes_folder=True)
    def seeds(config: SeedsConfig, input: str, output: str, overwrite: bool = False) -> None:
        """Build seed conversations from the OASST trees of one language (every root-to-leaf path)."""
        import dataclasses
        from pathlib import Path

        from rich.console import Console

        from cerbero_hf.cli._console import counts_table
        from cerbero_hf.stages.base import Context
        from cerbero_hf.stages.seeds.stage import run_seeds

        config = dataclasses.replace(config, input=input)
        with Console(stderr=True).status(f"Building seeds from {input} ..."):
            result = run_seeds(config, Context(output=Path(output), overwrite=overwrite))
        Console().print(counts_table(f"seeds -> {output}", result.counts()))
