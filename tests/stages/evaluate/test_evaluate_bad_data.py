"""``evaluate --data-dir`` on broken task files: one line naming file, row and column, exit 2, before any model
is loaded.

Before: a non-UTF-8 byte raised ``UnicodeDecodeError`` (a traceback), a malformed or wrong-type line gave
``DatasetGenerationError`` naming neither row nor column, and a list where the text belongs was sent to the
model as its Python repr.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.stages.evaluate.tasks import evaluation_settings, load_examples, task_configs

FIX = FIXTURES / "eval"


def _data_dir(tmp_path, task: str, splits: tuple, edit) -> tuple:
    """A copy of the fixture tasks whose ``<task>/<split>.jsonl`` files have their lines passed through ``edit``;
    returns the folder and the first edited file."""
    data = tmp_path / "eval"
    shutil.copytree(FIX, data)
    for split in splits:
        path = data / task / f"{split}.jsonl"
        path.write_bytes(b"".join(edit(path.read_bytes().splitlines(keepends=True))))
    return data, data / task / f"{splits[0]}.jsonl"


def _replace(rows, change):
    """Edit the JSON of lines ``rows`` (None: every line) with ``change(obj)``."""
    def edit(lines):
        out = []
        for i, line in enumerate(lines):
            if rows is None or i in rows:
                obj = json.loads(line)
                change(obj)
                line = json.dumps(obj, ensure_ascii=False).encode() + b"\n"
            out.append(line)
        return out
    return edit


CASES = {  # task, edited splits, edit, expected row, column, message fragment
    "non_utf8": ("ironita", ("test",), lambda lines: [lines[0].replace("è".encode(), b"\xe8")] + lines[1:],
                 0, "text", "invalid UTF-8 byte 0xe8"),
    "malformed": ("ironita", ("test",), lambda lines: lines[:5] + [lines[5].rstrip()[:-1] + b"\n"] + lines[6:],
                  5, "sarcasm", "line 6 is not valid JSON"),
    "wrong_type": ("ironita", ("test",), _replace({7}, lambda o: o.update(irony="boh")), 7, "irony",
                   "a string where row 0 has a number"),
    "list_text_in_every_row": ("sentipolc", ("test", "train"), _replace(None, lambda o: o.update(text=[o["text"]])),
                               0, "text", "task sentipolc: text is a list, expected a string"),
    "string_answers": ("squad_it", ("test", "train"),
                       _replace(None, lambda o: o["answers"].update(text=o["answers"]["text"][0])), 0, "answers",
                       "task squad_it: answers.text is a string, expected a list of strings"),
    "list_label": ("ironita", ("test", "train"), _replace(None, lambda o: o.update(irony=[o["irony"]])), 0, "irony",
                   "task ironita: irony is a list, expected a string or a number"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_task_files_name_file_row_and_column(tmp_path, case):
    task_name, splits, edit, row, column, fragment = CASES[case]
    data, path = _data_dir(tmp_path, task_name, splits, edit)
    task = task_configs([task_name], evaluation_settings("it"), data_dir=data)[0]
    with pytest.raises(InputError) as err:
        load_examples(task, splits[0])
    assert (err.value.file, err.value.row, err.value.column) == (str(path), row, column), str(err.value)
    assert fragment in err.value.message and "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["non_utf8", "malformed", "wrong_type", "list_text_in_every_row"])
def test_cli_exits_2_with_one_line_before_loading_the_model(tmp_path, cli_env, case):
    task_name, splits, edit, row, column, fragment = CASES[case]
    data, path = _data_dir(tmp_path, task_name, splits, edit)
    proc = run_cli(["evaluate", tmp_path / "no-model", "--data-dir", data, "--tasks", task_name,
                    "--output", tmp_path / "results.json"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "DatasetGenerationError" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: file {path}, row {row}, column '{column}': ") and fragment in last, last
    assert not (tmp_path / "results.json").exists()
