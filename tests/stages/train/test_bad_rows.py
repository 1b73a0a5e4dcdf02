"""Training rows of the wrong shape: rejected with a count and a reason, or one input-error line (exit 2).

Before: a ``messages`` given as a string raised ``TypeError: string indices must be integers``, a message
without ``role`` raised ``KeyError: 'role'``, and a 10 MB message went on to tokenisation.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.schema import MAX_MESSAGE_CHARS
from cerbero_hf.stages.train.data import build_training_set

GOOD = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Salve!"}]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bad_rows_are_rejected_with_row_and_reason(tmp_path):
    rows = [
        {"id": "ok-0", "messages": GOOD, "source": "fauno"},
        {"id": "str", "messages": "ciao", "source": "fauno"},
        {"id": "norole", "messages": [{"content": "ciao"}, GOOD[1]], "source": "fauno"},
        {"id": "listcontent", "messages": [GOOD[0], {"role": "assistant", "content": ["lista", "x"]}]},
        {"id": "huge", "messages": [GOOD[0], {"role": "assistant", "content": "parola " * 1_500_000}]},
        {"id": ["a", "list"], "messages": GOOD},
        {"id": "badsource", "messages": GOOD, "source": {"name": "x"}},
        {"id": "ok-1", "messages": [{"role": "human", "content": "Ciao"}, {"role": "[|AI|]", "content": "Salve"}]},
    ]
    corpus = _jsonl(tmp_path / "fauno.jsonl", rows)
    ds, report = build_training_set([f"fauno={corpus}"], condition="fauno", seed=1)
    assert sorted(ds["id"]) == ["ok-0", "ok-1"]
    assert [(s["row"], s["id"], s["reason"]) for s in report["skipped"]] == [
        (1, "str", "column 'messages': must be a list, got str"),
        (2, "norole", "column 'messages': message 0 has no role"),
        (3, "listcontent", "column 'messages': message 1 content is a list, not a string"),
        (4, "huge", f"column 'messages': message 1 is 10,500,000 characters, over the limit of {MAX_MESSAGE_CHARS:,}"),
        (5, "fauno-5", "column 'id': is a list, not a string"),
        (6, "badsource", "column 'source': is an object, not a string"),
    ]
    assert report["corpora"][0]["rows_in"] == 8 and report["corpora"][0]["rows_rejected"] == 6
    assert report["corpora"][0]["rows_used"] == 2


@pytest.mark.parametrize("messages, reason", [
    ("ciao", "must be a list, got str"),
    ([{"content": "ciao"}], "message 0 has no role"),
])
def test_a_corpus_with_no_usable_row_names_file_row_and_column(tmp_path, messages, reason):
    corpus = _jsonl(tmp_path / "fauno.jsonl", [{"id": f"r{i}", "messages": messages} for i in range(3)])
    with pytest.raises(InputError) as err:
        build_training_set([f"fauno={corpus}"], condition="fauno")
    assert (err.value.file, err.value.row, err.value.column) == (str(corpus), 0, "messages")
    assert err.value.message == f"no usable rows (3 rejected); first: {reason}"


def test_cli_exits_2_with_one_line_before_training(tmp_path, cli_env):
    # the corpus is read before the model: a bad corpus fails fast, with no model needed
    corpus = _jsonl(tmp_path / "fauno.jsonl", [{"id": "a", "messages": "ciao"}, {"id": "b", "messages": "salve"}])
    proc = run_cli(["train", f"fauno={corpus}", tmp_path / "out", "--model", tmp_path / "no-model",
                    "--max-steps", "1"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: file {corpus}, row 0, column 'messages': no usable rows (2 rejected); first: must be a list, got str")
    assert not (tmp_path / "out").exists()
