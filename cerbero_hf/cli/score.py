"""``cerbero-hf score``: MLM pseudo-log-likelihood scoring and the NLL < 2 filter (paper §3.4, §4).

Two forms:

- ``cerbero-hf score INPUT OUTPUT [--model ID] [--max-nll 2.0] [--policy truncate]`` scores every message,
  filters, and writes a Hub-layout folder with the ``default`` (kept) and ``rejected`` configs and a card.
  Scored chunks are kept under ``OUTPUT/.score-partial/`` until the end, so an interrupted run resumes.
- ``cerbero-hf score --compare DIR... [--plot nll.png]`` prints the corpora's NLL summaries and draws their
  histograms on one figure, like the paper's Fig. 4.

Flags come from :class:`~cerbero_hf.stages.quality.stage.ScoreConfig` and
:class:`~cerbero_hf.stages.quality.stage.FilterConfig` (the recipe's ``score:`` and ``filter:`` keys);
``--compare``, ``--plot`` and ``--include-rejected`` are this command's own mode switches.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from cerbero_hf.cli._config import config_command
from cerbero_hf.engine import EngineConfig
from cerbero_hf.stages.quality.stage import FilterConfig, ScoreConfig

ORDER = 40


def summary_table(title: str, summaries: dict[str, dict]):
    """One rich table row per corpus: messages, mean, median, 5/95 % quantiles, share under the threshold."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("corpus", "messages", "mean", "median", "q05", "q95", "share < max"):
        table.add_column(col, justify="left" if col == "corpus" else "right")
    for name, s in summaries.items():
        if not s["count"]:
            table.add_row(name, "0", *["-"] * 5)
            continue
        q = s["quantiles"]
        table.add_row(name, str(s["count"]), f"{s['mean']:.3f}", f"{s['median']:.3f}", f"{q['0.05']:.3f}",
                      f"{q['0.95']:.3f}", f"{100 * s['share_under']:.1f} % (< {s['threshold']:g})")
    return table


BINS = 40


def histogram_range(value_lists, threshold: float | None = None) -> tuple[float, float]:
    """One histogram range for every corpus compared: from the lowest to the highest NLL of them all (the
    threshold included), widened to whole half-units; ``None`` and NaN are left out."""
    import math

    values = [float(v) for vs in value_lists for v in vs if v is not None and not math.isnan(v)]
    if threshold is not None:
        values.append(float(threshold))
    if not values:
        return (0.0, 5.0)
    lo, hi = math.floor(min(values) * 2) / 2, math.ceil(max(values) * 2) / 2
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def plot_histograms(summaries: dict[str, dict], path: Path, threshold: float) -> Path:
    """Density histograms of every corpus on one figure (Fig. 4 style), written with the Agg backend: each
    corpus as an outline over a light fill, so none hides another, and the threshold as a dashed line."""
    from cerbero_hf.errors import require

    matplotlib = require("matplotlib", "plot", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, s) in enumerate(summaries.items()):
        counts, edges = np.asarray(s["histogram"]["counts"], float), np.asarray(s["histogram"]["edges"])
        if counts.sum():
            density, color = counts / (counts.sum() * np.diff(edges)), colors[i % len(colors)]
            ax.stairs(density, edges, fill=True, alpha=0.12, color=color)
            ax.stairs(density, edges, linewidth=1.6, color=color, label=name)
            ax.set_xlim(edges[0], edges[-1])
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"NLL < {threshold:g}")
    ax.set_xlabel("MLM NLL (nats per token)")
    ax.set_ylabel("Density")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _compare(dirs: list[str], plot: Optional[Path], threshold: float, include_rejected: bool) -> dict:
    """Print the corpora's NLL summaries (and draw them into ``plot``); returns the summaries, whose histograms
    share one range fitted to the data (:func:`histogram_range`)."""
    from rich.console import Console

    from cerbero_hf.errors import InputError
    from cerbero_hf.io import load_config
    from cerbero_hf.stages.quality.summary import message_nlls, summarize

    if not dirs:
        raise InputError("--compare needs at least one scored folder")
    if plot is not None:
        from cerbero_hf.errors import require

        require("matplotlib", "plot", "--plot")  # before the scoring work, not after it
    collected = {}
    for d in dirs:
        kept = load_config(d)  # a config with no rows (nothing kept) reads as empty, not as an error
        values, rows = message_nlls(kept), len(kept)
        if include_rejected:
            try:
                rejected = load_config(d, "rejected")
                values, rows = values + message_nlls(rejected), rows + len(rejected)
            except InputError:
                pass  # a missing rejected config adds nothing
        if rows and not values:  # rows without scores; an empty folder is a row of zeros below
            raise InputError("no per-message NLL in meta: score it first with `cerbero-hf score`", file=d)
        name = Path(d).name or d
        while name in collected:
            name += "'"
        collected[name] = values
    shared = histogram_range(collected.values(), threshold)  # one range that fits every corpus's values
    summaries = {name: summarize(values, threshold=threshold, bins=BINS, range_=shared)
                 for name, values in collected.items()}
    Console().print(summary_table("MLM NLL by corpus", summaries))
    if plot is not None:
        plot_histograms(summaries, plot, threshold)
        Console().print(f"Wrote {plot}")
    return summaries


def _switch(name: str, annotation, default):
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


MODE_SWITCHES = [
    _switch("compare", Annotated[bool, typer.Option("--compare", help="Compare scored folders instead of scoring.")],
            False),
    _switch("plot", Annotated[Optional[Path], typer.Option(help="With --compare: write the histograms here (PNG).")],
            None),
    _switch("include_rejected", Annotated[bool, typer.Option(help="With --compare: also count the rejected config's "
                                                                  "messages (the distribution before the filter).")],
            False),
]


def register(app) -> None:
    @config_command(app, "score", ScoreConfig, FilterConfig, EngineConfig, arguments=[
        ("paths", "INPUT OUTPUT: a corpus in `messages` form and the output folder; with --compare, FOLDER...: "
                  "the scored folders to compare.", Optional[list[str]], None, "INPUT OUTPUT | FOLDER...")],
        extra=MODE_SWITCHES, writes_folder=True)
    def score(score_config: ScoreConfig, filter_config: FilterConfig, engine: EngineConfig,
              paths: Optional[list[str]] = None,
              compare: bool = False, plot: Optional[Path] = None, include_rejected: bool = False,
              overwrite: bool = False) -> None:
        """Score messages with a masked LM and keep those with NLL < 2 (paper §4), or compare corpora."""
        from cerbero_hf.errors import InputError

        paths = paths or []
        if compare:
            _compare(paths, plot, filter_config.max_nll, include_rejected)
            return
        if len(paths) != 2:
            raise InputError(f"expected INPUT OUTPUT (or --compare DIR...), got {len(paths)} path(s)")
        if plot is not None:
            raise InputError("--plot works with --compare")
        from cerbero_hf.outputs import prepare_output
        from cerbero_hf.stage_marker import settings_of

        with prepare_output(paths[1], [paths[0]], overwrite=overwrite, stage="score",  # before anything is read
                            settings=settings_of(score_config, filter_config)):
            _run(paths[0], paths[1], score_config, filter_config, engine)


def _run(input: str, output: str, score_config: ScoreConfig, filter_config: FilterConfig,
         engine: EngineConfig | None = None) -> None:
    """Score ``input`` with a progress bar, filter it and write ``output`` (kept + rejected + card)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cerbero_hf.io import load_table
    from cerbero_hf.schema import validate
    from cerbero_hf.stages.quality.filter import QualityFilter
    from cerbero_hf.stages.quality.folders import score_and_filter
    from cerbero_hf.stages.quality.stage import make_scorer

    console = Console(stderr=True)
    qf = QualityFilter(filter_config.max_nll, filter_config.policy)
    scorer = make_scorer(score_config)
    on_ray = engine is not None and engine.ray
    with console.status(f"Loading {input} ..."):
        ds = load_table(input)
        validate(ds, file=str(input))
        if not on_ray:  # on Ray the actors load the model (the driver checks it can be found)
            scorer._load()
    with Progress(TextColumn("scoring" + (" on Ray" if on_ray else "")), BarColumn(), MofNCompleteColumn(),
                  TextColumn("rows"), TimeRemainingColumn(), transient=True, console=console) as bar:
        task = bar.add_task("score", total=len(ds))
        result = score_and_filter(ds, output, scorer, qf, chunk_rows=score_config.chunk_rows,
                                  progress=lambda n: bar.update(task, advance=n), engine=engine, source=input)
    counts, summaries = result["counts"], result["summaries"]
    if result.get("ray") and engine is not None:  # Ray ran: the engine said so
        ray = result["ray"]
        again = f", pipeline restarted {ray['retries']} time(s) after losing actors" if ray["retries"] else ""
        Console().print(f"Ray: {ray['blocks']} blocks of up to {engine.batch_rows} rows: {ray['skipped']} skipped "
                        f"(scored by an earlier run), {ray['blocks'] - ray['skipped']} scored by {ray['workers']} "
                        f"actor(s) on {ray['nodes']} node(s){again}")
    Console().print(summary_table(f"cerbero-hf score: {counts['kept']} of {counts['rows']} conversations kept, "
                                  f"{counts['kept_messages']} of {counts['messages']} messages "
                                  f"({result['seconds']:.1f} s scoring)", summaries))
    from cerbero_hf.io import check_kept, wrote_line

    Console().print(wrote_line(output))  # the load_dataset calls that work (an empty config cannot load)
    check_kept(output)  # nothing kept: exit 2, one line (the folder stays written)
