"""The MLM NLL scoring core: masked-LM pseudo-log-likelihood per text, and the summary of a set of scores.

This one file is both the scorer of the ``mlm_nll`` evaluate module (it sits next to ``mlm_nll.py``, which
imports it with ``from .pll_core import ...``, so ``evaluate.load`` copies it) and the core of the cerbero-hf
library's ``PLLScorer`` (which subclasses :class:`PLLCore`). It imports only the standard library at import
time; torch, transformers and numpy load when first used.

:class:`PLLCore` gives each text the mean negative log-probability (natural log) of its tokens, each token
masked in turn and predicted by a masked LM (Salazar et al. 2020; Cerbero-7B's "NLL"). Every token of the text
is scored, ``[UNK]`` included (as in the reference implementations, mlm-scoring and minicons); only the framing
tokens the tokenizer adds around it, and special tokens typed in the text (a literal ``[MASK]``), are not. It is
fast by construction:

- the masked copies of all texts in a call are flattened, sorted by length and cut into batches of at most
  ``batch_tokens`` tokens. A BERT-shaped encoder (BERT, RoBERTa, XLM-R, CamemBERT) runs packed: its matrix
  products see the batch's tokens end to end (no padding), attention runs once per run of equal lengths, and
  the last layer only at each copy's masked position (keys and values at all); any other model runs whole on
  padded batches;
- the encoder runs under ``torch.inference_mode`` and the LM head runs only at the masked position of
  each copy (the full-vocabulary projection at every position is most of the naive cost);
- texts longer than the model window are scored with windows of stride half a window; every token is
  scored exactly once, in the window where its smaller side of context is largest.

Every copy is an independent sequence, so scores do not depend on the batch size (beyond float rounding, ~1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby
from typing import Any

VARIANTS = ("pll", "word_l2r")
QUANTILES = (0.05, 0.25, 0.75, 0.95)


@dataclass(frozen=True)
class TextScore:
    """One text's score: ``nll`` is the mean over its ``n_tokens`` scored tokens (nats/token)."""

    nll: float
    n_tokens: int


def window_plan(n: int, window: int) -> list[tuple[int, int, int]]:
    """Split ``n`` content tokens into ``(start, first, last)`` triples.

    Windows of ``window`` tokens start every ``window // 2`` tokens (the last one ends at ``n``); each
    token ``i`` is scored in the window maximising ``min(i - start, start + window - 1 - i)``, the
    earlier one on ties. ``first..last`` (exclusive) are the tokens scored in the window at ``start``.
    """
    if n <= window:
        return [(0, 0, n)]
    stride = max(1, window // 2)
    starts = list(range(0, n - window, stride)) + [n - window]
    plan, i = [], 0
    for k, s in enumerate(starts):
        first = i
        while i < n and (k == len(starts) - 1 or _ctx(i, s, window) >= _ctx(i, starts[k + 1], window)):
            i += 1
        if i > first:
            plan.append((s, first, i))
    return plan


def _ctx(i: int, start: int, window: int) -> int:
    return min(i - start, start + window - 1 - i) if start <= i < start + window else -1


class PLLCore:
    """Pseudo-log-likelihood scorer over a masked LM.

    Args:
        model_id_or_path: a masked LM (Hub id or local folder).
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
        dtype: torch dtype or its name (``"float32"``, ``"bfloat16"``); log-softmax always runs in float32.
        batch_tokens: at most this many tokens per forward pass (the copies' tokens; rows × longest for a model
            run padded). Default (None): on a GPU 16384; on a CPU about 1.5M activations (``1572864 //
            hidden_size``: 2048 for BERT-base, 24576 for a tiny test BERT), so a batch's hidden states stay in
            cache (BERT-base, 2-core CPU, padded: 25 tokens/s at 2048, 20 at 8192; packed, 1 thread: 1024-8192 within 7 %).
        variant: ``"pll"`` (the paper's plain PLL) or ``"word_l2r"`` (Kauf & Ivanova 2023: also mask the
            later sub-tokens of the same word).
        max_length: model window in tokens, specials included; default: the model's.

    Bad input raises ``ValueError``; a subclass picks its own error type by overriding :meth:`_error`. The model
    loads on first use, so the scorer pickles cheaply.
    """

    def __init__(self, model_id_or_path, *, device: str | None = None, dtype=None, batch_tokens: int | None = None,
                 variant: str = "pll", max_length: int | None = None):
        if variant not in VARIANTS:
            raise self._error(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if batch_tokens is not None and batch_tokens < 1:
            raise self._error("batch_tokens must be positive")
        self.model_id = str(model_id_or_path)
        self.device, self.dtype, self.batch_tokens = device, dtype, batch_tokens
        self.variant, self.max_length = variant, max_length
        self._model: Any = None  # the transformers model and tokenizer, loaded on first use
        self._tok: Any = None

    def __getstate__(self):
        """Pickle the settings only; the model reloads on first use (keeps ``Dataset.map`` hashing cheap)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")} | {"_model": None, "_tok": None}

    def _error(self, message: str, *, file: str | None = None) -> Exception:
        """The exception raised for bad input (``file``: the model it concerns)."""
        return ValueError(f"file {file}: {message}" if file else message)

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model_id)
        except Exception as err:  # noqa: BLE001 - any loading failure is an input problem
            raise self._error(f"cannot load tokenizer: {str(err).splitlines()[0]}", file=self.model_id) from None
        if tok.mask_token_id is None:
            raise self._error("the tokenizer has no mask token: PLL needs a masked language model", file=self.model_id)
        dtype = getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
        try:
            model = AutoModelForMaskedLM.from_pretrained(self.model_id, dtype=dtype or torch.float32)
        except Exception as err:  # noqa: BLE001
            raise self._error(f"cannot load a masked LM: {str(err).splitlines()[0]}", file=self.model_id) from None
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model, self._tok, self._device = model.to(device).eval(), tok, device
        limits = [x for x in (tok.model_max_length, getattr(model.config, "max_position_embeddings", None),
                              self.max_length) if x and x < 1_000_000]
        probe, content = tok("a")["input_ids"], tok("a", add_special_tokens=False)["input_ids"]
        k = next(k for k in range(len(probe)) if probe[k:k + len(content)] == content)
        self._prefix, self._suffix = probe[:k], probe[k + len(content):]
        self._window = min(limits or [512]) - len(probe) + len(content)
        if self._window < 2:
            raise self._error(f"model window too small ({min(limits)} tokens)", file=self.model_id)
        # Not scored: the framing and markup tokens ([CLS]/[SEP], <s>/</s>, pad, a [MASK] typed in the text),
        # which stay in context. [UNK] is scored like any other token, as in mlm-scoring and minicons: skipping
        # it would lower the NLL of text the vocabulary lacks (emoji, foreign scripts).
        self._special = set(tok.all_special_ids) - {tok.unk_token_id}
        self._encoder, self._head, self._layers = split_model(model)
        hidden = getattr(model.config, "hidden_size", 768)
        self._batch_tokens = self.batch_tokens or (16384 if str(device).startswith("cuda")
                                                   else max(1024, min(65536, 1572864 // hidden)))

    def score(self, texts: list[str], progress=None) -> list[TextScore]:
        """Score ``texts``; raises for a non-string or a text with no scorable token. ``progress(done, total)``,
        when given, is called after every forward pass: masked copies (one per scored token) done and in all."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise self._error(f"text {i} is {type(t).__name__}, expected a string")
        scores = self._score(list(texts), progress)
        for i, s in enumerate(scores):
            if s.n_tokens == 0:
                raise self._error(f"text {i} has no token to score (empty or only special tokens): {texts[i]!r:.40}")
        return scores

    def _score(self, texts: list[str], progress=None) -> list[TextScore]:
        """Score ``texts`` without checks: a text with no scorable token gets ``TextScore(nan, 0)``."""
        import torch

        self._load()
        copies = self._copies(texts)  # (text index, window ids, masked positions, target pos, target id)
        totals, counts = [0.0] * len(texts), [0] * len(texts)
        copies.sort(key=lambda c: len(c[1]))  # equal lengths together: little padding, few attention calls
        with torch.inference_mode():
            b = 0
            while b < len(copies):
                e, used = b + 1, len(copies[b][1])  # packed: tokens in the batch; padded: rows x longest
                while e < len(copies) and (used + len(copies[e][1]) if self._layers
                                           else (e - b + 1) * len(copies[e][1])) <= self._batch_tokens:
                    used, e = used + len(copies[e][1]), e + 1
                for (t, *_), v in zip(copies[b:e], self._forward(copies[b:e])):
                    totals[t], counts[t] = totals[t] + v, counts[t] + 1
                b = e
                if progress is not None:
                    progress(b, len(copies))
        return [TextScore(totals[i] / counts[i] if counts[i] else float("nan"), counts[i]) for i in range(len(texts))]

    def _copies(self, texts: list[str]) -> list[tuple]:
        """One entry per scored token: ``(text, window_ids, masked_positions, target_pos, target_id)``."""
        enc: Any = self._tok(texts, add_special_tokens=False, verbose=False) if texts else {"input_ids": []}
        out, p = [], len(self._prefix)
        for t, ids in enumerate(enc["input_ids"]):
            words = enc.word_ids(t) if self.variant == "word_l2r" else None
            for start, first, last in window_plan(len(ids), self._window):
                end = min(len(ids), start + self._window)
                win = tuple(self._prefix + ids[start:end] + self._suffix)
                for i in range(first, last):
                    if ids[i] in self._special:
                        continue
                    j = i + 1  # word_l2r: the word's later pieces are masked too
                    while words is not None and words[i] is not None and j < end and words[j] == words[i]:
                        j += 1
                    out.append((t, win, range(p + i - start, p + j - start), p + i - start, ids[i]))
        return out

    def _ids(self, chunk: list[tuple], length: int):
        """Token ids ``[rows, length]`` of ``chunk`` (padded), each copy's masked positions set to the mask token."""
        import torch

        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        ids = torch.tensor([c[1] + (pad,) * (length - len(c[1])) for c in chunk], dtype=torch.long)
        ids[[r for r, c in enumerate(chunk) for _ in c[2]], [m for c in chunk for m in c[2]]] = self._tok.mask_token_id
        return ids.to(self._device)

    def _forward(self, chunk: list[tuple]) -> list[float]:
        import torch

        target = torch.tensor([c[4] for c in chunk], dtype=torch.long, device=self._device)
        if self._layers:
            picked = self._packed(chunk)  # [rows, hidden]
        else:
            lengths = torch.tensor([len(c[1]) for c in chunk])
            length = int(lengths.max())  # equal lengths (the common case): no mask, the fastest attention path
            mask = (torch.arange(length) < lengths[:, None]).long().to(self._device) if lengths[0] < length else None
            hidden = self._encoder(self._ids(chunk, length), mask)  # [rows, length, hidden]
            picked = hidden[torch.arange(len(chunk), device=self._device), torch.tensor([c[3] for c in chunk]).to(self._device)]
        logp = self._head(picked).float().log_softmax(-1)
        return (-logp.gather(1, target[:, None])[:, 0]).tolist()

    def _packed(self, chunk: list[tuple]):
        """Final hidden states ``[rows, hidden]`` at the targets: the model's arithmetic on the tokens end to end."""
        import torch
        from torch.nn.functional import linear
        from torch.nn.functional import scaled_dot_product_attention as attend

        embeddings, layers = self._layers
        runs, s, t = [], 0, 0  # runs of equal lengths (chunk is sorted): (first copy, copies, length, first token)
        for n_len, n in ((n_len, len(list(group))) for n_len, group in groupby(len(c[1]) for c in chunk)):
            runs.append((s, n, n_len, t))
            s, t = s + n, t + n * n_len
        x = torch.cat([embeddings(input_ids=self._ids(chunk[s:s + n], n_len)).flatten(0, 1) for s, n, n_len, _ in runs])
        picks = torch.tensor([t + k * n_len + chunk[s + k][3] for s, n, n_len, t in runs for k in range(n)],
                             device=self._device)
        for i, (layer, w, b) in enumerate(layers):
            last, heads, size = i == len(layers) - 1, layer.attention.self.num_attention_heads, w.shape[0] // 3
            qkv = linear(x, w[size:], b[size:]) if last else linear(x, w, b)  # last layer: keys, values only
            q = linear(x[picks], w[:size], b[:size]) if last else None  # ... and queries at the targets
            ctxs = []
            for s, n, n_len, t in runs:
                part = qkv[t:t + n * n_len].view(n, n_len, -1, heads, size // heads).permute(2, 0, 3, 1, 4)
                query = q[s:s + n].view(n, 1, heads, -1).transpose(1, 2) if q is not None else part[0]  # q: last
                ctxs.append(attend(query, part[-2], part[-1]).transpose(1, 2).reshape(-1, size))
            ctx, x = ctxs[0] if len(ctxs) == 1 else torch.cat(ctxs), x[picks] if last else x
            x = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + x)  # the model's own order
            mid = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(mid) + x)
        return x


def split_model(model):
    """Return ``(encoder, head, layers)``: hidden states of every position, the LM head for gathered states, and
    what :meth:`PLLCore._packed` runs for a BERT-shaped encoder (None for any other model)."""
    for base_attr, head_attr in (("bert", "cls"), ("roberta", "lm_head"), ("xlm_roberta", "lm_head"), ("camembert", "lm_head")):
        base, head = getattr(model, base_attr, None), getattr(model, head_attr, None)
        if base is not None and head is not None:
            encoder = (lambda ids, mask, base=base: base(input_ids=ids, attention_mask=mask).last_hidden_state)
            return encoder, head, _bert_layers(model, base)
    # Any other masked LM: run it whole and take the logits (correct, only slower).
    return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits), (lambda logits: logits), None


def _bert_layers(model, base):
    """The embeddings and fused layers of BERT, RoBERTa, XLM-R or CamemBERT (absolute positions), else None."""
    import torch

    if getattr(model.config, "position_embedding_type", None) not in (None, "absolute") or model.config.is_decoder:
        return None  # relative positions (older BERT variants) or causal attention: the model's own attention
    layers = []
    try:
        for layer in base.encoder.layer:
            sa, out, mid = layer.attention.self, layer.attention.output, layer.intermediate
            lin = (sa.query, sa.key, sa.value, out.dense, mid.dense, layer.output.dense)
            if (hasattr(layer, "crossattention") or hasattr(sa, "distance_embedding") or any(m.bias is None for m in lin)
                    or sa.num_attention_heads * sa.attention_head_size != sa.query.out_features
                    or not all(map(callable, (mid.intermediate_act_fn, out.LayerNorm, layer.output.LayerNorm)))):
                return None
            layers.append((layer, *(torch.cat([getattr(m, k).detach() for m in lin[:3]]) for k in ("weight", "bias"))))
    except AttributeError:
        return None
    return (base.embeddings, layers) if layers else None


def summarize(nlls, *, threshold: float = 2.0, bins: int = 50, range_: tuple[float, float] = (0.0, 5.0)) -> dict:
    """Distribution of per-text NLLs (Cerbero-7B Fig. 4): count, mean, median, quantiles, share under ``threshold``
    (strict: ``threshold`` itself fails) and a histogram over ``range_`` (values outside are clipped into the end
    bins). ``None`` and NaN values are left out."""
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
