"""The streamed refinement: every removed row lands in ``rejected`` with its rule and reason, chunks give the same
rows as one chunk (the duplicate check stays exact across chunks), and the corpus is read and written a chunk
at a time."""

import json
import random

import pytest
from conftest import ROOT
from datasets import Dataset, load_dataset

from cerbero_hf.io import load_table
from cerbero_hf.schema import features, make_row, rejected_features
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.refine.refiner import PARTIAL, Part, Refiner
from cerbero_hf.stages.refine.rules import DuplicateMajority, Filter, default_rules
from cerbero_hf.stages.refine.rules.duplicates import HashStore
from cerbero_hf.stages.refine.stage import RefineConfig, run_refine
from cerbero_hf.stages.refine.stream import TableSink

DATA = ROOT / "cerbero_hf" / "data"
EXPECTED = json.loads((DATA / "fauno_sample_expected.json").read_text(encoding="utf-8"))


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


class Shouting(Filter):
    name = "shouting"

    def filter(self, row):
        return (False, "the user shouts") if any(m["content"].isupper() for m in row["messages"]) else True


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_removed_row_is_in_rejected_with_its_rule_and_reason(tmp_path):
    """Issue item 5: the rejected config holds every row refine removes, not only one kind."""
    good = [U("Come si cucina la pasta?"), A("Si fa bollire l'acqua, poi si aggiunge il sale e la pasta.")]
    rows = [{"id": "kept", "messages": good},
            {"id": "schema", "messages": [{"role": "bot", "content": "x"}]},
            {"id": "empty", "messages": [U(" "), A("")]},
            {"id": "turn_order", "messages": [A("Salve"), U("Ciao")]},
            {"id": "language", "messages": [U("Come si dice grazie in inglese?"),
                                            A("You say thank you, and it is used in many different situations.")]},
            {"id": "duplicates", "messages": good},
            {"id": "shouting", "messages": [U("PERCHÉ NESSUNO RISPONDE"), A("Eccomi, come posso aiutarti?")]}]
    path = _write_jsonl(tmp_path / "corpus.jsonl", rows)
    rules = default_rules(lang_action="drop-conversation", use_lingua=False)
    rules.insert(-1, Shouting())  # a rule added by a user is covered too
    refiner = Refiner(rules=rules, lang_action="drop-conversation", chunk_rows=2, source="corpus")
    report = refiner.refine_to([Part(load_table(path), "corpus", str(path))], tmp_path / "out")

    kept = load_dataset(str(tmp_path / "out"), split="train")
    rejected = load_dataset(str(tmp_path / "out"), "rejected", split="train")
    assert list(kept["id"]) == ["kept"]
    assert sorted(list(kept["id"]) + list(rejected["id"])) == sorted(r["id"] for r in rows)  # kept + rejected == input
    assert {r["id"]: r["rule"] for r in rejected} == {r: r for r in
                                                     ("schema", "empty", "turn_order", "language", "duplicates",
                                                      "shouting")}
    assert all(r["reason"] and r["reason"] != r["rule"] for r in rejected)
    assert report.removed == {name: 1 for name in ("schema", "empty", "turn_order", "language", "shouting",
                                                   "duplicates")}
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "6 removed conversations" in card and "| **total** | 6 of 7 |" in card
    assert not (tmp_path / "out" / PARTIAL).exists()


def _rows(ds):
    return ds.to_list()


@pytest.mark.parametrize("num_proc", [None, 2])
def test_tiny_chunks_give_the_same_rows_as_one_chunk(num_proc):
    ds = load_table(DATA / "fauno_sample.jsonl")
    whole = Refiner(use_lingua=False, chunk_rows=len(ds), source="s").run(ds)
    chunked = Refiner(use_lingua=False, chunk_rows=7, batch_size=3, num_proc=num_proc, source="s").run(ds)
    assert _rows(chunked[0]) == _rows(whole[0]) and _rows(chunked[1]) == _rows(whole[1])
    assert chunked[2].removed == whole[2].removed and chunked[2].changed == whole[2].changed
    # and both match the defects the sample was built with (duplicates placed after their source)
    assert whole[2].removed == {k: v for k, v in EXPECTED["removed"].items() if v}
    assert len(whole[0]) + len(whole[1]) == EXPECTED["rows"]


def test_a_duplicate_in_a_later_chunk_is_still_found():
    convs = [[U(f"Domanda numero {i}?"), A(f"Risposta numero {i}.")] for i in range(5)]
    ds = Dataset.from_list([make_row(f"c{i}", m) for i, m in enumerate(convs + [convs[0], convs[3]])],
                           features=features())
    kept, rejected, report = Refiner(use_lingua=False, chunk_rows=2).run(ds)  # copies 3 and 4 chunks later
    assert list(kept["id"]) == ["c0", "c1", "c2", "c3", "c4"]
    assert list(rejected["id"]) == ["c5", "c6"] and set(list(rejected["rule"])) == {"duplicates"}
    assert rejected[0]["reason"] == "2 of 2 messages already in earlier conversations"


def test_rows_are_read_and_written_one_chunk_at_a_time(tmp_path):
    rows = [{"id": f"r{i}", "messages": [U(f"Domanda {i}?"), A(f"Risposta {i}.")]} for i in range(23)]
    ds = load_table(_write_jsonl(tmp_path / "c.jsonl", rows))
    kept, rejected = TableSink(features().arrow_schema), TableSink(rejected_features().arrow_schema)
    report = Refiner(use_lingua=False, chunk_rows=5).stream([Part(ds, "c")], kept, rejected)
    assert [t.num_rows for t in kept.tables] == [5, 5, 5, 5, 3] and report.kept == 23
    assert list(kept.dataset()["id"]) == [f"r{i}" for i in range(23)] and list(kept.dataset()["source"]) == ["c"] * 23


def _read(part, rows):
    return [r for t in part.chunks(rows) for r in t.to_pylist()]


def test_a_loaded_file_is_read_from_its_arrow_files_other_datasets_through_datasets(tmp_path):
    rows = [{"id": f"r{i}", "n": i} for i in range(10)]
    ds = load_table(_write_jsonl(tmp_path / "c.jsonl", rows))
    part = Part(ds, "c")
    assert part.files == [f["filename"] for f in ds.cache_files] and part.ds is None  # the dataset is not kept
    assert len(part) == 10 and part.column_names == ["id", "n"] and part.features == ds.features
    assert [t.num_rows for t in part.chunks(4)] == [4, 4, 2] and _read(part, 4) == rows
    picked = Part(ds.select([9, 0, 5]))  # an indices mapping over the same file: read through the dataset
    assert picked.files is None and _read(picked, 2) == [rows[9], rows[0], rows[5]]
    renamed = Part(ds.rename_column("n", "k"))  # a change replayed over the file: read through the dataset
    assert renamed.files is None and next(renamed.chunks(3)).column_names == ["id", "k"]
    in_memory = Part(Dataset.from_list(rows))
    assert in_memory.files is None and _read(in_memory, 3) == rows


def test_hash_store_is_an_exact_set_in_few_runs():
    rng = random.Random(0)
    store, truth = HashStore(max_run=64), set()
    for _ in range(60):
        batch = {rng.randrange(-(1 << 63), 1 << 63) for _ in range(rng.randrange(0, 12))} - truth
        store.add(list(batch))
        truth |= batch
    probes = list(truth) + [rng.randrange(-(1 << 63), 1 << 63) for _ in range(300)] + [-(1 << 63), (1 << 63) - 1]
    assert store.contains(probes).tolist() == [p in truth for p in probes]
    assert len(store) == len(truth)
    assert all(len(run) <= 64 for run in store.runs) and len(store.runs) < len(truth) / 8
    assert all((run[1:] > run[:-1]).all() for run in store.runs)


def test_duplicate_rule_decides_the_same_in_batches_and_one_by_one():
    rng = random.Random(1)
    keys = [[rng.randrange(40) for _ in range(rng.randrange(0, 5))] for _ in range(300)]
    one = DuplicateMajority(flush=5)  # a tiny flush: most look-ups go to the compact store
    singles = [one.decide(k) for k in keys]
    many = DuplicateMajority(flush=5)
    batched = [v for i in range(0, len(keys), 17) for v in many.decide_many(keys[i:i + 17])]
    plain, seen = [], set()  # the rule as first written, with a Python set
    for k in keys:
        dup = sum(h in seen for h in k)
        if k and dup / len(k) > 0.5:
            plain.append((False, f"{dup} of {len(k)} messages already in earlier conversations"))
        else:
            seen.update(k)
            plain.append(True)
    assert singles == batched == plain and len(many.store) > 0


def test_run_refine_streams_several_inputs_and_counts_every_row(tmp_path):
    extra = _write_jsonl(tmp_path / "extra.jsonl", [
        {"input": "[|Umano|] Dove si trova il Colosseo?\n[|AI|] A Roma."},
        {"input": "[|Umano|]  \n[|AI|] "}])
    cfg = RefineConfig(inputs=[str(DATA / "fauno_sample.jsonl"), str(extra)], use_lingua=False)
    events = []
    result = run_refine(cfg, Context(output=tmp_path / "out", on_event=lambda e, s: events.append((e, s))))
    assert [e for e, _ in events] == ["loading", "refining", "writing"]
    assert events[1][1] == {"rows": EXPECTED["rows"] + 2}
    assert events[2][1] == {"kept": result.kept, "rejected": result.rejected}
    assert result.kept + result.rejected == result.input == EXPECTED["rows"] + 2
    rejected = load_dataset(str(tmp_path / "out"), "rejected", split="train")
    assert len(rejected) == result.rejected and "row-%d" % (EXPECTED["rows"] + 1) in list(rejected["id"])
    assert not (tmp_path / "out" / PARTIAL).exists()
