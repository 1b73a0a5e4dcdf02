"""Seeds: OASST trees -> root-to-leaf seed conversations (paper §3.2, D10)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import FIXTURES, ROOT, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.schema import MAX_MESSAGE_CHARS, get_meta, row_problem
from cerbero_hf.stages.seeds.oasst import build_seeds, seeds_from_oasst

FIXTURE = FIXTURES / "oasst_sample.jsonl"
DEMO = ROOT / "cerbero_hf" / "data" / "oasst_sample_it.jsonl"


def _rows(path=FIXTURE):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_fixture_paths_trees_and_drops_are_exact():
    # The fixture (written by hand): Italian trees a1 (3 leaves, one deleted reply), b1 (an English
    # reply whose subtree is orphaned), d1 (a lone question), h1 (lang "IT", one empty reply);
    # English tree c1 with an Italian reply; orphans e2/e3 (parent absent); f1 an assistant root.
    result = build_seeds(_rows(), "it")
    assert result.trees == 4
    assert [p["id"] for p in result.paths] == ["oasst-a6", "oasst-a5", "oasst-a3", "oasst-b3", "oasst-d1",
                                               "oasst-h2", "oasst-h4"]
    assert [get_meta(p)["message_ids"] for p in result.paths][:3] == [["a1", "a2", "a4", "a6"],
                                                                     ["a1", "a2", "a4", "a5"], ["a1", "a3"]]
    assert len(result.messages) == 13
    rules = {r["id"]: r["rule"] for r in result.rejected}
    assert rules == {"a7": "deleted", "b4": "language", "c1": "language", "c2": "language", "c3": "language",
                     "b5": "orphan", "b6": "orphan", "c4": "orphan", "e2": "orphan", "e3": "orphan", "f2": "orphan",
                     "f1": "invalid", "h3": "invalid"}
    reasons = {r["id"]: r["reason"] for r in result.rejected}
    assert reasons["b5"] == "parent 'b4' was dropped (language)"
    assert reasons["b6"] == "ancestor 'b4' was dropped (language)"
    assert reasons["e2"] == "parent 'e1' is not in the table"
    assert reasons["f1"] == "tree root is not a prompter message"
    assert result.counts() == {"trees": 4, "messages": 13, "paths": 7, "rejected (deleted)": 1,
                               "rejected (invalid)": 2, "rejected (language)": 4, "rejected (orphan)": 6}


def test_nothing_lost_and_paths_are_real_root_to_leaf_chains():
    rows = _rows()
    by_id = {r["message_id"]: r for r in rows}
    result = build_seeds(rows, "it")
    kept = [m["id"] for m in result.messages]
    assert sorted(kept + [r["id"] for r in result.rejected]) == sorted(by_id)
    assert not set(kept) & {r["id"] for r in result.rejected}
    on_paths = set()
    for path in result.paths:
        assert row_problem(path) is None
        meta = get_meta(path)
        ids = meta["message_ids"]
        assert by_id[ids[0]]["parent_id"] is None
        assert all(by_id[c]["parent_id"] == p for p, c in zip(ids, ids[1:]))
        assert not any(by_id[m]["parent_id"] == ids[-1] and m in kept for m in by_id)  # a leaf
        assert [m["role"] for m in path["messages"]] == ["user", "assistant"] * (len(ids) // 2) + ["user"] * (len(ids) % 2)
        assert [m["content"] for m in path["messages"]] == [by_id[i]["text"] for i in ids]
        assert meta["origin"] == ["seed"] * len(ids) and path["source"] == "oasst"
        on_paths.update(ids)
    assert on_paths == set(kept)  # D10: the store seed set is exactly the messages of the paths
    per_tree = Counter(get_meta(p)["tree_id"] for p in result.paths)
    for tree, n in per_tree.items():
        assert sorted(get_meta(p)["path_index"] for p in result.paths if get_meta(p)["tree_id"] == tree) == list(range(n))


def test_other_language_selects_other_trees():
    result = build_seeds(_rows(), "en")
    assert [get_meta(p)["message_ids"] for p in result.paths] == [["c1", "c2"], ["c1", "c3"]]
    reasons = {r["id"]: r["reason"] for r in result.rejected}
    assert reasons["c4"] == "lang='it', not 'en'"
    assert reasons["b4"] == "parent 'b1' was dropped (language)"


def test_bad_tables_raise_input_error():
    with pytest.raises(InputError, match="missing column"):
        build_seeds([{"message_id": "x", "text": "ciao"}], "it")
    rows = _rows()[:2] + [_rows()[0]]
    with pytest.raises(InputError, match="duplicate message_id 'a1'") as err:
        build_seeds(rows, "it")
    assert err.value.row == 2


def test_transform_returns_three_configs_in_schema():
    dd = seeds_from_oasst(_rows(), "it")
    assert {k: len(v) for k, v in dd.items()} == {"default": 7, "messages": 13, "rejected": 13}
    assert set(dd["rejected"].column_names) >= {"rule", "reason"}


def test_demo_sample_has_many_italian_trees_and_paths():
    # Bundled for the offline demo: 21 Italian trees (5 with 2 leaves, 11 with 3, 5 with 4) plus
    # English, Spanish and German trees holding three Italian replies (orphans).
    result = build_seeds(_rows(DEMO), "it")
    assert result.trees == 21
    assert len(result.paths) == 63
    assert Counter(r["rule"] for r in result.rejected) == {"language": 12, "orphan": 3}
    texts = [m["messages"][0]["content"] for m in result.messages]
    assert len(set(texts)) == len(texts)


def test_cli_writes_hub_folder_with_rejected(tmp_path, cli_env):
    from datasets import load_dataset

    out = tmp_path / "seeds"
    proc = run_cli(["seeds", FIXTURE, out, "--language", "it"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "paths" in proc.stdout and "7" in proc.stdout
    paths = load_dataset(str(out), split="train")
    rejected = load_dataset(str(out), "rejected", split="train")
    messages = load_dataset(str(out), "messages", split="train")
    assert len(paths) == 7
    assert sorted(list(messages["id"]) + list(rejected["id"])) == sorted(r["message_id"] for r in _rows())
    assert "language: lang='en', not 'it'" in {f"{r['rule']}: {r['reason']}" for r in rejected}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"message_id": "x", "text": "ciao"}\n', encoding="utf-8")
    proc = run_cli(["seeds", bad, tmp_path / "o2"], env=cli_env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1:] == [f"Error: file {bad}, column 'parent_id': not an OASST message table: "
                                                "missing column(s) parent_id, role, lang"]


def test_a_clean_subset_writes_a_folder_that_loads(tmp_path, cli_env):
    """Nothing rejected (every message Italian, every parent there): the folder is written and loads; the empty
    ``rejected`` config is kept with its schema and read by ``load_config`` (datasets cannot load an empty split)."""
    from datasets import load_dataset

    from cerbero_hf.io import load_config

    clean = tmp_path / "clean.jsonl"
    rows = [{"message_id": "r", "parent_id": None, "role": "prompter", "lang": "it", "text": "Ciao, come stai?"},
            {"message_id": "a", "parent_id": "r", "role": "assistant", "lang": "it", "text": "Bene, grazie!"}]
    clean.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "seeds"
    proc = run_cli(["seeds", clean, out, "--language", "it"], env=cli_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(load_dataset(str(out), split="train")) == 1
    assert len(load_dataset(str(out), "messages", split="train")) == 2
    rejected = load_config(out, "rejected")
    assert len(rejected) == 0 and {"rule", "reason"} <= set(rejected.column_names)


# --- wrong types and oversized messages: rejected rows with a reason, never converted ----------------------

def _tree(**changes):
    """A two-message Italian tree (q1 -> r1) plus a reply r2 whose fields ``changes`` overrides."""
    rows = [{"message_id": "q1", "parent_id": None, "role": "prompter", "lang": "it", "text": "Domanda?"},
            {"message_id": "r1", "parent_id": "q1", "role": "assistant", "lang": "it", "text": "Risposta."},
            {"message_id": "r2", "parent_id": "q1", "role": "assistant", "lang": "it", "text": "Altra risposta."}]
    rows[2].update(changes)
    return rows


@pytest.mark.parametrize("changes, rule, reason", [
    ({"text": ["lista", "non stringa"]}, "invalid", "text is a list, not a string"),
    ({"text": 42}, "invalid", "text is a number, not a string"),
    ({"role": ["assistant"]}, "invalid", "role is a list, not a string"),
    ({"lang": ["it"]}, "invalid", "lang is a list, not a string"),
    ({"parent_id": ["q1"]}, "invalid", "parent_id is a list, not a string"),
    ({"deleted": "no"}, "invalid", "deleted is a string, not a boolean"),
    ({"deleted": 1}, "deleted", "marked deleted in the source table"),
    ({"message_tree_id": {"id": "q1"}}, "invalid", "message_tree_id is an object, not a string"),
    ({"text": "x" * (MAX_MESSAGE_CHARS + 1)}, "too_long",
     f"text is {MAX_MESSAGE_CHARS + 1:,} characters, over the limit of {MAX_MESSAGE_CHARS:,}"),
])
def test_wrong_types_and_oversized_texts_are_rejected_with_a_reason(changes, rule, reason):
    result = build_seeds(_tree(**changes), "it")
    assert [(r["id"], r["rule"], r["reason"]) for r in result.rejected] == [("r2", rule, reason)]
    assert [p["id"] for p in result.paths] == ["oasst-r1"] and [m["id"] for m in result.messages] == ["q1", "r1"]
    texts = [m["content"] for row in result.paths + result.messages for m in row["messages"]]
    assert not any("lista" in t or "42" in t for t in texts)


def test_a_list_message_id_names_row_and_column():
    with pytest.raises(InputError, match="message_id is a list, not a string") as err:
        build_seeds(_tree(message_id=["r2"]), "it")
    assert (err.value.row, err.value.column) == (2, "message_id")


def test_cli_rejects_a_list_text_and_a_10_mb_message(tmp_path, cli_env):
    from datasets import load_dataset

    rows = _rows()
    by_id = {r["message_id"]: r for r in rows}
    by_id["a5"]["text"] = ["lista", "non stringa"]  # a leaf: its path goes, the others stay
    by_id["a3"]["text"] = "parola " * 1_500_000  # 10.5 MB, a leaf too
    src = tmp_path / "oasst.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "seeds"
    proc = run_cli(["seeds", src, out, "--language", "it"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    paths = load_dataset(str(out), split="train")
    rejected = {r["id"]: r for r in load_dataset(str(out), "rejected", split="train")}
    assert rejected["a5"]["rule"] == "invalid" and rejected["a5"]["reason"] == "text is a list, not a string"
    assert rejected["a5"]["messages"][0]["content"] == '["lista", "non stringa"]'  # the raw value, as JSON
    assert rejected["a3"]["rule"] == "too_long" and rejected["a3"]["reason"].startswith("text is 10,500,000 characters")
    contents = [m["content"] for row in paths for m in row["messages"]]
    assert "['lista', 'non stringa']" not in contents and max(map(len, contents)) < 1000
    assert "oasst-a5" not in paths["id"] and "oasst-a3" not in paths["id"]
