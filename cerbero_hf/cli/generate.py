"""``cerbero-hf generate SEEDS OUTPUT``: self-chat generation with the embedding diversity filter (paper §3.3).

Flags come from :class:`cerbero_hf.stages.generate.stage.GenerateConfig` (the recipe's ``generate:`` keys);
the command runs the same ``run_generate`` as the recipe, with a progress bar and a summary table.
"""

from __future__ import annotations

from cerbero_hf.cli._config import config_command, flag_name
from cerbero_hf.engine import EngineConfig
from cerbero_hf.stages.generate.stage import GenerateConfig

ORDER = 20


def _with_flags(err):
    """``err`` with ``generate.<setting>`` written as its ``--flag`` (errors raised after the config was built)."""
    from cerbero_hf.config import field_specs
    from cerbero_hf.errors import InputError

    message = err.message
    for spec in sorted(field_specs(GenerateConfig), key=lambda s: -len(s["name"])):
        message = message.replace(f"{GenerateConfig.SECTION}.{spec['name']}", flag_name(spec))
    column = None if (err.column or "").startswith(GenerateConfig.SECTION + ".") else err.column
    return InputError(message, file=err.file, row=err.row, column=column)


def _resume_hint(config: GenerateConfig, output: str) -> str:
    """The end of the one line printed when a signal stops ``generate``: what the replay cache kept."""
    from pathlib import Path

    from cerbero_hf.stages.generate.cache import count_entries
    from cerbero_hf.stages.generate.corpus import default_cache_path

    if not config.resume:
        return "--no-resume was given, so no request was kept: a re-run starts over."
    cache = Path(config.cache) if config.cache else default_cache_path(output)
    return f"{count_entries(cache)} finished requests are kept in {cache}; re-run the same command to resume."


def register(app) -> None:
    @config_command(app, "generate", GenerateConfig, EngineConfig, arguments=[
        ("seeds", "Seed conversations: a folder/file/Hub id (output of `seeds`)."),
        ("output", "Output folder (Hub layout: data/, rejected/, README.md).")], writes_folder=True)
    def generate(config: GenerateConfig, engine: EngineConfig, seeds: str, output: str, overwrite: bool = False) -> None:
        """Extend seed conversations with a generator playing both roles; reject near-duplicates (paper §3.3)."""
        import shlex
        import sys
        from pathlib import Path

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from cerbero_hf.cli._console import counts_table
        from cerbero_hf.errors import InputError
        from cerbero_hf.stages.base import Context
        from cerbero_hf.stages.generate.stage import run_generate
        from cerbero_hf.stages.seeds.stage import SeedsResult

        try:
            config.generator()
        except InputError:
            raise InputError("give --endpoint URL (a server) or --model PATH_OR_ID (a local generator)") from None
        progress = Progress(TextColumn("[bold]self-chat"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                            console=Console(stderr=True), transient=False)
        task = []

        def on_event(event: str, stats: dict) -> None:
            if event == "planned":  # the bar starts once the seeds are loaded and the plan is drawn
                task.append(progress.add_task("generate", total=stats["conversations"], counts=""))
                progress.start()
                return
            counts = (f"msgs +{stats.get('accepted', 0)}/-{stats.get('rejected', 0)}  "
                      f"req {stats.get('requests_sent', 0)} (replayed {stats.get('requests_replayed', 0)}, "
                      f"failed {stats.get('request_failures', 0)}, retries {stats.get('request_retries', 0)})  "
                      f"tok {stats.get('tokens_in', 0)}/{stats.get('tokens_out', 0)}")
            progress.update(task[0], advance=1 if event == "conversations" else 0, counts=counts)

        command = "cerbero-hf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
        ctx = Context(output=Path(output), inputs={"seeds": SeedsResult(seeds=seeds)}, language=config.language,
                      seed=config.seed, on_event=on_event, command=command, overwrite=overwrite, engine=engine)
        result = None
        try:
            result = run_generate(config, ctx)
        except InputError as err:
            raise _with_flags(err) from None
        except KeyboardInterrupt:  # SIGINT / SIGTERM (cerbero_hf.cli.main): say what a re-run will resume
            from cerbero_hf.cli import Interrupted

            raise Interrupted(_resume_hint(config, output)) from None
        finally:
            if task:  # stopping a bar that never started would print a stray newline
                progress.live.transient = result is None  # a failed or stopped run: only its one line stays
                progress.stop()
        Console().print(counts_table(f"generate → {output}", result.counts()))
