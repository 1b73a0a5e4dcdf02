"""PLL fidelity on text the vocabulary lacks: ``[UNK]`` positions are scored like any other token.

The reference implementations of the pseudo-log-likelihood (Salazar et al.'s mlm-scoring, minicons) mask every
token between the framing tokens the tokenizer adds (``[CLS]``/``[SEP]``, ``<s>``/``</s>``, padding), ``[UNK]``
included. Leaving ``[UNK]`` out would lower the NLL of texts full of emoji or foreign scripts, the very text a
quality filter should catch. The tiny test BERT has a 1000-piece Italian vocabulary, so such characters become
``[UNK]``.
"""

from __future__ import annotations

import pytest

from cerbero_hf.stages.quality.pll import PLLScorer

FOREIGN = "Ciao 😀 come stai? 🇮🇹 Benissimo 👍 你好 世界"
ONLY_UNKNOWN = "ã ß ø æ œ"
PLAIN = "Mia madre prepara la cena in cucina."


def one_copy_at_a_time(model, tok, text):
    """Mask each token of the text in turn (``[UNK]`` included) between ``[CLS]`` and ``[SEP]``; full forward."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    framing_and_markup = set(tok.all_special_ids) - {tok.unk_token_id}
    nlls = []
    for i, true_id in enumerate(ids):
        if true_id in framing_and_markup:
            continue
        masked = [tok.cls_token_id] + ids + [tok.sep_token_id]
        masked[1 + i] = tok.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0]
        nlls.append(-logits.log_softmax(-1)[1 + i, true_id].item())
    return sum(nlls) / len(nlls), len(nlls)


@pytest.fixture(scope="module")
def mlm(tiny_mlm):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval(), AutoTokenizer.from_pretrained(tiny_mlm)


def test_unknown_characters_are_unk_for_the_tiny_model(mlm):
    _, tok = mlm
    ids = tok(FOREIGN, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.unk_token_id) >= 4
    assert set(tok(ONLY_UNKNOWN, add_special_tokens=False)["input_ids"]) == {tok.unk_token_id}


@pytest.mark.parametrize("batch_tokens", [64, 100_000])
def test_unk_positions_are_scored_like_the_reference(tiny_mlm, mlm, batch_tokens):
    model, tok = mlm
    texts = [FOREIGN, ONLY_UNKNOWN, PLAIN]
    got = PLLScorer(tiny_mlm, device="cpu", batch_tokens=batch_tokens).score(texts)
    for text, score in zip(texts, got):
        nll, n = one_copy_at_a_time(model, tok, text)
        assert score.n_tokens == n == len(tok(text, add_special_tokens=False)["input_ids"])
        assert score.nll == pytest.approx(nll, abs=1e-4)


def test_a_text_of_unknown_characters_scores_worse_than_plain_text(tiny_mlm):
    foreign, unknown, plain = PLLScorer(tiny_mlm, device="cpu").score([FOREIGN, ONLY_UNKNOWN, PLAIN])
    assert unknown.n_tokens == 5  # no longer "no token to score"
    assert unknown.nll > plain.nll and foreign.nll > plain.nll


def test_markup_tokens_typed_in_the_text_stay_unscored(tiny_mlm, mlm):
    """A special token written in the text (``[MASK]``) is context only; ``[UNK]`` next to it is scored."""
    _, tok = mlm
    text = "Il [MASK] resta 😀 nel contesto."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.mask_token_id in ids and tok.unk_token_id in ids
    assert PLLScorer(tiny_mlm, device="cpu").score([text])[0].n_tokens == len(ids) - 1
