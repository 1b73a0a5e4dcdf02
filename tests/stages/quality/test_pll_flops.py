"""The FLOP accounting behind the PLL throughput figures (bench/pll.py): the hand formula, and what torch counts
when the transformers model and the scorer actually run."""

from __future__ import annotations

import pytest

from cerbero_hf.stages.quality.flops import EncoderShape, copy_flops, pll_flops
from cerbero_hf.stages.quality.pll import PLLScorer

BERT_BASE = EncoderShape(hidden=768, layers=12, intermediate=3072, vocab=32000)
TEXTS = ["Ciao!", "Mia madre prepara la cena in cucina.", "È già là: perché più caffè, Niccolò?",
         "La nonna racconta una storia lunga ai nipoti la sera, dopo cena."]


def counter():
    """torch's FLOP counter, taught the CPU kernel of scaled_dot_product_attention, which it does not count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def sdpa(q_shape, k_shape, *args, out_shape=None, **kwargs):
        batch, heads, queries, size = q_shape
        return 2 * 2 * batch * heads * queries * k_shape[2] * size

    sdpa_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={sdpa_cpu: sdpa})


def test_bert_base_copy_by_hand():
    from transformers import BertConfig

    h, f, layers, vocab, length = 768, 3072, 12, 32000, 19
    per_position_layer = 2 * (4 * h * h + 2 * h * f) + 2 * 2 * length * h
    head = 2 * h * h + 2 * h * vocab
    assert copy_flops(length, BERT_BASE) == length * layers * per_position_layer + head == 3_291_156_480  # ~3.3 G
    last = length * 2 * 2 * h * h + 2 * (2 * h * h + 2 * h * f) + 2 * 2 * length * h
    executed = copy_flops(length, BERT_BASE, executed=True)
    assert executed == length * (layers - 1) * per_position_layer + last + head == 3_077_769_216
    assert pll_flops([19, 19, 23], BERT_BASE) == 2 * copy_flops(19, BERT_BASE) + copy_flops(23, BERT_BASE)
    assert EncoderShape.of(BertConfig(vocab_size=32000)) == BERT_BASE


@pytest.mark.parametrize("length", [5, 19])
def test_nominal_count_is_the_transformers_forward_pass(length):
    """BERT-base (on the meta device: shapes only) over unpadded copies, then its LM head at one position each."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    with torch.device("meta"):
        model = BertForMaskedLM(BertConfig(vocab_size=32000)).eval()
        ids = torch.zeros(3, length, dtype=torch.long)
    with torch.inference_mode(), counter() as flops:
        hidden = model.bert(input_ids=ids).last_hidden_state
        model.cls(hidden[:, 1])
    assert flops.get_total_flops() == 3 * copy_flops(length, BERT_BASE)


@pytest.mark.parametrize("variant", ["pll", "word_l2r"])
def test_executed_count_is_what_the_scorer_runs(tiny_mlm, variant):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    scorer = PLLScorer(tiny_mlm, device="cpu", batch_tokens=100, variant=variant)  # several batches, mixed lengths
    scorer.score(TEXTS[:1])  # loads the model outside the counter
    with counter() as flops:
        scores = scorer.score(TEXTS)
    # one copy per scored token, each as long as its text with [CLS] and [SEP] (all texts fit the window)
    lengths = [len(tok(t)["input_ids"]) for t, s in zip(TEXTS, scores) for _ in range(s.n_tokens)]
    shape = EncoderShape.of(AutoConfig.from_pretrained(tiny_mlm))
    assert flops.get_total_flops() == pll_flops(lengths, shape, executed=True)
    assert pll_flops(lengths, shape, executed=True) < pll_flops(lengths, shape)
