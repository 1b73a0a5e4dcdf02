"""Corpus NLL summaries: the distribution of per-message NLLs (paper Fig. 4) and reading them from rows.

- :func:`summarize`: count, mean, median, quantiles, share under a threshold and a histogram (defined in the
  ``mlm_nll`` module's ``pll_core.py``, so the published metric summarises with the same code).
- :func:`message_nlls`: every per-message NLL stored in rows' ``meta["nll"]`` (:class:`PLLScorer` output).
"""

from __future__ import annotations

from cerbero_hf.resources.mlm_nll.pll_core import QUANTILES, summarize
from cerbero_hf.schema import get_meta

__all__ = ["QUANTILES", "message_nlls", "summarize"]


def message_nlls(ds_or_rows) -> list:
    """Every per-message NLL stored in the rows' ``meta["nll"]`` (``None`` for unscorable messages)."""
    out: list[float | None] = []
    for row in ds_or_rows:
        out.extend(get_meta(row).get("nll") or [])
    return out
