"""The images of a published dataset card: the NLL histogram and the corpus's funnel, as PNG files in its folder.

:func:`card_images` is what :func:`cerbero_hf.cards.dataset_card` calls (``cards`` re-exports
:data:`HISTOGRAM` and :func:`nll_histogram`, which lived there first); the files go up with the repo
(:data:`cerbero_hf.stages.publish.files.DATASET_FILES`) and the card links them by relative path. Without
matplotlib (the ``plot`` extra) no image is written and one note line goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

HISTOGRAM = "images/nll_histogram.png"
FUNNEL = "images/funnel.png"


def nll_histogram(values, path: Path, threshold: float | None = 2.0, bins: int = 40) -> Path:
    """Write a density histogram of per-message NLL (the paper's Fig. 4: x = NLL, 0–5) as a PNG (needs the
    ``plot`` extra: matplotlib)."""
    from cerbero_hf.errors import require

    matplotlib = require("matplotlib", "plot", "the NLL histogram")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist([float(v) for v in values], bins=bins, density=True, color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend()
    ax.set_xlabel("MLM NLL per token")
    ax.set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def funnel_png(stage_counts: dict, path: Path) -> Path:
    """The corpus's stage counts (the card's "Stage counts" table) as a horizontal bar chart."""
    from cerbero_hf.report.figures import funnel, png

    fig = funnel([(str(stage), int(n), 0) for stage, n in stage_counts.items()], xlabel="rows", split=False)
    return png(fig, path)


def card_images(folder: Path, *, nll=None, nll_threshold: float | None = 2.0,
                stage_counts: dict | None = None) -> dict[str, str]:
    """Write ``images/nll_histogram.png`` (when ``nll`` has values) and ``images/funnel.png`` (when
    ``stage_counts`` holds numbers) into ``folder``; returns ``{"histogram": ..., "funnel": ...}`` for the ones
    written (paths relative to ``folder``)."""
    from cerbero_hf.errors import has_module, missing_extra

    counts = {k: v for k, v in (stage_counts or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    wanted = bool(nll is not None and len(nll)), bool(counts)
    for name in (HISTOGRAM, FUNNEL):  # an image of an earlier write would be published with the folder
        (Path(folder) / name).unlink(missing_ok=True)
    if not any(wanted):
        return {}
    if not has_module("matplotlib"):
        print(f"note: the card of {Path(folder).name} has no NLL histogram and no funnel figure "
              f"({missing_extra('matplotlib', 'plot')})", file=sys.stderr)
        return {}
    written = {}
    if wanted[0]:
        nll_histogram(nll, Path(folder) / HISTOGRAM, nll_threshold)
        written["histogram"] = HISTOGRAM
    if wanted[1]:
        funnel_png(counts, Path(folder) / FUNNEL)
        written["funnel"] = FUNNEL
    return written
