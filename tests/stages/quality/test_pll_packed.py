"""The scorer's packed encoder (BERT-shaped models) and its whole-model path (any other masked LM) give the scores
of the model's own forward pass, one masked copy at a time."""

from __future__ import annotations

import pytest

from cerbero_hf.stages.quality.pll import PLLScorer

TEXTS = ["Ciao!", "Mia madre prepara la cena in cucina.", "È già là: perché più caffè, Niccolò?",
         "Il token [MASK] resta nel contesto ma non si valuta.",
         "La nonna racconta una storia lunga ai nipoti la sera, dopo cena."]


def reference(folder, text):
    """One masked copy per forward pass of the whole model, full-vocabulary log-softmax (text within the window)."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForMaskedLM.from_pretrained(folder).eval()
    ids = tok(text)["input_ids"]
    special = set(tok.all_special_ids) - {tok.unk_token_id}
    nll = []
    for i in range(1, len(ids) - 1):
        if ids[i] in special:
            continue
        masked = list(ids)
        masked[i] = tok.mask_token_id
        with torch.no_grad():
            nll.append(-model(input_ids=torch.tensor([masked])).logits[0, i].log_softmax(-1)[ids[i]].item())
    return sum(nll) / len(nll), len(nll)


@pytest.fixture(scope="module")
def models(tiny_mlm, tmp_path_factory):
    """Random tiny RoBERTa (positions offset past the padding id), DistilBERT (not BERT-shaped) and a BERT with
    causal attention (BERT-shaped, not packable), on the tiny BERT's tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        DistilBertConfig,
        DistilBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, initializer_range=0.5)  # attention matters
    configs = {"roberta": lambda: RobertaForMaskedLM(RobertaConfig(
                   hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                   max_position_embeddings=66, **common)),
               "distilbert": lambda: DistilBertForMaskedLM(DistilBertConfig(
                   dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64, **common)),
               "bert-causal": lambda: BertForMaskedLM(BertConfig(  # BERT-shaped, but its attention is causal
                   hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                   max_position_embeddings=64, is_decoder=True, **common))}
    out = {}
    for name, build in configs.items():
        torch.manual_seed(0)
        out[name] = folder = tmp_path_factory.mktemp(name)
        build().eval().save_pretrained(folder)
        tok.save_pretrained(folder)
    return out


@pytest.mark.parametrize("name, packed", [("roberta", True), ("distilbert", False), ("bert-causal", False)])
def test_scores_equal_the_models_own_forward_pass(models, name, packed):
    expected = [reference(models[name], t) for t in TEXTS]
    for batch_tokens in (40, 100_000):  # a copy per batch or so, and all copies in one batch of mixed lengths
        scorer = PLLScorer(models[name], device="cpu", batch_tokens=batch_tokens)
        got = scorer.score(TEXTS)
        assert (scorer._layers is not None) == packed
        for (nll, n), s in zip(expected, got):
            assert s.n_tokens == n
            assert s.nll == pytest.approx(nll, abs=1e-5)


def test_packed_scores_under_bf16_autocast_follow_the_models_own_pass(models):
    """The GPU recipe scores under ``torch.autocast``: the packed path must accept bf16 products and stay as close
    to the model's own autocast pass as bf16 rounding allows."""
    import torch

    scorer = PLLScorer(models["roberta"], device="cpu", batch_tokens=100_000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = [reference(models["roberta"], t) for t in TEXTS]
        got = scorer.score(TEXTS)
    assert scorer._layers is not None
    assert [s.n_tokens for s in got] == [n for _, n in expected]
    assert max(abs(s.nll - nll) for s, (nll, _) in zip(got, expected)) < 0.05
