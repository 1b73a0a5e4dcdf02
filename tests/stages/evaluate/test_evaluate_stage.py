"""The evaluate stage unit: its config checks (Python, recipe and CLI give the same errors) and run_evaluate
reading the train stage's typed result."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES, run_cli

from cerbero_hf.config import from_dict
from cerbero_hf.errors import InputError
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.evaluate.stage import STAGE, EvaluateConfig, parse_shots, run_evaluate
from cerbero_hf.stages.train.stage import TrainResult

FIX = FIXTURES / "eval"


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ["nope"]}, "unknown task 'nope'"),
    ({"tasks": []}, "at least one task"),
    ({"batch_size": 0}, "evaluate.batch_size must be >= 1, got 0"),
    ({"concurrency": 0}, "evaluate.concurrency must be >= 1"),
    ({"limit": 0}, "evaluate.limit must be >= 1"),
    ({"format": "alpaca"}, "unknown prompt format 'alpaca'"),
    ({"dtype": "int8"}, "evaluate.dtype must be float32, bfloat16 or float16"),
    ({"shots": "three"}, "evaluate.shots must be N or task=N"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        EvaluateConfig(**kwargs)
    assert err.value.column and err.value.column.startswith("evaluate.")


def test_recipe_keys_are_the_config_fields():
    config = from_dict(EvaluateConfig, {"tasks": "squad_it, ironita", "limit": 4, "stop": ["\\n"], "batch_size": 8},
                       defaults={"language": "it", "seed": 7})
    assert config.tasks == ["squad_it", "ironita"] and config.limit == 4 and config.seed == 7
    assert parse_shots("squad_it=2,ironita=4", config.tasks) == {"squad_it": 2, "ironita": 4}
    assert parse_shots("3", config.tasks) == {"squad_it": 3, "ironita": 3}
    with pytest.raises(InputError, match="unknown setting evaluate.batchsize"):
        from_dict(EvaluateConfig, {"batchsize": 8})
    assert STAGE.inputs == ("train",) and STAGE.folder == "eval" and STAGE.result.__name__ == "EvaluateResult"


def test_cli_bad_values_exit_2_with_one_line(tmp_path):
    for args, text in ((["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
                       (["--tasks", "squad_it,nope"], "unknown task 'nope'"),
                       (["--shots", "x=y"], "--shots must be N or task=N")):
        proc = run_cli(["evaluate", str(tmp_path / "no-model"), *args])
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_run_evaluate_reads_the_merged_model_and_updates_its_card(tiny_chat_lm, tmp_path):
    from huggingface_hub import ModelCard

    merged = tmp_path / "model" / "merged"
    shutil.copytree(tiny_chat_lm, merged)
    (merged / "README.md").write_text("---\nlicense: apache-2.0\n---\n# merged\n\nThe merged model.\n")
    ctx = Context(output=tmp_path / "eval", inputs={"train": TrainResult(model=str(tmp_path / "model"),
                                                                         merged=str(merged))})
    config = EvaluateConfig(tasks=["squad_it", "ironita"], data_dir=str(FIX), limit=2, max_new_tokens=8,
                            device="cpu", threads=1)
    result = run_evaluate(config, ctx)
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert result.results == str(tmp_path / "eval" / "results.json") and result.examples == 4
    assert doc["generator"]["model"] == str(merged)
    assert result.metrics == {"squad_it": "f1", "ironita": "macro_f1"}
    assert result.scores == {t: round(b["metrics"][b["headline"]], 2) for t, b in doc["tasks"].items()}
    card = ModelCard.load(merged / "README.md")
    assert {r.dataset_name for r in card.data.eval_results} == {"squad_it", "ironita"}
    assert "The merged model." in card.text
    assert result.counts() == {"examples": 4, "scores": result.scores, "metrics": result.metrics}
    assert result.outputs() == {"results": result.results}


def test_run_evaluate_needs_the_train_stage(tmp_path):
    with pytest.raises(InputError, match="needs the output of 'train'"):
        run_evaluate(EvaluateConfig(), Context(output=tmp_path / "eval"))
