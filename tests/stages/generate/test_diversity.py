"""Diversity filter: the strict > 0.9 rule, the store, the order-aware final pass (D8-D10)."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading

import numpy as np
import pytest
from conftest import FIXTURES

from cerbero_hf.schema import get_meta, make_row
from cerbero_hf.stages.generate.dedup import dedup_dataset, near_duplicate_mask, near_duplicates
from cerbero_hf.stages.generate.embedder import Embedder
from cerbero_hf.stages.generate.store import EmbeddingStore, normalise

FIXTURE = FIXTURES / "oasst_sample.jsonl"


def at_cos(c: float, dim: int = 3) -> np.ndarray:
    """A unit vector whose cosine with e0 = (1, 0, ...) is ``c``."""
    v = np.zeros(dim)
    v[0], v[1] = c, np.sqrt(1 - c * c)
    return v


def angle(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0])


def clustered(n_centres=40, per=5, dim=32, noise=0.05, seed=0):
    """Random centres plus close copies: many pairs above 0.9, shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim))
    x = np.repeat(centres, per, axis=0) + noise * rng.standard_normal((n_centres * per, dim))
    return normalise(x[rng.permutation(len(x))])


def test_strict_threshold_point_nine_is_accepted_above_is_rejected():
    store = EmbeddingStore(dim=3)
    assert store.try_add(at_cos(1.0)) == (True, -1.0)  # empty store: nothing to compare with
    ok, sim = store.try_add(at_cos(0.9))
    assert ok and sim == pytest.approx(0.9, abs=1e-6)
    store2 = EmbeddingStore(dim=3)
    store2.add(at_cos(1.0))
    ok, sim = store2.try_add(at_cos(0.9001))
    assert not ok and sim == pytest.approx(0.9001, abs=1e-6)
    assert store2.try_add(at_cos(0.5))[0]
    assert len(store) == 2 and len(store2) == 2
    assert EmbeddingStore(dim=3, threshold=0.95).try_add(at_cos(0.9))[0]


def test_exact_duplicate_and_unnormalised_input():
    store = EmbeddingStore(dim=3)
    store.add([[2.0, 0.0, 0.0]])  # normalised on the way in
    ok, sim = store.try_add([5.0, 0.0, 0.0])
    assert not ok and sim == pytest.approx(1.0)
    assert np.allclose(np.linalg.norm(store.vectors, axis=1), 1.0)
    with pytest.raises(ValueError, match="dimension 3"):
        store.try_add(np.ones(4))


def test_in_batch_conflicts_only_count_accepted_candidates():
    # x20 is 0.94 to x0 (rejected); x40 is 0.94 to x20 but 0.77 to x0: accepted, because x20 was not.
    store = EmbeddingStore(dim=3)
    mask, sims = store.accept_batch([angle(0), angle(20), angle(40), angle(0), angle(90)])
    assert mask.tolist() == [True, False, True, False, True]
    assert sims[1] == pytest.approx(np.cos(np.radians(20)), abs=1e-6)
    assert sims[2] == pytest.approx(np.cos(np.radians(40)), abs=1e-6)  # max over ACCEPTED earlier ones
    assert sims[3] == pytest.approx(1.0)
    assert len(store) == 3
    # The store remembers: a later batch is checked against what was accepted.
    assert store.accept_batch([angle(41), angle(-30)])[0].tolist() == [False, True]


def test_batch_equals_one_by_one_on_clustered_data():
    x = clustered()
    batch = EmbeddingStore(dim=32)
    seq = EmbeddingStore(dim=32)
    batch.add(x[:7])
    seq.add(x[:7])
    mask, sims = batch.accept_batch(x[7:])
    one = [seq.try_add(v) for v in x[7:]]
    assert mask.tolist() == [ok for ok, _ in one]
    assert np.allclose(sims, [s for _, s in one], atol=1e-5)
    assert 0 < mask.sum() < len(mask)
    kept = batch.vectors
    gram = kept @ kept.T - 2 * np.eye(len(kept))
    assert gram[7:].max() <= 0.9 + 1e-6  # the invariant: an accepted vector is novel w.r.t. all others


def test_groups_are_all_or_nothing():
    store = EmbeddingStore(dim=3)
    store.add(angle(0))
    # group 0 = (60deg, 5deg): 5deg clashes with the store, so 60deg is not added either;
    # group 1 = (61deg, 120deg) is then free; vectors inside one group are not compared.
    acc, sims, near = store.accept_groups([angle(60), angle(5), angle(61), angle(62)], groups=[0, 0, 1, 1],
                                          want_nearest=True)
    assert acc.tolist() == [False, False, True, True]
    assert near[1] == 0
    assert len(store) == 3


def test_near_duplicate_mask_keeps_first_and_spans_blocks():
    x = np.stack([angle(0), angle(20), angle(40), angle(0), angle(90), angle(91), angle(40)])
    for block in (1, 2, 3, 100):
        keep, dup_of, sims = near_duplicates(x, 0.9, block=block)
        assert keep.tolist() == [True, False, True, False, True, False, False]
        assert dup_of.tolist() == [-1, 0, -1, 0, -1, 4, 2]
        assert sims[6] == pytest.approx(1.0)
    # Order decides which copy survives; a row is never its own neighbour.
    assert near_duplicate_mask(x[::-1], 0.9, block=2).tolist() == [True, True, False, True, False, False, False]
    assert near_duplicate_mask(np.zeros((0, 3))).tolist() == []
    big = clustered(n_centres=300, per=4, dim=16)
    assert (near_duplicate_mask(big, 0.9, block=97) == EmbeddingStore(16).accept_batch(big)[0]).all()


def test_save_load_and_pickle_rebuild_the_same_decisions(tmp_path):
    x = clustered(seed=1)
    store = EmbeddingStore(dim=32, capacity=2)  # grows by doubling
    store.accept_batch(x[:100])
    path = store.save(tmp_path / "store.npy")
    again = EmbeddingStore.load(path)
    copy = pickle.loads(pickle.dumps(store))
    assert len(again) == len(store) == len(copy)
    assert np.array_equal(again.vectors, store.vectors)
    rest = x[100:]
    verdicts = [s.accept_batch(rest)[0].tolist() for s in (store, again, copy)]
    assert verdicts[0] == verdicts[1] == verdicts[2]


def test_hnsw_index_agrees_with_exact_on_clear_cases(tmp_path):
    x = clustered(n_centres=200, per=5, dim=32, seed=2)
    exact = EmbeddingStore(32)
    hnsw = EmbeddingStore(32, index="hnsw")
    for part in np.array_split(x, 7):
        assert exact.accept_batch(part)[0].tolist() == hnsw.accept_batch(part)[0].tolist()
    assert np.allclose(hnsw.max_similarity(x), exact.max_similarity(x), atol=1e-5)
    again = EmbeddingStore.load(hnsw.save(tmp_path / "h.npy"), index="hnsw")
    assert len(again) == len(hnsw) and again.try_add(x[0]) == (False, pytest.approx(1.0, abs=1e-5))


def test_concurrent_coroutines_and_threads_never_accept_two_near_duplicates():
    x = clustered(n_centres=20, per=10, dim=32, noise=0.02, seed=3)
    store = EmbeddingStore(dim=32)

    async def propose(v, i):
        await asyncio.sleep(0.001 * (i % 7))  # interleave like requests returning from an endpoint
        return store.try_add(v)[0]

    async def main():
        return await asyncio.gather(*(propose(v, i) for i, v in enumerate(x)))

    accepted = asyncio.run(main())
    assert sum(accepted) == len(store) == 20  # exactly one per cluster
    threaded = EmbeddingStore(dim=32)
    results = []

    def worker(part):
        results.extend(threaded.try_add(v)[0] for v in part)

    threads = [threading.Thread(target=worker, args=(p,)) for p in np.array_split(x, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = threaded.vectors
    assert sum(results) == len(kept) == 20
    assert (kept @ kept.T - 2 * np.eye(len(kept))).max() <= 0.9


def test_embedder_on_tiny_and_packaged_minilm(tiny_embedder, minilm_path):
    tiny = Embedder(tiny_embedder, batch_size=4)
    v = tiny.encode(["il gatto dorme", "il gatto dorme", "domani piove a Roma"])
    assert v.dtype == np.float32 and v.shape == (3, tiny.dim)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) == pytest.approx(1.0, abs=1e-5)
    clone = pickle.loads(pickle.dumps(tiny))
    assert len(pickle.dumps(tiny)) < 500 and np.allclose(clone.encode("il gatto dorme"), v[0])
    mini = Embedder(minilm_path)
    a, b, c = mini.encode(["A cat is sleeping on the sofa.", "The cat sleeps on the couch.",
                           "Interest rates rose sharply last quarter."])
    assert mini.dim == 384
    assert a @ b > 0.7 > a @ c
    assert Embedder().model_id.endswith("distiluse-base-multilingual-cased-v2")  # no load until used
    assert Embedder.for_language("it").model_id == Embedder().model_id


def test_store_seeded_with_seed_messages_rejects_copies(minilm_path):
    from cerbero_hf.stages.seeds.oasst import build_seeds

    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    seeds = build_seeds(rows, "it")
    emb = Embedder(minilm_path)
    store = EmbeddingStore(emb.dim)
    store.add(emb.encode([m["messages"][0]["content"] for m in seeds.messages]))  # D10
    assert len(store) == 13
    copy = seeds.messages[0]["messages"][0]["content"]
    mask, sims = store.accept_batch(emb.encode([copy, "Stock markets closed higher on Friday in New York.", copy]))
    assert mask.tolist() == [False, True, False]
    assert sims[0] == pytest.approx(1.0, abs=1e-5)


def _conv(id_, seed_msgs, generated):
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(seed_msgs + generated)]
    return make_row(id_, msgs, "selfchat", {"origin": ["seed"] * len(seed_msgs) + ["generated"] * len(generated)})


def test_final_pass_across_shards(minilm_path):
    from datasets import Dataset

    seed = ["What is the capital of Italy?"]
    # Two shards generated with separate stores: each is diverse inside, but s1-1 repeats s0-0's answer.
    shard0 = [_conv("s0-0", seed, ["Rome has been the capital since 1871.", "What about before?",
                                   "Turin and then Florence."]),
              _conv("s0-1", ["How do I cook rice?"], ["Boil it in salted water for twelve minutes."])]
    shard1 = [_conv("s1-0", seed, ["The capital is Rome.", "Is it big?",
                                   "Yes, almost three million people live there."]),
              _conv("s1-1", ["Tell me about Italy."], ["Rome has been the capital since 1871.", "And Milan?",
                                                       "Milan is the economic centre."]),
              _conv("s1-2", ["Any film tips?"], ["What is the capital of Italy?"])]  # generated copy of a seed
    ds = Dataset.from_list(shard0 + shard1)
    kept, rejected = dedup_dataset(ds, Embedder(minilm_path), threshold=0.9)
    assert list(kept["id"]) == ["s0-0", "s0-1", "s1-0"]  # the shared seed prefix is not a duplicate
    reasons = dict(zip(rejected["id"], rejected["reason"]))
    assert reasons["s1-1"] == "near-duplicate of s0-0 (cos=1.00)"
    assert reasons["s1-2"] == "near-duplicate of a seed message (cos=1.00)"
    assert set(rejected["rule"]) == {"near-duplicate"}
    assert sorted(list(kept["id"]) + list(rejected["id"])) == sorted(ds["id"])
    assert get_meta(rejected[0])["origin"][0] == "seed"  # rows are kept whole
