"""The paper's NLL quality cut (§4): keep only messages whose MLM NLL is strictly below a threshold.

:class:`QualityFilter` splits a scored corpus (``meta["nll"]`` from
:class:`~cerbero_hf.stages.quality.pll.PLLScorer`) into kept rows and rejected parts, each with a reason.
"""

from __future__ import annotations

import math

from cerbero_hf.errors import InputError
from cerbero_hf.schema import dump_meta, get_meta

POLICIES = ("truncate", "drop_conversation", "drop_message")
RULE = "mlm_nll"


class QualityFilter:
    """The paper's quality cut: keep only messages with NLL strictly below ``max_nll`` (paper §4).

    Args:
        max_nll: the threshold; a message passes when ``nll < max_nll`` (2.0 fails).
        policy: ``"truncate"`` (default: cut the conversation before its first failing message, drop a
            trailing user turn, keep it if at least one user → assistant exchange remains),
            ``"drop_conversation"`` (reject the whole conversation), ``"drop_message"`` (remove failing
            messages only; alternation is not preserved).

    Input columns: ``id``, ``messages``, ``source``, ``meta`` with ``meta["nll"]`` from :class:`PLLScorer`.
    Output: :meth:`split` returns ``(kept, rejected)``; kept rows carry only their surviving messages and
    every per-message list in ``meta`` (a list as long as ``messages``) is sliced alongside; each removed
    part is one rejected row with the same ``id``, ``rule="mlm_nll"``, a ``reason`` naming the failing
    message and its NLL, and ``meta["removed_indices"]`` (positions in the original conversation).
    A message with no scorable token (``nll`` is ``None``) fails.

    Examples:
        >>> import json
        >>> from datasets import Dataset
        >>> from cerbero_hf import QualityFilter
        >>> chat = [{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Ciao!"},
        ...         {"role": "user", "content": "E poi?"}, {"role": "assistant", "content": "Poi... blah"}]
        >>> scored = Dataset.from_list([{"id": "c1", "messages": chat, "source": "demo",
        ...                              "meta": json.dumps({"nll": [1.1, 0.9, 1.4, 3.2]})}])
        >>> kept, rejected = QualityFilter(max_nll=2.0).split(scored)
        >>> len(kept[0]["messages"]), rejected[0]["reason"]
        (2, 'message 3 (assistant): NLL 3.200 is not < 2; conversation truncated at message 2')
    """

    def __init__(self, max_nll: float = 2.0, policy: str = "truncate"):
        if policy not in POLICIES:
            raise InputError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
        self.max_nll, self.policy = float(max_nll), policy

    def passes(self, nll) -> bool:
        return nll is not None and not math.isnan(nll) and nll < self.max_nll

    def apply(self, row: dict, index: int | None = None) -> tuple[dict | None, list[dict]]:
        """Return ``(kept_row or None, rejected_rows)`` for one scored row."""
        msgs, meta = list(row["messages"]), get_meta(row)
        nll = meta.get("nll")
        if not isinstance(nll, list) or len(nll) != len(msgs):
            raise InputError("no per-message NLL in meta (run PLLScorer first, e.g. `cerbero-hf score`)",
                             row=index, column="meta")
        failing = [i for i, v in enumerate(nll) if not self.passes(v)]
        if not failing:
            return row, []
        why = self._why(failing[0], msgs, nll)
        if self.policy == "drop_conversation":
            return None, [self._part(row, meta, range(len(msgs)), f"{why}; conversation dropped")]
        if self.policy == "drop_message":
            keep = [i for i in range(len(msgs)) if i not in set(failing)]
            reason = "; ".join(self._why(i, msgs, nll) for i in failing)
            if not keep:
                return None, [self._part(row, meta, range(len(msgs)), f"{reason}; no message left")]
            return self._part(row, meta, keep), [self._part(row, meta, failing, f"{reason}; message dropped")]
        cut = failing[0]
        while cut > 0 and msgs[cut - 1]["role"] == "user":
            cut -= 1
        keep = list(range(cut))
        exchange = any(msgs[i]["role"] == "user" and msgs[i + 1]["role"] == "assistant" for i in range(cut - 1))
        if not exchange:
            return None, [self._part(row, meta, range(len(msgs)), f"{why}; no user → assistant exchange before it")]
        return self._part(row, meta, keep), [self._part(row, meta, range(cut, len(msgs)),
                                                        f"{why}; conversation truncated at message {cut}")]

    def _why(self, i: int, msgs: list, nll: list) -> str:
        value = "no scorable token" if nll[i] is None else f"NLL {nll[i]:.3f} is not < {self.max_nll:g}"
        return f"message {i} ({msgs[i]['role']}): {value}"

    def _part(self, row: dict, meta: dict, indices, reason: str | None = None) -> dict:
        idx, n = list(indices), len(row["messages"])
        part_meta = {k: ([v[i] for i in idx] if isinstance(v, list) and len(v) == n else v) for k, v in meta.items()}
        if reason is not None:
            part_meta["removed_indices"] = idx
        else:
            tokens = part_meta.get("nll_tokens") or [1] * len(idx)
            ok = [(v, t) for v, t in zip(part_meta["nll"], tokens) if v is not None]
            total = sum(t for _, t in ok)
            part_meta["nll_mean"] = sum(v * t for v, t in ok) / total if total else None
        out = dict(row, messages=[row["messages"][i] for i in idx], meta=dump_meta(part_meta))
        if reason is not None:
            out.update(rule=RULE, reason=reason)
        return out

    def _batch(self, batch: dict, indices: list[int]) -> dict:
        cols = list(batch)
        out: dict[str, list] = {c: [] for c in cols + ["rule", "reason", "_kept"]}
        for k, idx in enumerate(indices):
            row = {c: batch[c][k] for c in cols}
            kept, rejected = self.apply(row, idx)
            for r, flag in ([(kept, True)] if kept is not None else []) + [(r, False) for r in rejected]:
                for c in cols:
                    out[c].append(r[c])
                out["rule"].append(r.get("rule", ""))
                out["reason"].append(r.get("reason", ""))
                out["_kept"].append(flag)
        return out

    def split(self, ds):
        """Filter a scored ``datasets.Dataset``: returns ``(kept, rejected)`` datasets."""
        both = ds.map(self._batch, batched=True, with_indices=True, remove_columns=ds.column_names,
                      desc="NLL filter")
        kept = both.filter(lambda k: k, input_columns="_kept").remove_columns(["rule", "reason", "_kept"])
        rejected = both.filter(lambda k: not k, input_columns="_kept").remove_columns("_kept")
        return kept, rejected
