"""``cerbero-hf refine`` and ``cerbero-hf demo`` through the real CLI (subprocesses), bad input included."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, run_cli


def test_refine_cli_writes_a_loadable_folder_and_prints_the_report(tmp_path, cli_env):
    out = tmp_path / "refined"
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out, "--license", "gpl-3.0"], env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "4 of 8 conversations kept" in res.stdout and "duplicates" in res.stdout
    from datasets import load_dataset

    assert len(load_dataset(str(out), split="train")) == 4
    assert sorted(load_dataset(str(out), "rejected", split="train")["rule"]) == ["duplicates", "empty", "schema",
                                                                                "turn_order"]
    assert "license: gpl-3.0" in (out / "README.md").read_text(encoding="utf-8")
    # the report table: one row per rule, in the order of the rule list
    from cerbero_hf.stages.refine.rules import default_rules, report_names

    names = report_names(default_rules())
    rows = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("│") and
            line.split()[1] in names]
    assert rows == names


def test_an_unknown_lang_action_is_one_line_naming_the_flag(tmp_path, cli_env):
    path = _write(tmp_path / "ok.jsonl", b'{"input": "[|Umano|] Ciao\\n[|AI|] Salve"}\n')
    res = run_cli(["refine", path, tmp_path / "out", "--lang-action", "nope"], env=cli_env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "Error: --lang-action must be flag, drop-message or drop-conversation, got 'nope'"]
    assert not (tmp_path / "out").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, args, needle", [
    ("missing.jsonl", None, [], "no such file or folder"),
    ("corpus.txt", b"ciao\n", [], "unknown format '.txt'"),
    ("nocol.jsonl", b'{"foo": "bar"}\n', [], "column 'messages': no 'messages' column and no transcript column"),
    ("type.jsonl", b'{"id": "a", "messages": 3}\n', [], "column 'messages': has type"),
    ("latin1.jsonl", '{"input": "[|Umano|] perch\xe9"}\n'.encode("latin-1"), [],
     "row 0, column 'input': invalid UTF-8 byte 0xe9"),
    ("empty.jsonl", b"", [], "empty dataset (0 rows)"),
    ("ok.jsonl", b'{"input": "x"}\n', ["--lang-action", "delete"],
     "--lang-action must be flag, drop-message or drop-conversation, got 'delete'"),
    ("ok.jsonl", b'{"input": "x"}\n', ["--num-proc", "0"], "--num-proc must be >= 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, cli_env, name, data, args, needle):
    path = tmp_path / name
    if data == "parquet":
        from datasets import Dataset

        Dataset.from_dict({"messages": []}).to_parquet(str(path))
    elif data is not None:
        _write(path, data)
    res = run_cli(["refine", path, tmp_path / "out", *args], env=cli_env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert needle in lines[0]
    if name != "ok.jsonl":
        assert str(path) in lines[0]  # names the file
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, cli_env):
    res = run_cli(["--debug", "refine", tmp_path / "missing.jsonl", tmp_path / "out"], env=cli_env)
    assert res.returncode != 0 and "Traceback" in res.stderr and "InputError" in res.stderr


def test_cli_import_is_light():
    code = ("import sys, cerbero_hf.cli; heavy = [m for m in ('torch', 'transformers', 'datasets', 'lingua') "
            "if m in sys.modules]; print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
