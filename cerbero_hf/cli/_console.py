"""Console helpers shared by the commands (rich imported lazily by the callers' bodies)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a console starts
    from rich.progress import Progress, TaskID


def counts_table(title: str, counts: dict):
    """A two-column rich table of counts; nested mappings are shown as ``key value, ...``."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in counts.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(str(key), shown)
    return table


# -- a calm console for `run` and `demo` ----------------------------------------------------------------------

# Warnings the libraries we drive raise about their own internals (deprecations, advisory notes): hidden unless
# --verbose. Matched on the module that raises them.
QUIET_WARNINGS = r"(transformers|trl|peft|accelerate|datasets|huggingface_hub|torch|sentence_transformers)(\.|$)"


@contextmanager
def calm_libraries(verbose: bool = False):
    """Silence library progress bars (datasets' ``Creating parquet``, transformers' ``Loading weights``, Hub
    uploads), their info logs and known third-party warnings for the duration; ``verbose`` leaves them on.

    Libraries imported later inside the block are silenced too (their switches live in huggingface_hub and in
    ``TRANSFORMERS_VERBOSITY``); the previous state is restored on exit.
    """
    if verbose:
        yield
        return
    import os
    import sys
    import warnings

    import datasets
    import huggingface_hub.utils as hub_utils

    had_transformers = "transformers" in sys.modules
    before = {"datasets": datasets.is_progress_bar_enabled(), "hub": hub_utils.are_progress_bars_disabled(),
              "datasets_level": datasets.logging.get_verbosity(), "env": os.environ.get("TRANSFORMERS_VERBOSITY")}
    if had_transformers:
        from transformers.utils import logging as tf_logging

        before |= {"tf_bar": tf_logging.is_progress_bar_enabled(), "tf_level": tf_logging.get_verbosity()}
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hub_utils.disable_progress_bars()
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # read when transformers configures its loggers
    if had_transformers:
        tf_logging.disable_progress_bar()
        tf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category, module=QUIET_WARNINGS)
            yield
    finally:
        if before["datasets"]:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(before["datasets_level"])
        if not before["hub"]:
            hub_utils.enable_progress_bars()
        if before["env"] is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = before["env"]
        if "transformers" in sys.modules:
            from transformers.utils import logging as tf_logging

            (tf_logging.enable_progress_bar if before.get("tf_bar", True) else tf_logging.disable_progress_bar)()
            tf_logging.set_verbosity(before.get("tf_level", tf_logging.WARNING))


def _number(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def short_counts(counts: dict | None) -> str:
    """A stage's counts on one short line: numbers as they are, a mapping by its total, text left out
    (``input 400, kept 366, rejected 34, removed 34``). The full counts are in ``manifest.json``."""
    parts = []
    for key, value in (counts or {}).items():
        if isinstance(value, dict):
            numbers = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if numbers and all(isinstance(v, int) for v in numbers.values()):
                parts.append(f"{key} {_number(sum(numbers.values()))}")  # counts per rule: their total
            elif numbers:  # scores per task: each
                parts.append(f"{key} " + " ".join(f"{k}={_number(v)}" for k, v in numbers.items()))
        elif isinstance(value, (int, float)):
            parts.append(f"{key} {_number(value)}")
    return ", ".join(parts)


def train_row(stats: dict) -> str:
    """One trainer log as our row: ``step 10/60  loss 6.6330  lr 1.00e-03  812 tokens/s``."""
    step = f"step {stats.get('step', '?')}" + (f"/{stats['max_steps']}" if stats.get("max_steps") else "")
    cells = [step]
    if stats.get("loss") is not None:
        cells.append(f"loss {stats['loss']:.4f}")
    if stats.get("eval_loss") is not None:
        cells.append(f"eval loss {stats['eval_loss']:.4f}")
    if stats.get("learning_rate") is not None:
        cells.append(f"lr {stats['learning_rate']:.2e}")
    if stats.get("tokens_per_second"):
        cells.append(f"{stats['tokens_per_second']:,.0f} tokens/s")
    return "  ".join(cells)


# What an event of a stage means on its live line: (text, done, total); stats of the generate stage are
# cumulative counts, the others say what they are doing.
def describe_event(event: str, stats: dict) -> tuple[str, float | None, float | None]:
    stats = stats or {}
    if event == "planned":
        return "self-chat", 0, stats.get("conversations")
    if any(k in stats for k in ("requests_sent", "requests_replayed", "accepted")):  # generate: running counts
        return (f"self-chat: {stats.get('accepted', 0)} messages accepted, {stats.get('rejected', 0)} rejected",
                stats.get("conversations", 0), None)
    if event == "refining":
        return f"refining {stats.get('rows', 0):,} rows", None, None
    if event == "loading":
        return "loading the inputs", None, None
    if event == "writing":
        return f"writing {stats.get('kept', 0):,} kept, {stats.get('rejected', 0):,} rejected rows", None, None
    if event == "scoring":
        return f"scoring {stats.get('corpus', '')} rows", stats.get("done"), stats.get("total")
    if event in ("train_begin", "step"):
        return "training steps", stats.get("step", 0), stats.get("max_steps")
    text = event.replace("_", " ")
    return text, stats.get("done"), stats.get("total")


class StageConsole:
    """What ``run`` and ``demo`` print while a recipe runs: one line per stage (``[3/8] refine  done  3.2 s
    input 400, kept 366, ...``), a live line for the running stage (spinner, elapsed time, what it is doing
    and our own bar when it knows its total) and the trainer's logs as rows (step, loss, lr, tokens/s).

    Pass :meth:`on_stage` and :meth:`on_event` to :func:`cerbero_hf.recipe.run_recipe`; use it as a context
    manager. On a console that is not a terminal (a log file), the live line is replaced by a progress line
    at most every ``every`` seconds.
    """

    def __init__(self, stages, console=None, every: float = 10.0):
        from rich.console import Console

        self.stages = list(stages)
        self.console = console or Console(stderr=True)
        self.statuses: dict[str, str] = {}
        self.every = every
        self._progress: Progress | None = None
        self._task: TaskID | None = None  # the live line of a note or of the running stage
        self._current: str | None = None  # the running stage
        self._last_line = 0.0

    def __enter__(self):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

        if not self.console.is_terminal:  # a log file: no live line, progress lines (on_event) instead
            return self
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                                  TaskProgressColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                  console=self.console, transient=True, refresh_per_second=4)
        self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False

    def label(self, stage: str) -> str:
        i = self.stages.index(stage) + 1 if stage in self.stages else 0
        return f"[{i}/{len(self.stages)}] {stage:<8}"

    def _print(self, text: str, **kwargs) -> None:
        (self._progress.console if self._progress is not None else self.console).print(text, **kwargs)

    def note(self, message: str) -> None:
        """A step before the stages (``building generator ...``): a dim line, and the live line until the next."""
        self._print(f"[dim]{message}[/dim]", highlight=False)
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(message, total=None, info="")

    def on_stage(self, stage: str, status: str, result=None) -> None:
        import time

        if self._progress is not None and self._task is not None and self._current is None:
            self._progress.remove_task(self._task)  # a note's live line ends when the stages begin
            self._task = None
        if status == "running":
            self._current, self._started = stage, time.monotonic()
            self._last_line = time.monotonic()
            if self._progress is not None:
                self._task = self._progress.add_task(self.label(stage), total=None, info="starting")
            return
        self.statuses[stage] = status
        if self._progress is not None and self._task is not None and self._current == stage:
            self._progress.remove_task(self._task)
            self._task = None
        counts = short_counts(result.counts()) if result is not None and status in ("done", "cached") else ""
        if status == "done":
            seconds = time.monotonic() - self._started if self._current == stage else 0.0
            self._print(f"{self.label(stage)} [green]done[/green]   {seconds:6.1f} s  {counts}", overflow="ellipsis",
                        no_wrap=True, highlight=False)
        elif status == "cached":
            self._print(f"{self.label(stage)} [cyan]cached[/cyan]            {counts}", overflow="ellipsis",
                        no_wrap=True, highlight=False)
        else:
            self._print(f"[dim]{self.label(stage)} {status}[/dim]", highlight=False)

    def on_event(self, stage: str, event: str, stats: dict) -> None:
        import time

        if event == "log":  # the trainer's logs: our row, always printed
            self._print(f"           {train_row(stats)}", highlight=False)
            return
        if event == "note":  # a one-line remark of the stage (train: a global batch other than the paper's)
            self._print(f"           [yellow]note:[/yellow] {stats.get('message', '')}", highlight=False)
            return
        text, done, total = describe_event(event, stats)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, info=text, total=total, completed=done)  # None: left as it is
        if not self.console.is_terminal and time.monotonic() - self._last_line >= self.every:
            self._last_line = time.monotonic()
            where = f" {done:,.0f}/{total:,.0f}" if done is not None and total else ""
            self._print(f"[dim]{self.label(stage)} {text}{where}[/dim]", highlight=False)
