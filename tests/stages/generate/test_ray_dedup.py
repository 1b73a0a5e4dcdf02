"""The final near-duplicate pass on Ray: embeddings in two actors, the order-aware pass on one task, and exactly
the kept and rejected rows of the local ``dedup_dataset`` on a corpus with planted near-duplicates."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from conftest import ROOT

from cerbero_hf.schema import make_row
from cerbero_hf.stages.generate.dedup import dedup_dataset
from cerbero_hf.stages.generate.embedder import Embedder

pytest.importorskip("ray")

OASST = ROOT / "cerbero_hf" / "data" / "oasst_sample_it.jsonl"
NEW_1 = "Le api producono il miele di castagno in autunno, nei boschi dell'Appennino."
NEW_2 = "Per cambiare una ruota forata servono il cric, la chiave a croce e un po' di pazienza."
NEW_3 = "Il Teatro alla Scala di Milano fu inaugurato nel 1778 con un'opera di Salieri."


def _conv(id_: str, seed: list[str], generated: list[str], origin: bool = True) -> dict:
    texts = seed + generated
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
    meta = {"origin": ["seed"] * len(seed) + ["generated"] * len(generated)} if origin else {}
    return make_row(id_, msgs, "selfchat", meta)


def planted_corpus():
    """The first 16 OASST trees of the bundled sample (root prompt = seed, the rest generated), with planted rows.

    Returns the rows and the planted rejections ``{id: reason}``. No two bundled messages are within 0.16 of
    the 0.9 threshold with MiniLM, so only the planted rows are near-duplicates.
    """
    trees: dict[str, list[str]] = defaultdict(list)
    for line in OASST.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        trees[rec["message_tree_id"]].append(rec["text"])
    tree_rows = [_conv(f"t{i:02d}", texts[:1], texts[1:]) for i, texts in enumerate(list(trees.values())[:16])]
    roots = [r["messages"][0]["content"] for r in tree_rows]
    msg = [[m["content"] for m in r["messages"]] for r in tree_rows]
    planted = {
        # copies a message of t02 (and carries a new text, which it drags out with it)
        "copy": _conv("copy", [roots[0]], [NEW_1, msg[2][1]]),
        # NEW_1 is only in a rejected row: kept (the pass compares with kept rows only)
        "dragged": _conv("dragged", [roots[1]], [NEW_1]),
        "seed-copy": _conv("seed-copy", ["Dimmi qualcosa."], [roots[3]]),  # a generated copy of a seed message
        "pair": _conv("pair", [roots[4]], [NEW_2, NEW_2]),  # a pair inside one row is not compared: kept
        "pair-later": _conv("pair-later", [roots[5]], [NEW_3, NEW_2.replace(".", "!")]),  # near-copy of "pair"
        # no origin: every message is checked, the question too; the answer copies t09's
        "no-origin": _conv("no-origin", ["Che tempo fa a Napoli oggi?"], [msg[9][1]], origin=False),
        "early": _conv("early", [roots[7]], [msg[12][2]]),  # placed before t12: t12 is the later copy
    }
    rows = tree_rows[:3] + [planted["early"]] + tree_rows[3:6] + [planted["copy"], planted["dragged"]] \
        + tree_rows[6:10] + [planted["seed-copy"], planted["pair"]] + tree_rows[10:] \
        + [planted["pair-later"], planted["no-origin"]]
    expected = {"copy": "near-duplicate of t02 (cos=1.00)", "t12": "near-duplicate of early (cos=1.00)",
                "seed-copy": "near-duplicate of a seed message (cos=1.00)",
                "pair-later": "near-duplicate of pair (cos=", "no-origin": "near-duplicate of t09 (cos=1.00)"}
    return rows, expected


@pytest.fixture(scope="module")
def session():
    import ray

    from cerbero_hf.engine import EngineConfig, ray_session

    assert not ray.is_initialized()
    # Two half-CPU actors and small blocks, so that blocks finish out of order; one CPU stays for Ray Data's tasks.
    config = EngineConfig(kind="ray", address="local", num_cpus=2, cpus_per_worker=0.5, workers=2, batch_rows=3)
    with ray_session(config) as s:
        yield s


@pytest.fixture(scope="module")
def corpus():
    from datasets import Dataset

    rows, expected = planted_corpus()
    return Dataset.from_list(rows), expected


@pytest.mark.timeout(420)
def test_dedup_on_ray_gives_exactly_the_local_kept_and_rejected_rows(session, corpus, minilm_path):
    from cerbero_hf.stages.generate.ray_dedup import dedup_on_ray

    ds, expected = corpus
    embedder = Embedder(minilm_path)
    kept, rejected = dedup_dataset(ds, embedder, threshold=0.9)
    ray_kept, ray_rejected = dedup_on_ray(ds, session, embedder, threshold=0.9)
    assert session.workers == 2
    assert ray_kept.to_list() == kept.to_list()  # same rows, same order
    assert ray_rejected.to_list() == rejected.to_list()
    assert ray_rejected.features == rejected.features and ray_kept.features == kept.features
    # The planted near-duplicates, and only they, are rejected, with the row that came first as the reason.
    reasons = dict(zip(ray_rejected["id"], ray_rejected["reason"]))
    assert list(reasons) == [r for r in ds["id"] if r in expected]  # in corpus order
    for id_, reason in expected.items():
        assert reasons[id_].startswith(reason), (id_, reasons[id_])
    assert {"dragged", "pair", "early"} <= set(ray_kept["id"])
    assert len(ray_kept) + len(ray_rejected) == len(ds)


@pytest.mark.timeout(300)
def test_a_caller_store_a_rule_name_and_a_selection_are_honoured_like_the_local_pass(session, corpus, minilm_path):
    from cerbero_hf.stages.generate.ray_dedup import dedup_on_ray

    ds, _ = corpus
    embedder = Embedder(minilm_path)
    sub = ds.select(range(0, 12))  # a selection: the rows as the Dataset shows them, not its whole table
    initial = embedder.encode([NEW_1])  # a store given by the caller: the "copy" row now clashes with it first
    local = dedup_dataset(sub, embedder, threshold=0.9, initial=initial, rule="dup")
    remote = dedup_on_ray(sub, session, embedder, threshold=0.9, initial=initial, rule="dup")
    assert [d.to_list() for d in remote] == [d.to_list() for d in local]
    reasons = dict(zip(remote[1]["id"], remote[1]["reason"]))
    assert reasons["copy"] == "dup of a seed message (cos=1.00)" and reasons["dragged"].startswith("dup of a seed")


@pytest.mark.timeout(300)
def test_embeddings_on_ray_come_back_with_their_order_and_match_local_ones(session, corpus, minilm_path):
    import ray.data

    from cerbero_hf.stages.generate.ray_dedup import embed_on_ray

    ds, _ = corpus
    texts = [m["content"] for row in ds for m in row["messages"]]
    embedder = Embedder(minilm_path)
    items = [{"order": i, "text": t} for i, t in enumerate(texts)]
    out = embed_on_ray(ray.data.from_items(items, override_num_blocks=8), session, embedder, keep_text=False)
    rows = out.take_all()
    assert "text" not in rows[0]
    got = np.stack([r["vector"] for r in sorted(rows, key=lambda r: r["order"])])
    want = embedder.encode(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert np.abs(got - want).max() <= 1e-5


def test_the_final_pass_sorts_blocks_that_come_back_in_any_order():
    from cerbero_hf.stages.generate.dedup import initial_vectors, near_duplicates
    from cerbero_hf.stages.generate.ray_dedup import order_aware_pass
    from cerbero_hf.stages.generate.store import normalise

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 16))
    seed_vecs = normalise(rng.standard_normal((4, 16)))
    centres[:2] = 4 * seed_vecs[2:]  # generated messages close to seed messages: rejected as copies of seeds
    entries = []  # (row, message, generated, seed text, vector), as the flattening emits them
    for row in range(40):
        s = int(rng.integers(4))
        entries.append((row, 0, False, f"seed {s}", seed_vecs[s]))  # seed texts repeat across rows and blocks
        for j in range(1, int(rng.integers(2, 5))):
            entries.append((row, j, True, "", centres[rng.integers(12)] + 0.05 * rng.standard_normal(16)))
    gen = [e for e in entries if e[2]]
    first_seeds = list(dict.fromkeys(e[3] for e in entries if not e[2]))
    initial = normalise(rng.standard_normal((2, 16)))
    want = near_duplicates(normalise([e[4] for e in gen]), 0.9, groups=[e[0] for e in gen],
                           initial=initial_vectors(initial, seed_vecs[[int(t.split()[1]) for t in first_seeds]]))
    assert 0 < want[0].sum() < len(gen) and (want[1] <= -2).any()  # rejected: copies of kept rows and of seeds
    shuffled = [entries[i] for i in rng.permutation(len(entries))]
    batches = [{"order": np.array([e[:2] for e in part], np.int64).reshape(-1, 2),
                "generated": np.array([e[2] for e in part], bool), "seed": np.array([e[3] for e in part], object),
                "vector": normalise([e[4] for e in part]) if part else np.zeros((0, 16), np.float32)}
               for part in (shuffled[a:b] for a, b in [(0, 3), (3, 4), (4, 4), (4, 30), (30, 61), (61, None)])]
    groups, keep, dup_of, sims = order_aware_pass(batches, 0.9, initial)
    assert groups.tolist() == [e[0] for e in gen]
    assert keep.tolist() == want[0].tolist() and dup_of.tolist() == want[1].tolist()
    assert np.allclose(sims, want[2], atol=1e-6)
