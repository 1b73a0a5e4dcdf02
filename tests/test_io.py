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


@pytest.mark.parametrize("spec, hub", [("bad/missing.jsonl", False), ("data/leak.parquet", False), ("./x/y", False),
                                       ("~/x", False), ("user/corpus", True), ("user/model-v0.1", True),
                                       ("a/b/c", False)])
def test_a_path_like_name_is_never_a_hub_id(spec, hub):
    from cerbero_hf.io import is_hub_id

    assert is_hub_id(spec) is hub


def test_a_mistyped_local_path_is_no_such_file_without_asking_the_hub(hub_emulator, cli_env, tmp_path):
    """``refine bad/missing.jsonl``, ``score ...`` and ``train ...`` answer "no such file" at once: the Hub (here the
    emulator, where HF_ENDPOINT points) is never asked."""
    from conftest import run_cli

    env = dict(cli_env, HF_ENDPOINT=hub_emulator.endpoint, HF_HUB_OFFLINE="0")
    hub_emulator.reset_log()
    for argv in (["refine", "bad/missing.jsonl", tmp_path / "r"], ["score", "bad/missing.parquet", tmp_path / "s"],
                 ["train", "fauno=bad/missing.jsonl", tmp_path / "t"]):
        r = run_cli(argv, env=env, cwd=tmp_path)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.strip().splitlines() == [f"Error: file {argv[1].split('=')[-1]}: no such file or folder"], argv
    assert hub_emulator.requests() == []


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


def test_same_sized_rewrites_and_card_renders_never_load_stale_rows(tmp_path):
    """Rows of the same size give the same sizes in dataset_info: our reads (load_table, load_config) read the
    files themselves, load_dataset sees the data's sha256 in the card, and a card rendered over the folder (the
    published copies) keeps both."""
    from cerbero_hf.cards import dataset_card
    from cerbero_hf.io import load_config

    def write(folder, texts, rejected):
        save_hub_folder(folder, {"default": Dataset.from_dict({"t": texts}),
                                 "rejected": Dataset.from_dict({"t": rejected})})
        dataset_card(folder)  # what refine, score and publish do to a folder they wrote or copied

    a, b = tmp_path / "a" / "corpus", tmp_path / "b" / "corpus"
    write(a, ["aaa", "bbb"], ["zzz"])
    assert load_table(a)["t"] == ["aaa", "bbb"] and load_dataset(str(a), split="train")["t"] == ["aaa", "bbb"]
    write(a, ["ccc", "ddd"], ["yyy"])  # in place, same sizes
    assert load_table(a)["t"] == ["ccc", "ddd"] and load_dataset(str(a), split="train")["t"] == ["ccc", "ddd"]
    assert load_config(a, "rejected")["t"] == ["yyy"]
    assert load_dataset(str(a), "rejected", split="train")["t"] == ["yyy"]
    write(b, ["eee", "fff"], ["xxx"])  # another folder of the same name
    assert load_table(b)["t"] == ["eee", "fff"] and load_dataset(str(b), split="train")["t"] == ["eee", "fff"]
    assert "sha256" in (b / "README.md").read_text().split("\n---", 1)[0]


def test_a_config_dropped_on_rewrite_leaves_no_stale_files(tmp_path):
    out = tmp_path / "corpus"
    save_hub_folder(out, {"default": Dataset.from_dict(ROWS), "rejected": Dataset.from_dict(ROWS)})
    assert list((out / "rejected").glob("*.parquet"))
    save_hub_folder(out, {"default": Dataset.from_dict(ROWS)})  # e.g. nothing was rejected this time
    assert not list((out / "rejected").glob("*.parquet"))  # nothing stale left to publish
    assert len(load_dataset(str(out), split="train")) == 2
    with pytest.raises(ValueError, match="rejected"):
        load_dataset(str(out), "rejected", split="train")


# --- bad bytes, malformed and wrong-type lines: one line naming file, row and column -----------------------

GOOD = '{"id": "a", "text": "ciao", "irony": 0}\n{"id": "b", "text": "salve", "irony": 1}\n'


BAD_LINES = [  # (name, bytes of a third line, expected row, expected column, message fragment)
    ("utf8", b'{"id": "c", "text": "caf\xe9", "irony": 0}\n', 2, "text", "invalid UTF-8 byte 0xe9"),
    ("malformed", b'{"id": "c", "text": "ciao", "irony": 0\n', 2, "irony", "not valid JSON"),
    ("wrong_type", b'{"id": "c", "text": "ciao", "irony": "boh"}\n', 2, "irony",
     "a string where row 0 has a number"),
]


@pytest.mark.parametrize("layout, case", [(layout, case) for layout in ("file", "folder") for case in range(3)
                                          if layout == "folder" or case < 2])
def test_bad_lines_name_file_row_and_column(tmp_path, layout, case):
    # A wrong-type line in a single file loads (as Json values, for the stage's row check to reject); in a
    # folder datasets fails on it with a DatasetGenerationError that names neither row nor column.
    name, line, row, column, fragment = BAD_LINES[case]
    folder = tmp_path / name
    folder.mkdir()
    if layout == "folder":
        (folder / "train.jsonl").write_text(GOOD, encoding="utf-8")
    bad = folder / "test.jsonl"
    bad.write_bytes(GOOD.encode() + line)
    with pytest.raises(InputError) as err:
        ds = load_table(folder if layout == "folder" else bad, split="test")
        list(ds)  # a bad byte that slipped through would only fail here, as a UnicodeDecodeError
    assert (err.value.file, err.value.row, err.value.column) == (str(bad), row, column), str(err.value)
    assert fragment in err.value.message
    assert "\n" not in str(err.value) and "DatasetGenerationError" not in str(err.value)


@pytest.mark.parametrize("suffix, row, column", [(".jsonl", 2, "text"), (".csv", None, None)])
def test_a_bad_byte_is_placed_by_line_and_byte_column(tmp_path, suffix, row, column):
    # the check reads a line at a time: the place must still count the lines and bytes before it
    path = tmp_path / f"bad{suffix}"
    third = b'{"id": "c", "text": "caf\xe9"}\n' if suffix == ".jsonl" else b'c,"caf\xe9"\n'
    head = ('{"id": "a", "text": "perch\u00e9"}\n{"id": "b", "text": "s\u00ec"}\n' if suffix == ".jsonl"
            else "id,text\na,perch\u00e9\n")
    path.write_bytes(head.encode() + third)
    with pytest.raises(InputError) as err:
        load_table(path)
    line = 3
    assert err.value.message == f"invalid UTF-8 byte 0xe9 at line {line}, byte column {third.index(0xe9) + 1}"
    assert (err.value.row, err.value.column) == (row, column)


def test_mixed_lists_and_strings_load_for_the_stage_to_reject(tmp_path):
    # datasets reads a column holding lists and strings as Json values: the stage's row check decides
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": "a", "text": "ciao"}\n{"id": "b", "text": ["lista", "non stringa"]}\n', encoding="utf-8")
    assert load_table(path)["text"] == ["ciao", ["lista", "non stringa"]]


def test_a_list_after_a_large_chunk_is_not_turned_into_text(tmp_path):
    # datasets reads JSON lines in chunks: when the first chunk fixes `text` as a string, a later list became
    # the string '["lista","non stringa"]' (silent corruption the stage could not see)
    path = tmp_path / "big.jsonl"
    rows = [{"id": "a", "text": "parola " * 1_500_000, "n": 1}, {"id": "b", "text": ["lista", "non stringa"], "n": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_table(path)
    assert ds["id"] == ["a", "b"] and ds["n"] == [1, 2]
    assert ds[1]["text"] == ["lista", "non stringa"] and len(ds[0]["text"]) == 10_500_000


def test_a_type_clash_across_a_folders_files_names_both(tmp_path):
    (tmp_path / "test.jsonl").write_text('{"id": "b", "irony": "no"}\n{"id": "c", "irony": "yes"}\n', encoding="utf-8")
    (tmp_path / "train.jsonl").write_text('{"id": "a", "irony": 0}\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_table(tmp_path, split="test")
    assert str(err.value) == f"file {tmp_path / 'train.jsonl'}, row 0, column 'irony': a number where " \
        f"{tmp_path / 'test.jsonl'} row 0 has a string"
