"""The report's figures, drawn with matplotlib (the ``plot`` extra) as SVG text to inline, or PNG files for cards.

Every function takes numbers the collector read from the run (:mod:`cerbero_hf.report.collect`) and returns
the figure; :func:`svg` turns it into an ``<svg>`` element (text drawn as paths, no external reference, ids
salted per figure so several figures can share one page). Labels are never parsed as mathtext.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Sequence

COLORS = {"kept": "#4477aa", "rejected": "#cc3311", "line": "#222222", "band": "#ccddaa"}
SERIES = ("#4477aa", "#ee7733", "#228833", "#aa3377", "#66ccee", "#bbbbbb")


def available() -> bool:
    """True when matplotlib (the ``plot`` extra) is installed."""
    from cerbero_hf.errors import has_module

    return has_module("matplotlib")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float = 7.0, height: float = 3.2):
    return _plt().subplots(figsize=(width, height), dpi=100)


def _plain_text(draw):
    """Draw with mathtext off: a ``$`` in a corpus or rule name is shown as it is."""
    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        with _plt().rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)
    return wrapped


def svg(fig, name: str) -> str:
    """``fig`` as an inline ``<svg>`` element (no XML prolog, no DOCTYPE); the figure is closed."""
    plt = _plt()
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": f"cerbero-report-{name}", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def png(fig, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` (folders made); the figure is closed."""
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


@_plain_text
def funnel(rows: list[tuple[str, int, int]], title: str = "", *, xlabel: str = "kept / rejected", split: bool = True):
    """Horizontal stacked bars: ``(label, kept, rejected)`` per row, top to bottom in pipeline order (``split``
    false: one count per row, no legend)."""
    fig, ax = _figure(7.5, 0.45 * len(rows) + 1.2)
    labels = [r[0] for r in rows][::-1]
    kept = [r[1] for r in rows][::-1]
    rejected = [r[2] for r in rows][::-1]
    ax.barh(labels, kept, color=COLORS["kept"], label="kept")
    ax.barh(labels, rejected, left=kept, color=COLORS["rejected"], label="rejected")
    for y, (k, r) in enumerate(zip(kept, rejected)):
        ax.text(k + r, y, f"  {k:,} / {r:,}" if split else f"  {k:,}", va="center", fontsize=8)
    ax.set_xlim(0, max([k + r for k, r in zip(kept, rejected)] + [1]) * 1.25)
    ax.set_xlabel(xlabel)
    if split:
        ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@_plain_text
def distributions(series: dict[str, Sequence[float]], *, threshold: float | None, xlabel: str, threshold_label: str,
                  bins: int = 40, lo: float | None = None, hi: float | None = None):
    """Overlaid density histograms (one per named series of values) with a dashed threshold line."""
    import numpy as np

    fig, ax = _figure()
    arrays = {k: np.asarray(v, dtype=float) for k, v in series.items() if len(v)}
    every = np.concatenate(list(arrays.values())) if arrays else np.zeros(1)
    lo = float(min(every.min(), threshold if threshold is not None else every.min())) if lo is None else lo
    hi = float(max(every.max(), threshold if threshold is not None else every.max())) if hi is None else hi
    hi = hi if hi > lo else lo + 1.0
    for (name, values), color in zip(arrays.items(), SERIES * 4):
        ax.hist(np.clip(values, lo, hi), bins=bins, range=(lo, hi), density=True, histtype="step", linewidth=1.6,
                color=color, label=f"{name} ({len(values):,})")
    if threshold is not None:
        ax.axvline(threshold, color=COLORS["rejected"], linestyle="--", label=threshold_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@_plain_text
def lengths(counts: dict[int, int], target: tuple[int, int] | None, paper: tuple[int, int]):
    """Bars of conversations per length (messages), the configured target lengths and the paper's shaded."""
    fig, ax = _figure(7.0, 2.8)
    if paper:
        ax.axvspan(paper[0] - 0.5, paper[1] + 0.5, color=COLORS["band"], alpha=0.5,
                   label=f"paper's target {paper[0]}-{paper[1]}")
    if target:
        ax.axvspan(target[0] - 0.5, target[1] + 0.5, fill=False, hatch="//", edgecolor="#777777",
                   label=f"this run's target {target[0]}-{target[1]}")
    ax.bar(list(counts), list(counts.values()), color=COLORS["kept"], width=0.8, label="conversations")
    ax.set_xlabel("messages per conversation")
    ax.set_ylabel("conversations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@_plain_text
def loss_curve(train: list[tuple[int, float]], evals: list[tuple[int, float]]):
    """Training loss by step (and evaluation loss when there is one)."""
    fig, ax = _figure(7.0, 2.8)
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], marker="." if len(train) < 50 else None,
                color=SERIES[0], label="training loss")
    if evals:
        ax.plot([s for s, _ in evals], [v for _, v in evals], marker="o", color=SERIES[1], label="evaluation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
