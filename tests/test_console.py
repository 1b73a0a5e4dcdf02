"""The console of ``cerbero-hf run`` / ``demo``: one line per stage, our own bars and rows, libraries quiet
unless ``--verbose``, and a closing table that fits 80 columns and says ``cached`` for stages it did not run."""

from __future__ import annotations

import io
import warnings

import pytest
import yaml
from conftest import ROOT, run_cli

from cerbero_hf.cli._console import StageConsole, calm_libraries, short_counts, train_row
from cerbero_hf.recipe import STAGES

DATA = ROOT / "cerbero_hf" / "data"


def _warn(module: str) -> None:
    warnings.warn_explicit("`x` is deprecated", FutureWarning, "lib.py", 1, module=module)


def test_library_bars_logs_and_warnings_are_quiet_unless_verbose(tiny_mlm, capfd):
    import datasets
    import huggingface_hub.utils as hub_utils
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    # start from a fresh process's state (in-process stage runs of earlier tests may have turned bars off)
    datasets.enable_progress_bars()
    hub_utils.enable_progress_bars()
    hf_logging.enable_progress_bar()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with calm_libraries(verbose=False):
            assert not datasets.is_progress_bar_enabled() and hub_utils.are_progress_bars_disabled()
            AutoModelForMaskedLM.from_pretrained(tiny_mlm)
            _warn("transformers.modeling_utils")
            _warn("cerbero_hf.stages.x")  # ours are never hidden
        quiet = capfd.readouterr().err
        with calm_libraries(verbose=True):
            AutoModelForMaskedLM.from_pretrained(tiny_mlm)
            _warn("transformers.modeling_utils")
        loud = capfd.readouterr().err
    assert "Loading weights" not in quiet and "Loading weights" in loud
    # the two that show: ours (quiet) and the library's (verbose); a ResourceWarning is left out: the garbage
    # collector may close an earlier test's event loop ("unclosed event loop", asyncio) at any moment
    shown = [w.filename for w in seen if not issubclass(w.category, ResourceWarning)]
    assert shown == ["lib.py", "lib.py"]
    assert datasets.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()  # restored


def test_trainer_logs_become_rows_and_stages_report_as_they_work():
    from transformers import TrainerControl, TrainerState

    from cerbero_hf.stages.train.trainer import event_callback

    events = []
    callback = event_callback(lambda event, stats: events.append((event, stats)))
    state = TrainerState(global_step=10, max_steps=60)
    callback.on_train_begin(None, state, TrainerControl())
    callback.on_log(None, state, TrainerControl(), logs={"loss": 6.633, "grad_norm": 0.59, "learning_rate": 1e-3,
                                                          "num_tokens": 816.0, "epoch": 0.01})
    callback.on_log(None, state, TrainerControl(), logs={"train_runtime": 2.7})  # no loss: no row
    assert [e for e, _ in events] == ["train_begin", "log"]
    stats = events[-1][1]
    assert stats["loss"] == 6.633 and stats["learning_rate"] == 1e-3 and stats["tokens_per_second"] > 0
    assert train_row(stats).startswith("step 10/60  loss 6.6330  lr 1.00e-03  ")
    assert train_row(stats).endswith(" tokens/s")

    from rich.console import Console

    with StageConsole(STAGES, Console(file=io.StringIO(), width=80, force_terminal=True)) as live:
        live.on_stage("score", "running")
        for done in (0.5, 3.0):
            live.on_event("score", "scoring", {"corpus": "refined", "done": done, "total": 6})
            task = live._progress.tasks[0]
            assert (task.completed, task.total) == (done, 6)  # our bar moves with every batch
        live.on_stage("score", "done")
        assert not live._progress.tasks

    out = io.StringIO()  # not a terminal (a log file): progress lines instead of the live line
    with StageConsole(STAGES, Console(file=out, width=80), every=0) as shown:
        shown.on_stage("score", "running")
        for done in (0.5, 3.0, 6.0):
            shown.on_event("score", "scoring", {"corpus": "refined", "done": done, "total": 6})
        shown.on_stage("score", "done")
        shown.on_stage("train", "running")
        shown.on_event("train", "log", stats)
        shown.on_stage("train", "done")
    text = out.getvalue()
    assert "[4/8] score    scoring refined rows 3/6" in text  # not a terminal: a progress line as it works
    assert "[4/8] score    done" in text and "[6/8] train    done" in text
    assert "step 10/60  loss 6.6330" in text and "{'loss'" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_counts_fit_one_short_line():
    counts = {"input": 400, "kept": 366, "removed": {"schema": 2, "duplicates": 18}, "model": "x", "mean_nll": 6.17031,
              "train_loss": 6.649853229522705, "skipped": None, "scores": {"squad_it": 0.5, "ironita": 0.25}}
    assert short_counts(counts) == ("input 400, kept 366, removed 20, mean_nll 6.17, train_loss 6.65, "
                                    "scores squad_it=0.5 ironita=0.25")


def _light_recipe(tmp_path) -> dict:
    off = {s: {"enabled": False} for s in STAGES}
    return {**off, "output_dir": str(tmp_path / "run"), "seeds": {"input": str(DATA / "oasst_sample_it.jsonl")},
            "refine": {"inputs": [str(DATA / "fauno_sample.jsonl")], "license": "apache-2.0"}}


def test_run_prints_one_line_per_stage_and_a_table_of_80_columns_with_cached_stages(tmp_path, cli_env):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_light_recipe(tmp_path)))
    env = dict(cli_env, COLUMNS="80")
    first = run_cli(["run", recipe], env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stderr.splitlines()
    assert any(line.startswith("[1/8] seeds    done ") for line in lines), first.stderr
    assert any(line.startswith("[3/8] refine   done ") for line in lines), first.stderr
    assert "[2/8] generate skipped" in lines
    assert "bound method" not in first.stderr and "it/s" not in first.stderr
    assert all(len(line) <= 80 for line in first.stdout.splitlines()), first.stdout
    rows = {line.split()[0]: line for line in first.stdout.splitlines() if line.strip().split()[:1] in [[s] for s in STAGES]}
    assert set(rows) == set(STAGES)
    assert " done " in rows["refine"] and " s " in rows["refine"] and "kept 366" in rows["refine"]

    second = run_cli(["run", recipe], env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert all(len(line) <= 80 for line in second.stdout.splitlines()), second.stdout
    rows = {line.split()[0]: line for line in second.stdout.splitlines() if line.strip().split()[:1] in [[s] for s in STAGES]}
    for stage in ("seeds", "refine"):
        assert rows[stage].split()[1] == "cached" and " s " not in rows[stage], rows[stage]
    assert rows["train"].split()[1] == "skipped"
    assert any(line.startswith("[3/8] refine   cached ") for line in second.stderr.splitlines())
    assert "manifest.json" in second.stderr


@pytest.mark.parametrize("command", ["run", "demo"])
def test_verbose_is_a_flag_of_run_and_demo(command):
    res = run_cli([command, "--help"])
    assert res.returncode == 0 and "--verbose" in res.stdout
