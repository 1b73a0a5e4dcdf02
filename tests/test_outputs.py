"""Output folders (cerbero_hf/outputs.py): an output never overlaps an input, a folder of other people's files
needs --overwrite, and one run at a time holds an output (a second one exits 2 naming the first one's PID)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.outputs import LOCK_NAME, ours, prepare_output

OASST = FIXTURES / "oasst_sample.jsonl"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _seeds(path: Path) -> Path:
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.seeds.stage import SeedsConfig, run_seeds

    run_seeds(SeedsConfig(input=str(OASST), language="it"), Context(output=path))
    return path


# -- overlapping input and output ------------------------------------------------------------------------

def test_generate_into_its_own_seeds_folder_is_refused_and_the_seeds_survive(tgi_server, tiny_embedder, tmp_path,
                                                                             cli_env):
    seeds = _seeds(tmp_path / "seeds_inplace")
    before = _digest(seeds)
    assert (seeds / "messages").is_dir()  # the config generate's write used to delete
    tgi_server.reset()
    res = run_cli(["generate", seeds, seeds, "--endpoint", tgi_server.url, "--mode", "completion", "--embedder",
                   tiny_embedder, "--max-new-tokens", "4", "--lengths", "4", "--no-resume"], env=cli_env, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [f"Error: file {seeds}: the output folder is the input {seeds}: writing it "
                                               "would destroy the input; choose another output folder"]
    assert _digest(seeds) == before and tgi_server.log == []  # nothing written, nothing sent


def test_refine_into_its_own_input_keeps_the_rejected_rows(tmp_path, cli_env):
    out = tmp_path / "X"
    assert run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out], env=cli_env).returncode == 0
    before = _digest(out)
    assert (out / "rejected").is_dir()
    res = run_cli(["refine", out, out], env=cli_env)
    assert res.returncode == 2 and "the output folder is the input" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _digest(out) == before


def test_an_output_inside_or_around_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "rows.jsonl").write_text('{"x": 1}\n')
    for output, inputs, how in [(data / "out", [data], "is inside the input"),
                                (tmp_path, [data / "sub" / "rows.jsonl"], "contains the input"),
                                (data / "sub", [f"fauno={data / 'sub'}@2"], "is the input"),  # a train corpus spec
                                (tmp_path / "link", [data], "is the input")]:
        if output.name == "link":
            output.symlink_to(data)
        with pytest.raises(InputError, match=how) as err:
            prepare_output(output, inputs)
        assert err.value.file == str(output)
    assert not (data / "out").exists()
    with prepare_output(tmp_path / "new", ["OpenAssistant/oasst1", None, data]):  # Hub ids and None: not paths
        assert (tmp_path / "new" / LOCK_NAME).read_text() == str(os.getpid())
    assert not (tmp_path / "new").exists()  # created, nothing written: removed again


def test_the_recipe_refuses_a_stage_reading_its_own_output(tmp_path):
    from cerbero_hf.recipe import NAMES, parse_recipe, run_recipe
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.refine.stage import RefineConfig, run_refine

    refined = tmp_path / "run" / "refined"
    run_refine(RefineConfig(inputs=[str(FIXTURES / "fauno_raw.jsonl")]), Context(output=refined))
    before = _digest(refined)
    recipe = parse_recipe({**{s: {"enabled": False} for s in NAMES}, "output_dir": str(tmp_path / "run"),
                           "refine": {"enabled": True, "inputs": [str(refined)]}})
    with pytest.raises(InputError, match="the output folder is the input"):
        run_recipe(recipe)
    assert _digest(refined) == before


# -- other people's files --------------------------------------------------------------------------------

def test_a_folder_of_other_files_needs_overwrite_and_keeps_them(tmp_path, cli_env):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    res = run_cli(["seeds", OASST, out], env=cli_env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"Error: file {out}: the output folder holds files cerbero-hf did not write (notes.txt): choose a new or empty "
        "folder, or pass --overwrite to write into it anyway"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    res = run_cli(["seeds", OASST, out, "--overwrite"], env=cli_env)
    assert res.returncode == 0, res.stderr
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "README.md").is_file()
    assert ours(out) and not (out / LOCK_NAME).exists()
    res = run_cli(["seeds", OASST, out], env=cli_env)  # now ours: replaced as before, no flag needed
    assert res.returncode == 0, res.stderr
    res = run_cli(["seeds", OASST, FIXTURES / "fauno_raw.jsonl"], env=cli_env)
    assert res.returncode == 2 and "is a file, not a folder" in res.stderr


def test_another_stages_folder_or_other_settings_need_overwrite(tmp_path, cli_env):
    seeds = _seeds(tmp_path / "seeds")
    before = _digest(seeds)
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", seeds], env=cli_env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"Error: file {seeds}: the output folder holds the output of the seeds stage, which refine would replace: "
        "choose another output folder, or pass --overwrite to replace it"]
    assert _digest(seeds) == before  # nothing replaced

    out = tmp_path / "refined"
    assert run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out], env=cli_env).returncode == 0
    written = _digest(out)
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out, "--lang-action", "drop-message"], env=cli_env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"Error: file {out}: the output folder holds a refine run with other settings (lang_action \"flag\" -> "
        "\"drop-message\"): choose another output folder, or pass --overwrite to replace it"]
    assert _digest(out) == written
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out, "--num-proc", "2"], env=cli_env)
    assert res.returncode == 0, res.stderr  # a setting of speed only: the same run again
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", out, "--lang-action", "drop-message", "--overwrite"], env=cli_env)
    assert res.returncode == 0, res.stderr
    res = run_cli(["refine", FIXTURES / "fauno_raw.jsonl", seeds, "--overwrite"], env=cli_env)
    assert res.returncode == 0, res.stderr


def test_the_recipe_reruns_a_stage_whose_settings_changed(tmp_path):
    from cerbero_hf.recipe import load_recipe, run_recipe

    recipe = tmp_path / "recipe.yaml"
    text = (f"output_dir: {tmp_path / 'run'}\nseeds:\n  input: {OASST}\n"
            "generate: {enabled: false}\nrefine:\n  inputs: [" + str(FIXTURES / "fauno_raw.jsonl") + "]\n"
            "  lang_action: {action}\nscore: {enabled: false}\nfilter: {enabled: false}\n"
            "train: {enabled: false}\nevaluate: {enabled: false}\n")
    for action in ("flag", "drop-message"):
        recipe.write_text(text.replace("{action}", action))
        manifest = run_recipe(load_recipe(recipe))
        assert manifest.data["stages"]["refine"]["config"]["lang_action"] == action


def test_what_counts_as_ours(tmp_path):
    cases = {"card": ("README.md", "---\ntags:\n- cerbero-hf\n---\n# x\n"),
             "manifest": ("manifest.json", '{"stages": {}}'), "train": ("cerbero_train.json", "{}"),
             "eval": ("results.json", '{"model": "m", "tasks": {}}')}
    for name, (file, text) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(text)
        assert ours(tmp_path / name), name
    (tmp_path / "score" / ".score-partial").mkdir(parents=True)
    assert ours(tmp_path / "score")
    (tmp_path / "crashed" / "checkpoint-5").mkdir(parents=True)  # a run of ours killed before its first card
    (tmp_path / "crashed" / LOCK_NAME).write_text("999999")
    with prepare_output(tmp_path / "crashed"):
        pass
    for name, (file, text) in {"other-card": ("README.md", "---\ntags:\n- nlp\n---\n"),
                               "other-manifest": ("manifest.json", '["a"]'), "plain": ("data.csv", "a\n1\n")}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(text)
        assert not ours(tmp_path / name), name
        with pytest.raises(InputError, match="--overwrite"):
            prepare_output(tmp_path / name)
        with prepare_output(tmp_path / name, overwrite=True):
            pass
        assert (tmp_path / name / file).read_text() == text


def test_run_overwrite_reaches_every_stage(tmp_path):
    from cerbero_hf.recipe import NAMES, parse_recipe, run_recipe

    (tmp_path / "run" / "seeds").mkdir(parents=True)
    (tmp_path / "run" / "seeds" / "keep.txt").write_text("x")
    recipe = parse_recipe({**{s: {"enabled": False} for s in NAMES}, "output_dir": str(tmp_path / "run"),
                           "seeds": {"enabled": True, "input": str(OASST)}})
    with pytest.raises(InputError, match="--overwrite"):
        run_recipe(recipe)
    manifest = run_recipe(recipe, overwrite=True)
    assert manifest.data["stages"]["seeds"]["status"] == "done"
    assert (tmp_path / "run" / "seeds" / "keep.txt").exists()


# -- one run at a time --------------------------------------------------------------------------------------

def _wait_for(predicate, timeout: float, proc=None) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.returncode}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_a_second_run_on_the_same_output_stops_naming_the_first_runs_pid(tgi_server, tiny_embedder, tmp_path,
                                                                        cli_env):
    seeds, out = _seeds(tmp_path / "seeds"), tmp_path / "corpus"
    args = ["generate", seeds, out, "--endpoint", tgi_server.url, "--mode", "completion", "--embedder",
            tiny_embedder, "--max-new-tokens", "4", "--lengths", "4", "--max-conversations", "3", "--no-resume"]
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "delay:0.5"  # a slow server: the first run holds the output for seconds
    first = subprocess.Popen([sys.executable, "-m", "cerbero_hf", *map(str, args)], env=cli_env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(tgi_server.log) > 0, 240, first)  # it is generating, under its lock
        assert (out / LOCK_NAME).read_text() == str(first.pid)
        sent = len(tgi_server.log)
        second = run_cli(args, env=cli_env, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.strip().splitlines() == [
            f"Error: file {out}: another cerbero-hf run (PID {first.pid}) is writing this output folder: wait for it "
            "to finish, or stop it"]
        assert first.poll() is None  # the first run was not disturbed
        assert all(r["fault"].startswith("delay") for r in tgi_server.log[sent:])  # and nothing was sent twice
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
        tgi_server.reset()
    assert not (out / LOCK_NAME).exists() and (out / "README.md").is_file()  # released on exit
    assert run_cli(args, env=cli_env, timeout=300).returncode == 0  # and the output is free again


HOLD = """
import sys, time
from cerbero_hf.outputs import prepare_output
lock = prepare_output(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_left_by_a_killed_run_is_stale(tmp_path, cli_env):
    out = tmp_path / "corpus"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=cli_env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        with pytest.raises(InputError, match=f"PID {holder.pid}"):
            prepare_output(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / LOCK_NAME).read_text() == str(holder.pid)  # a crash leaves the file behind ...
    res = run_cli(["seeds", OASST, out], env=cli_env)  # ... and the next run takes it over
    assert res.returncode == 0, res.stderr
    assert not (out / LOCK_NAME).exists() and (out / "README.md").is_file()


def test_train_checks_its_output_dir_too(tmp_path):
    from cerbero_hf.stages.train.config import TrainConfig
    from cerbero_hf.stages.train.trainer import train

    corpus = tmp_path / "fauno"
    corpus.mkdir()
    (corpus / "rows.jsonl").write_text('{"messages": [{"role": "user", "content": "Ciao"}]}\n')
    before = _digest(corpus)
    with pytest.raises(InputError, match="the output folder is the input"):
        train(TrainConfig(corpora=[f"fauno={corpus}@1"], output_dir=str(corpus), use_cpu=True))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="--overwrite"):
        train(TrainConfig(corpora=[f"fauno={corpus}"], output_dir=str(tmp_path / "other"), use_cpu=True))
    assert _digest(corpus) == before
    assert TrainConfig(overwrite=True, use_cpu=True).overwrite  # the flag of `cerbero-hf train`, key train.overwrite
