"""FLOP accounting of PLL scoring with a BERT-shaped masked LM, for throughput and utilisation figures.

One scored token is one masked copy of its window: ``L`` positions (the tokenizer's framing tokens included).
Counting a multiply-add as 2 FLOPs, with hidden size ``h``, feed-forward size ``f``, ``layers`` layers and a
vocabulary of ``V``, the encoder does per layer and position

- the projections: ``2 * (4 * h**2 + 2 * h * f)`` (query, key, value and output, ``h x h`` each; the
  feed-forward block, ``h x f`` and ``f x h``),
- attention: ``2 * 2 * L * h`` (the scores ``Q K^T`` and the weighted sum of the values, over ``L`` keys),

and the LM head at the masked position ``2 * h * h`` (its transform) ``+ 2 * h * V`` (the vocabulary
projection). So one copy costs ``L * layers * (2 * (4 h^2 + 2 h f) + 4 L h) + 2 h^2 + 2 h V`` (the *nominal*
count: the model's own forward pass over the copy, head at one position): 3.29 GFLOP for BERT-base (h 768,
f 3072, 12 layers, V 32000) at ``L = 19``. Embeddings, biases, LayerNorm, GELU and softmax are left out (under 1 %
more for BERT-base).

The *executed* count is what :class:`~cerbero_hf.resources.mlm_nll.pll_core.PLLCore` runs on a BERT-shaped
encoder: its last layer computes keys and values at every position, but the query, attention, output
projection and feed-forward block only at the masked position: 7 % lower for BERT-base.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    """The sizes that set a masked LM's FLOPs: ``hidden``, ``layers``, ``intermediate`` (feed-forward), ``vocab``."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, config) -> EncoderShape:
        """From a transformers config (``hidden_size``, ``num_hidden_layers``, ``intermediate_size``, ``vocab_size``)."""
        return cls(config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size)


def copy_flops(length: int, shape: EncoderShape, *, executed: bool = False) -> int:
    """FLOPs of scoring one token whose masked copy has ``length`` positions (nominal, or ``executed`` by PLLCore)."""
    h, f = shape.hidden, shape.intermediate
    layer = 2 * (4 * h * h + 2 * h * f) + 2 * 2 * length * h  # per position
    head = 2 * h * h + 2 * h * shape.vocab
    if not executed:
        return length * shape.layers * layer + head
    last = length * 2 * (2 * h * h) + 2 * (2 * h * h + 2 * h * f) + 2 * 2 * length * h  # K, V everywhere; one query
    return length * (shape.layers - 1) * layer + last + head


def pll_flops(lengths: Iterable[int], shape: EncoderShape, *, executed: bool = False) -> int:
    """FLOPs of scoring copies of the given ``lengths`` (one per scored token): the sum of :func:`copy_flops`."""
    return sum(copy_flops(n, shape, executed=executed) for n in lengths)
