"""PLLScorer against a deliberately simple reference, and the NLL filter policies (paper §3.4, §4)."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from cerbero_hf.errors import InputError
from cerbero_hf.schema import get_meta, make_row
from cerbero_hf.stages.quality.filter import QualityFilter
from cerbero_hf.stages.quality.pll import PLLScorer, window_plan
from cerbero_hf.stages.quality.summary import message_nlls, summarize
from cerbero_hf.tiny_models import italian_sentences

LONG = " ".join(italian_sentences(40)[:25])  # ~250 tokens, the tiny model's window is 64
TEXTS = [
    "Ciao!",
    "Mia madre prepara la cena in cucina.",
    "È già là: perché più caffè, Niccolò?",
    "Ciao 😀 come stai? 🇮🇹 Benissimo 👍",
    "Il token [MASK] resta nel contesto ma non si valuta.",
    LONG,
]


# -- the reference: one masked copy at a time, full forward pass, full-vocabulary log-softmax ---------------

def reference_nll(model, tok, text, window, word_l2r=False):
    import torch

    enc = tok(text, add_special_tokens=False)
    ids, words = enc["input_ids"], enc.word_ids()
    starts = [0] if len(ids) <= window else sorted(set(range(0, len(ids) - window, window // 2)) | {len(ids) - window})
    nlls = []
    for i, true_id in enumerate(ids):
        if true_id in tok.all_special_ids and true_id != tok.unk_token_id:  # [UNK] is scored like any token
            continue
        # the window where token i has the most context on its shorter side (earliest on ties)
        start = max(starts, key=lambda s: (min(i - s, s + window - 1 - i) if s <= i < s + window else -1, -s))
        piece = [tok.cls_token_id] + ids[start:start + window] + [tok.sep_token_id]
        masked = list(piece)
        masked[1 + i - start] = tok.mask_token_id
        if word_l2r:
            j = i + 1
            while j < min(len(ids), start + window) and words[j] == words[i]:
                masked[1 + j - start] = tok.mask_token_id
                j += 1
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0]
        nlls.append(-logits.log_softmax(-1)[1 + i - start, true_id].item())
    return sum(nlls) / len(nlls), len(nlls)


@pytest.fixture(scope="module")
def ref_model(tiny_mlm):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval(), AutoTokenizer.from_pretrained(tiny_mlm)


@pytest.mark.parametrize("variant", ["pll", "word_l2r"])
def test_fast_scorer_matches_reference_for_every_batch_size(tiny_mlm, ref_model, variant):
    model, tok = ref_model
    assert len(tok(LONG)["input_ids"]) > 3 * 64  # really beyond the window
    expected = [reference_nll(model, tok, t, 62, word_l2r=variant == "word_l2r") for t in TEXTS]
    for batch_tokens in (64, 700, 100_000):
        got = PLLScorer(tiny_mlm, device="cpu", batch_tokens=batch_tokens, variant=variant).score(TEXTS)
        for (nll, n), s in zip(expected, got):
            assert s.n_tokens == n
            assert s.nll == pytest.approx(nll, abs=1e-4)


def test_variants_differ_and_special_tokens_are_not_scored(tiny_mlm, ref_model):
    _, tok = ref_model
    plain, l2r = (PLLScorer(tiny_mlm, device="cpu", variant=v).score([TEXTS[2]])[0] for v in ("pll", "word_l2r"))
    assert plain.n_tokens == l2r.n_tokens
    assert plain.nll != pytest.approx(l2r.nll, abs=1e-6)  # the text has multi-piece words
    text = TEXTS[4]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.mask_token_id in ids
    assert PLLScorer(tiny_mlm, device="cpu").score([text])[0].n_tokens == len(ids) - 1


def test_window_plan_scores_each_token_once_with_most_context():
    for n, window in [(5, 62), (62, 62), (63, 62), (250, 62), (1000, 64), (7, 2)]:
        plan = window_plan(n, window)
        covered = [i for _, first, last in plan for i in range(first, last)]
        assert covered == list(range(n))
        for start, first, last in plan:
            assert 0 <= start <= first and last <= start + window and start + window <= max(n, window)
            if n > window:  # the token's shorter context side is at least a quarter window
                assert all(min(i - start, start + window - 1 - i) >= min(i, n - 1 - i, window // 4 - 1)
                           for i in range(first, last))


def test_transform_writes_per_message_nll_and_pickles(tiny_mlm):
    import datasets

    from cerbero_hf.schema import features

    rows = [make_row("a", [{"role": "user", "content": TEXTS[1]}, {"role": "assistant", "content": TEXTS[2]}],
                     meta={"generated": [False, True]}),
            make_row("b", [{"role": "user", "content": TEXTS[3]}, {"role": "assistant", "content": ""}])]
    ds = datasets.Dataset.from_list(rows, features=features())
    scorer = PLLScorer(tiny_mlm, device="cpu")
    out = ds.map(scorer, batched=True, batch_size=1)
    direct = scorer.score([TEXTS[1], TEXTS[2], TEXTS[3]])
    a, b = (get_meta(r) for r in out)
    assert a["generated"] == [False, True]
    assert a["nll"] == pytest.approx([direct[0].nll, direct[1].nll], abs=1e-5)
    assert a["nll_tokens"] == [direct[0].n_tokens, direct[1].n_tokens]
    total = direct[0].n_tokens + direct[1].n_tokens
    weighted = direct[0].nll * direct[0].n_tokens + direct[1].nll * direct[1].n_tokens
    assert a["nll_mean"] == pytest.approx(weighted / total)
    assert b["nll"][0] == pytest.approx(direct[2].nll, abs=1e-5) and b["nll"][1] is None
    assert message_nlls(out)[:2] == a["nll"]
    clone = pickle.loads(pickle.dumps(scorer))  # the loaded model is not pickled; it reloads on first use
    assert len(pickle.dumps(scorer)) < 2000
    assert clone.score([TEXTS[1]])[0].nll == pytest.approx(direct[0].nll, abs=1e-6)


def test_bad_input_gives_clear_errors(tiny_mlm, tmp_path):
    scorer = PLLScorer(tiny_mlm, device="cpu")
    with pytest.raises(InputError, match="text 1 has no token to score"):
        scorer.score(["Ciao", ""])
    with pytest.raises(InputError, match="text 0 is int, expected a string"):
        scorer.score([3])
    with pytest.raises(InputError, match="unknown variant"):
        PLLScorer(tiny_mlm, variant="l2r")
    no_mask = tmp_path / "no-mask"
    shutil.copytree(tiny_mlm, no_mask)
    cfg = json.loads((no_mask / "tokenizer_config.json").read_text())
    cfg.pop("mask_token", None)
    (no_mask / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no mask token"):
        PLLScorer(no_mask, device="cpu").score(["Ciao"])
    with pytest.raises(InputError, match="cannot load tokenizer"):
        PLLScorer(tmp_path / "missing", device="cpu").score(["Ciao"])


def test_summarize():
    s = summarize([0.5, 1.0, 1.5, 2.0, 9.0, None], threshold=2.0, bins=5)
    assert s["count"] == 5 and s["mean"] == pytest.approx(2.8) and s["median"] == 1.5
    assert s["share_under"] == pytest.approx(0.6)  # strict: 2.0 fails
    assert s["histogram"]["counts"] == [1, 2, 1, 0, 1]  # 9.0 clipped into the last bin
    assert summarize([])["count"] == 0


# -- the filter: pure logic on rows we write ----------------------------------------------------------

def _row(id, roles_nll, **meta):
    msgs = [{"role": r, "content": f"{id}-{i}"} for i, (r, _) in enumerate(roles_nll)]
    nll = [v for _, v in roles_nll]
    return make_row(id, msgs, meta={"nll": nll, "nll_tokens": [3] * len(nll), "seed": [True] * len(nll), **meta})


ROWS = [
    _row("clean", [("user", 0.5), ("assistant", 1.0)]),
    _row("late", [("user", 0.5), ("assistant", 1.0), ("user", 1.2), ("assistant", 2.5), ("user", 0.4),
                  ("assistant", 0.3)]),
    _row("userfail", [("user", 0.5), ("assistant", 1.0), ("user", 2.0), ("assistant", 0.3)]),
    _row("first", [("user", 3.0), ("assistant", 1.0)]),
    _row("early", [("user", 0.5), ("assistant", None)]),
]


def _split(policy):
    import datasets

    from cerbero_hf.schema import features

    kept, rejected = QualityFilter(2.0, policy).split(datasets.Dataset.from_list(ROWS, features=features()))
    return {r["id"]: r for r in kept}, list(rejected)


@pytest.mark.parametrize("policy", ["truncate", "drop_conversation", "drop_message"])
def test_filter_accounts_for_every_message(policy):
    kept, rejected = _split(policy)
    for row in ROWS:
        parts = ([kept[row["id"]]] if row["id"] in kept else []) + [r for r in rejected if r["id"] == row["id"]]
        contents = sorted(m["content"] for p in parts for m in p["messages"])
        assert contents == sorted(m["content"] for m in row["messages"])
    assert all(r["rule"] == "mlm_nll" and r["reason"] for r in rejected)
    for r in kept.values():  # every kept message passes, and per-message meta lists stay parallel
        meta = get_meta(r)
        assert all(v < 2.0 for v in meta["nll"]) and len(meta["seed"]) == len(r["messages"])


def test_truncate_policy():
    kept, rejected = _split("truncate")
    assert set(kept) == {"clean", "late", "userfail"}
    assert [m["content"] for m in kept["late"]["messages"]] == ["late-0", "late-1"]  # trailing user turn dropped
    late = next(r for r in rejected if r["id"] == "late")
    assert "message 3 (assistant): NLL 2.500 is not < 2" in late["reason"]
    assert get_meta(late)["removed_indices"] == [2, 3, 4, 5] and get_meta(late)["nll"] == [1.2, 2.5, 0.4, 0.3]
    assert get_meta(kept["late"])["nll_mean"] == pytest.approx(0.75)
    assert "message 2 (user): NLL 2.000" in next(r for r in rejected if r["id"] == "userfail")["reason"]
    assert "no user → assistant exchange" in next(r for r in rejected if r["id"] == "first")["reason"]
    assert "no scorable token" in next(r for r in rejected if r["id"] == "early")["reason"]
    assert kept["clean"] == ROWS[0]


def test_drop_conversation_and_drop_message_policies():
    kept, rejected = _split("drop_conversation")
    assert set(kept) == {"clean"} and sorted(r["id"] for r in rejected) == ["early", "first", "late", "userfail"]
    kept, rejected = _split("drop_message")
    assert [m["content"] for m in kept["late"]["messages"]] == ["late-0", "late-1", "late-2", "late-4", "late-5"]
    assert [m["content"] for m in kept["first"]["messages"]] == ["first-1"]
    assert get_meta(next(r for r in rejected if r["id"] == "late"))["removed_indices"] == [3]


def test_filter_errors():
    with pytest.raises(InputError, match="unknown policy"):
        QualityFilter(policy="cut")
    with pytest.raises(InputError, match="run PLLScorer first"):
        QualityFilter().apply(make_row("x", [{"role": "user", "content": "a"}]), 0)


def test_a_bad_row_past_the_first_chunk_is_named_by_its_row_in_the_input(tiny_mlm, tmp_path):
    from datasets import Dataset

    from cerbero_hf.stages.quality.folders import score_dataset

    good = [{"role": "user", "content": "Ciao, come stai?"}, {"role": "assistant", "content": "Bene, grazie."}]
    bad = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": None}]
    ds = Dataset.from_dict({"id": [str(i) for i in range(6)], "messages": [good] * 4 + [bad, good],
                            "meta": ["{}"] * 6})
    with pytest.raises(InputError) as err:
        score_dataset(ds, PLLScorer(str(tiny_mlm), device="cpu"), tmp_path, chunk_rows=2)
    assert err.value.row == 4 and err.value.column == "messages"  # the input's row, not the chunk's row 0
