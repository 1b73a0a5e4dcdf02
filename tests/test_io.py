"""io.load_table on every input kind, and Hub-layout folders that reload fresh after a rewrite."""

import json

import pytest
from datasets import Dataset, load_dataset

from cerbero_hf.errors import InputError
from cerbero_hf.io import load_table, save_hub_folder

ROWS = {"id": ["a", "b"], "input": ["[|Umano|] Ciao\n[|AI|] Salve", "[|Umano|] Grazie\n[|AI|] Prego"]}


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "json", "csv", "save_to_disk", "hub_folder"])
def test_load_table_reads_every_input_kind(tmp_path, kind):
    ds = Dataset.from_dict(ROWS)
    if kind == "parquet":
        path = tmp_path / "c.parquet"
        ds.to_parquet(str(path))
    elif kind == "jsonl":
        path = tmp_path / "c.jsonl"
        ds.to_json(str(path), lines=True, force_ascii=False)
    elif kind == "json":
        path = tmp_path / "c.json"
        path.write_text(json.dumps([dict(zip(ROWS, v)) for v in zip(*ROWS.values())]), encoding="utf-8")
    elif kind == "csv":
        path = tmp_path / "c.csv"
        ds.to_csv(str(path), index=False)
    elif kind == "save_to_disk":
        path = tmp_path / "disk"
        ds.save_to_disk(str(path))
    else:
        path = save_hub_folder(tmp_path / "hub", {"default": ds})
    loaded = load_table(path)
    assert loaded["id"] == ROWS["id"] and loaded["input"] == ROWS["input"]


def test_bad_paths_fail_before_loading(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_table(tmp_path / "nope.jsonl")
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown format '.xlsx'"):
        load_table(tmp_path / "x.xlsx")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_table(tmp_path / "bad.jsonl")
    assert err.value.row == 1


def test_rewritten_or_same_named_folders_never_load_stale_rows(tmp_path):
    # datasets keys a local folder's cache on its README only: the card's dataset_info keeps keys distinct
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    save_hub_folder(a, {"default": Dataset.from_dict({"x": [1]}), "rejected": Dataset.from_dict({"x": [9]})})
    assert load_dataset(str(a), split="train")["x"] == [1]
    save_hub_folder(b, {"default": Dataset.from_dict({"x": [2, 2]}), "rejected": Dataset.from_dict({"x": [9]})})
    assert load_dataset(str(b), split="train")["x"] == [2, 2]
    save_hub_folder(a, {"default": Dataset.from_dict({"x": [3, 3, 3]}), "rejected": Dataset.from_dict({"x": [8, 8]})})
    assert load_dataset(str(a), split="train")["x"] == [3, 3, 3]
    assert load_dataset(str(a), "rejected", split="train")["x"] == [8, 8]


def test_a_config_dropped_on_rewrite_leaves_no_stale_files(tmp_path):
    out = tmp_path / "corpus"
    save_hub_folder(out, {"default": Dataset.from_dict(ROWS), "rejected": Dataset.from_dict(ROWS)})
    assert list((out / "rejected").glob("*.parquet"))
    save_hub_folder(out, {"default": Dataset.from_dict(ROWS)})  # e.g. nothing was rejected this time
    assert not list((out / "rejected").glob("*.parquet"))  # nothing stale left to publish
    assert len(load_dataset(str(out), split="train")) == 2
    with pytest.raises(ValueError, match="rejected"):
        load_dataset(str(out), "rejected", split="train")
