"""The MLM quality metric: pseudo-log-likelihood scoring of texts and of corpus messages (paper §3.4).

:class:`PLLScorer` gives each text the mean negative log-probability (natural log) of its tokens, each
token masked in turn and predicted by a masked LM (Salazar et al. 2020; the paper's "NLL", Fig. 3).

The scoring itself (tokenisation, masking, length-sorted packing into batches, sliding windows, the ``pll`` and
``word_l2r`` variants) is :class:`~cerbero_hf.resources.mlm_nll.pll_core.PLLCore`, in the folder of the
``mlm_nll`` evaluate module: the published metric runs that same file without cerbero-hf. This module adds the
library's error type (:class:`~cerbero_hf.errors.InputError`) and the ``datasets`` transform over ``messages``.

The filter on these scores is :class:`cerbero_hf.stages.quality.filter.QualityFilter`; corpus summaries
(Fig. 4) are in :mod:`cerbero_hf.stages.quality.summary`.
"""

from __future__ import annotations

from cerbero_hf.errors import InputError
from cerbero_hf.resources.mlm_nll.pll_core import VARIANTS, PLLCore, TextScore, window_plan
from cerbero_hf.schema import dump_meta, get_meta

__all__ = ["VARIANTS", "PLLScorer", "TextScore", "window_plan"]


class PLLScorer(PLLCore):
    """Pseudo-log-likelihood scorer over a masked LM (:class:`PLLCore`); also a ``datasets`` transform.

    Args: those of :class:`PLLCore` (``model_id_or_path``, e.g. the language pack's ``mlm``; ``device``,
    ``dtype``, ``batch_tokens``, ``variant``, ``max_length``). Bad input raises :class:`InputError`.

    As a transform (``ds.map(PLLScorer(...), batched=True)``, paper §3.4): reads ``messages``; writes
    ``meta`` with ``nll`` (one per message, ``None`` for a message with no scorable token), ``nll_tokens``,
    ``nll_mean`` (mean over all scored tokens of the conversation), ``nll_model`` and ``nll_variant``. The model
    loads on first use, so the scorer pickles cheaply (``num_proc`` and fingerprinting work).

    Examples:
        >>> from cerbero_hf import PLLScorer
        >>> scorer = PLLScorer("dbmdz/bert-base-italian-xxl-cased", batch_tokens=8192)  # nothing loaded yet
        >>> scored = corpus.map(scorer, batched=True)  # corpus: a Dataset of conversations  # doctest: +SKIP
        >>> scored[0]["meta"]  # doctest: +SKIP
        '{"nll": [1.12, 0.87], "nll_tokens": [9, 14], "nll_mean": 0.97, ...}'
    """

    def _error(self, message: str, *, file: str | None = None) -> Exception:
        return InputError(message, file=file)

    # -- datasets transform --------------------------------------------------------------------------

    def __call__(self, batch: dict, progress=None) -> dict:
        """Score every message of a batch (or of one row) and write the NLLs into ``meta``.

        ``progress(done, total)``: called after every forward pass (masked copies scored so far, and in all).
        """
        single = bool(batch.get("messages")) and isinstance(batch["messages"][0], dict)
        convs = [batch["messages"]] if single else batch["messages"]
        metas = [batch.get("meta")] if single else batch.get("meta") or [None] * len(convs)
        texts, where = [], []
        for r, msgs in enumerate(convs):
            for m, msg in enumerate(msgs or []):
                if not isinstance(msg.get("content"), str):
                    raise InputError(f"message {m} content is {type(msg.get('content')).__name__}, expected a string",
                                     row=r, column="messages")
                texts.append(msg["content"])
                where.append((r, m))
        scores = self._score(texts, progress)
        per: list[list[TextScore | None]] = [[None] * len(msgs or []) for msgs in convs]
        for (r, m), s in zip(where, scores):
            per[r][m] = s
        out = []
        for r, raw in enumerate(metas):
            meta = get_meta({"meta": raw})
            ok = [s for s in per[r] if s is not None and s.n_tokens]
            n = sum(s.n_tokens for s in ok)
            meta.update(nll=[s.nll if s is not None and s.n_tokens else None for s in per[r]],
                        nll_tokens=[s.n_tokens if s is not None else 0 for s in per[r]],
                        nll_mean=sum(s.nll * s.n_tokens for s in ok) / n if n else None, nll_model=self.model_id,
                        nll_variant=self.variant)
            out.append(dump_meta(meta))
        return {"meta": out[0] if single else out}

