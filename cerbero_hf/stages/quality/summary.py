"""Corpus NLL summaries: the distribution of per-message NLLs (paper Fig. 4) and reading them from rows.

- :func:`summarize`: count, mean, median, quantiles, share under a threshold and a histogram.
- :func:`message_nlls`: every per-message NLL stored in rows' ``meta["nll"]`` (:class:`PLLScorer` output).
"""

from __future__ import annotations

import math

from cerbero_hf.schema import get_meta

QUANTILES = (0.05, 0.25, 0.75, 0.95)


def summarize(nlls, *, threshold: float = 2.0, bins: int = 50, range_: tuple[float, float] = (0.0, 5.0)) -> dict:
    """Distribution of per-message NLLs (Fig. 4): count, mean, median, quantiles, share under ``threshold``
    (strict: ``threshold`` itself fails) and a histogram over ``range_`` (values outside are clipped into the end
    bins)."""
    import numpy as np

    x = np.asarray([v for v in nlls if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return {"count": 0, "mean": None, "median": None, "quantiles": {}, "share_under": None,
                "threshold": threshold, "histogram": {"counts": [0] * bins,
                                                      "edges": np.linspace(*range_, bins + 1).tolist()}}
    counts, edges = np.histogram(np.clip(x, *range_), bins=bins, range=range_)
    return {"count": int(len(x)), "mean": float(x.mean()), "median": float(np.median(x)),
            "quantiles": {str(q): float(np.quantile(x, q)) for q in QUANTILES},
            "share_under": float((x < threshold).mean()), "threshold": threshold,
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}}


def message_nlls(ds_or_rows) -> list:
    """Every per-message NLL stored in the rows' ``meta["nll"]`` (``None`` for unscorable messages)."""
    out = []
    for row in ds_or_rows:
        out.extend(get_meta(row).get("nll") or [])
    return out
