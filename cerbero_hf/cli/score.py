"""``cerbero-hf score``: MLM pseudo-log-likelihood scoring and the NLL < 2 filter (METHOD.md §5, D21–D24).

Two forms:

- ``cerbero-hf score INPUT OUTPUT [--model ID] [--max-nll 2.0] [--policy truncate]`` scores every message,
  filters, and writes a Hub-layout folder with the ``default`` (kept) and ``rejected`` configs and a card.
  Scored chunks are kept under ``OUTPUT/.score-partial/`` until the end, so an interrupted run resumes.
- ``cerbero-hf score --compare DIR... [--plot nll.png]`` prints the corpora's NLL summaries and draws their
  histograms on one figure, like the paper's Fig. 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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


def plot_histograms(summaries: dict[str, dict], path: Path, threshold: float) -> Path:
    """Density histograms of every corpus on one figure (Fig. 4 style), written with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, s in summaries.items():
        counts, edges = np.asarray(s["histogram"]["counts"], float), np.asarray(s["histogram"]["edges"])
        if counts.sum():
            ax.stairs(counts / (counts.sum() * np.diff(edges)), edges, fill=True, alpha=0.35, label=name)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"NLL < {threshold:g}")
    ax.set_xlabel("MLM NLL (nats per token)")
    ax.set_ylabel("Density")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _compare(dirs: list[str], plot: Optional[Path], threshold: float, include_rejected: bool) -> None:
    from rich.console import Console

    from cerbero_hf.errors import InputError
    from cerbero_hf.io import load_table
    from cerbero_hf.quality import message_nlls, summarize

    if not dirs:
        raise InputError("--compare needs at least one scored folder")
    summaries = {}
    for d in dirs:
        values = message_nlls(load_table(d))
        if include_rejected:
            try:
                values += message_nlls(load_table(d, config="rejected"))
            except InputError:
                pass  # an empty or missing rejected config adds nothing
        if not values:
            raise InputError("no per-message NLL in meta: score it first with `cerbero-hf score`", file=d)
        name = Path(d).name or d
        while name in summaries:
            name += "'"
        summaries[name] = summarize(values, threshold=threshold)
    Console().print(summary_table("MLM NLL by corpus", summaries))
    if plot is not None:
        plot_histograms(summaries, plot, threshold)
        Console().print(f"Wrote {plot}")


def register(app) -> None:
    @app.command()
    def score(
        paths: Annotated[Optional[list[str]], typer.Argument(
            help="INPUT OUTPUT (a corpus in `messages` form and the output folder), or with --compare: the "
                 "scored folders to compare.", show_default=False)] = None,
        model: Annotated[Optional[str], typer.Option(help="Masked LM (Hub id or folder); default: the language "
                                                          "pack's (D21).")] = None,
        language: Annotated[str, typer.Option(help="Language pack: built-in code or YAML file.")] = "it",
        max_nll: Annotated[float, typer.Option(help="Keep messages with NLL strictly below this (D24).")] = 2.0,
        policy: Annotated[str, typer.Option(help="truncate, drop_conversation or drop_message (D24).")] = "truncate",
        variant: Annotated[str, typer.Option(help="pll (the paper's) or word_l2r (Kauf & Ivanova 2023).")] = "pll",
        batch_tokens: Annotated[Optional[int], typer.Option(help="Tokens per forward pass (rows × length); default: sized to the model and device.")] = None,
        device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... (default: CUDA when available).")] = None,
        dtype: Annotated[Optional[str], typer.Option(help="Model dtype, e.g. float32 or bfloat16.")] = None,
        chunk_rows: Annotated[int, typer.Option(help="Rows scored (and saved for resuming) per chunk.")] = 256,
        compare: Annotated[bool, typer.Option("--compare", help="Compare scored folders instead of scoring.")] = False,
        plot: Annotated[Optional[Path], typer.Option(help="With --compare: write the histograms here (PNG).")] = None,
        include_rejected: Annotated[bool, typer.Option(help="With --compare: also count the rejected config's "
                                                            "messages (the distribution before the filter).")] = False,
    ) -> None:
        """Score messages with a masked LM and keep those with NLL < 2 (METHOD.md §5), or compare corpora."""
        from cerbero_hf.errors import InputError

        paths = paths or []
        if compare:
            return _compare(paths, plot, max_nll, include_rejected)
        if len(paths) != 2:
            raise InputError(f"expected INPUT OUTPUT (or --compare DIR...), got {len(paths)} path(s)")
        if plot is not None:
            raise InputError("--plot works with --compare")
        _run(*paths, model=model, language=language, max_nll=max_nll, policy=policy, variant=variant,
             batch_tokens=batch_tokens, device=device, dtype=dtype, chunk_rows=chunk_rows)


def _run(input: str, output: str, *, model, language, max_nll, policy, variant, batch_tokens, device, dtype,
         chunk_rows) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cerbero_hf.io import load_table
    from cerbero_hf.quality import PLLScorer, QualityFilter
    from cerbero_hf.schema import validate
    from cerbero_hf.scoring import score_and_filter

    console = Console(stderr=True)
    qf = QualityFilter(max_nll, policy)
    if model is None:
        from cerbero_hf.languages import load_language

        model = load_language(language).mlm
    scorer = PLLScorer(model, device=device, dtype=dtype, batch_tokens=batch_tokens, variant=variant)
    with console.status(f"Loading {input} ..."):
        ds = load_table(input)
        validate(ds, file=str(input))
        scorer._load()
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                  TimeRemainingColumn(), transient=True, console=console) as bar:
        task = bar.add_task("score", total=len(ds))
        result = score_and_filter(ds, output, scorer, qf, chunk_rows=chunk_rows,
                                  progress=lambda n: bar.update(task, advance=n))
    counts, summaries = result["counts"], result["summaries"]
    Console().print(summary_table(f"cerbero-hf score: {counts['kept']} of {counts['rows']} conversations kept, "
                                  f"{counts['kept_messages']} of {counts['messages']} messages "
                                  f"({result['seconds']:.1f} s scoring)", summaries))
    Console().print(f"Wrote {output}: load_dataset('{output}') and load_dataset('{output}', 'rejected').")
