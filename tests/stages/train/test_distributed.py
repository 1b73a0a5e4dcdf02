"""Training under a launcher: torchrun and accelerate launch with 2 ranks on the CPU (gloo).

Every run is a real launch of ``cerbero_hf`` (or tests/support/train_launch.py, which adds a slow step or a
failing rank) on the session's tiny Mistral. The claims: both ranks train; 2 ranks x per-device batch 2 train
the same as 1 process x batch 4; only the main process writes, merges and pushes; a failure, an input error, a
kill and a resume behave as one process would.

Tolerances: the two set-ups run the same samples per step; with transformers' token-count normalisation the
gradients are the same and only the order of float sums differs (gloo all-reduce vs one batch). Measured here
on 5 steps at lr 1e-3: the losses agree to about 1e-6 and the weights to about 1e-6; the bounds below (1e-4 on
losses, 1e-4 on weights) leave room for other BLAS kernels while still failing if one rank's data were dropped
or doubled (that changes the loss in the second decimal).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from fixtures_servers import free_port

from cerbero_hf.stages.train.trainer import MANIFEST, PREPARED

pytestmark = pytest.mark.timeout(900)

SCRIPT = ROOT / "tests" / "support" / "train_launch.py"
CPU_CONFIG = ROOT / "configs" / "accelerate" / "cpu.yaml"
FSDP_CONFIG = ROOT / "configs" / "accelerate" / "fsdp.yaml"
SAME = dict(rel=1e-4, abs=1e-4)


@pytest.fixture
def env(cli_env):
    env = dict(cli_env)
    env.pop("CERBERO_HF_DEBUG", None)
    return env


def train_args(base_lm, corpora, out, *, batch, steps=5, **flags):
    args = [f"fauno={corpora['fauno']}", f"generated={corpora['generated']}", str(out), "--model", str(base_lm),
            "--max-steps", str(steps), "--max-length", "128", "--per-device-train-batch-size", str(batch),
            "--gradient-accumulation-steps", "1", "--warmup-steps", "0", "--learning-rate", "1e-3",
            "--logging-steps", "1", "--save-steps", "100", "--eval-fraction", "0"]
    for key, value in flags.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def torchrun(args, env, *, script=None, nproc=2, timeout=600, popen=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(free_port())]
    cmd += [str(script)] if script else ["-m", "cerbero_hf"]
    cmd += [str(a) for a in args]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def accelerate(config, args, env, *extra, timeout=600):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port",
           str(free_port()), *extra, "-m", "cerbero_hf", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def report(out) -> dict:
    return json.loads((Path(out) / MANIFEST).read_text())


def losses(out) -> list[float]:
    state = json.loads(sorted(Path(out).glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


def weights(folder) -> dict:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (Path(folder) / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(Path(folder) / name)


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= SAME["abs"], worst


def assert_two_ranks_trained(out, steps):
    setup = report(out)["data"]["distributed"]
    assert setup["world_size"] == 2 and setup["distributed_type"] == "MULTI_CPU" and setup["backend"] == "gloo"
    assert [r["rank"] for r in setup["ranks"]] == [0, 1]
    assert all(r["steps"] == steps and r["tokens"] > 0 for r in setup["ranks"])
    assert setup["data_prepared"] == "once, by the main process"
    assert not (Path(out) / PREPARED).exists()  # the prepared rows are the run's, removed at the end
    return setup


@pytest.fixture(scope="module")
def one_process_full(base_lm, corpora, tmp_path_factory):
    """The reference: one process, per-device batch 4 (= 2 ranks x 2)."""
    out = tmp_path_factory.mktemp("one") / "full"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = run_cli(["train", *train_args(base_lm, corpora, out, batch=4)], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_torchrun_trains_two_ranks_like_one_process(base_lm, corpora, one_process_full, env, tmp_path):
    out = tmp_path / "ddp"
    r = torchrun(["train", *train_args(base_lm, corpora, out, batch=2)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    setup = assert_two_ranks_trained(out, steps=5)
    assert (setup["per_device_batch_size"], setup["global_batch_size"], setup["launcher"]) == (2, 4, "torchrun")

    one, two = report(one_process_full)["result"], report(out)["result"]
    assert (two["steps"], two["rows"], two["tokens"]) == (one["steps"], one["rows"], one["tokens"])  # same data seen
    assert sum(r["tokens"] for r in setup["ranks"]) == one["tokens"]  # split between the ranks, none twice
    assert losses(out) == pytest.approx(losses(one_process_full), **SAME) and len(losses(out)) == 5
    assert two["train_loss"] == pytest.approx(one["train_loss"], **SAME)
    assert_same_weights(out, one_process_full)

    # the console once (the main process): the batch note, the summary table; the card says how it trained
    assert r.stdout.count("cerbero-hf train") == 1 and "2 (torchrun), global batch 4" in r.stdout
    assert r.stderr.count("note: global batch 4 = 2 per device x 1 accumulation x 2 processes") == 1
    card = (out / "README.md").read_text()
    assert "2 processes (torchrun, MULTI_CPU, gloo)" in card
    assert "4 = 2 per device x 1 accumulation x 2 processes" in card


def test_accelerate_cpu_config_starts_two_ranks(base_lm, corpora, one_process_full, env, tmp_path):
    out = tmp_path / "acc"
    r = accelerate(CPU_CONFIG, ["train", *train_args(base_lm, corpora, out, batch=2)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    setup = assert_two_ranks_trained(out, steps=5)
    assert setup["launcher"] == "accelerate launch"
    assert losses(out) == pytest.approx(losses(one_process_full), **SAME)


def test_accelerate_multi_cpu_without_mpirun_is_refused(base_lm, corpora, env, tmp_path):
    """accelerate's MULTI_CPU type starts one process without mpirun: a run that would train alone says so."""
    config = tmp_path / "multi_cpu.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\n"
                      "num_processes: 2\nmachine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\n")
    out = tmp_path / "alone"
    r = accelerate(config, ["train", *train_args(base_lm, corpora, out, batch=2)], env)
    assert r.returncode != 0  # accelerate's own exit (1, with its CalledProcessError) for our exit 2
    assert r.stderr.count("Error: accelerate launch was asked for several processes but started one") == 1
    assert f'File "{ROOT / "cerbero_hf"}' not in r.stderr and not (out / MANIFEST).exists()  # no trace of ours


def test_fsdp_on_the_cpu_is_refused_with_the_reason(base_lm, corpora, env, tmp_path):
    """The documented limit: accelerate 1.x sets FSDP up only on GPUs and would train plain DDP on the CPU without
    a word; we stop with one line. bench/gpu_check.py runs the FSDP config on a GPU machine."""
    out = tmp_path / "fsdp"
    r = accelerate(FSDP_CONFIG, ["train", *train_args(base_lm, corpora, out, batch=2)], env,
                   "--num_processes", "2", "--mixed_precision", "no")
    assert r.returncode != 0
    line = ("Error: the launch asks for FSDP but accelerate set up MULTI_CPU: accelerate runs FSDP only on GPUs; "
            "on the CPU use configs/accelerate/cpu.yaml (data parallel, gloo)")
    assert r.stderr.count(line) == 1, r.stderr[-3000:]
    assert not re.search(r"\[rank\d\]: Traceback", r.stderr) and not (out / MANIFEST).exists()


def test_lora_merge_and_hub_pushes_happen_once(base_lm, corpora, hub_emulator, hub_env, tmp_path):
    """LoRA + --merge-lora + --push-to-hub under torchrun: one commit per checkpoint, one final push, one merged
    model (written and pushed by the main process), equal to the merge of a one-process run. LoRA dropout is off:
    each rank draws its own dropout masks, so with dropout the two set-ups are equal only in distribution."""
    repo = "user/cerbero-ddp-lora"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    single = tmp_path / "one"
    r = run_cli(["train", *train_args(base_lm, corpora, single, batch=4, steps=4, lora="true", lora_r=8,
                                      lora_dropout=0, merge_lora="true")], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    hub_emulator.reset_log()
    out = tmp_path / "two"
    args = train_args(base_lm, corpora, out, batch=2, steps=4, lora="true", lora_r=8, lora_dropout=0, merge_lora="true",
                      push_to_hub="true", hub_model_id=repo, save_steps=2)
    r = torchrun(["train", *args], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert hub_env["HF_TOKEN"] not in r.stdout + r.stderr
    assert_two_ranks_trained(out, steps=4)

    summaries = [json.loads(q.body.splitlines()[0])["value"]["summary"]
                 for q in hub_emulator.requests("POST", rf"^/api/models/{repo}/commit/") if q.status == 200]
    checkpoints = [s for s in summaries if s.startswith("Training in progress")]
    # no commit twice (a second rank pushing would double each); the step-4 save is the last one and transformers
    # skips a checkpoint push while the previous one is still uploading: the final push carries it
    assert len(checkpoints) == len(set(checkpoints)) and "Training in progress, step 2" in checkpoints
    assert summaries.count("End of training") == 1
    merged_commits = hub_emulator.requests("POST", rf"^/api/models/{repo}-merged/commit/")
    assert len([q for q in merged_commits if q.status == 200]) == 1

    assert_same_weights(out, single)  # the adapters
    assert_same_weights(str(out) + "-merged", str(single) + "-merged")
    assert report(out)["result"]["merged"] == str(out) + "-merged"


def test_a_failure_on_one_rank_ends_every_rank_with_one_line(base_lm, corpora, env, tmp_path):
    out = tmp_path / "broken"
    r = torchrun(["train", *train_args(base_lm, corpora, out, batch=2)], dict(env, CERBERO_TEST_FAIL_RANK="1"),
                 script=SCRIPT)
    assert r.returncode != 0
    assert "Error: rank 1 of 2: RuntimeError: simulated failure on rank 1" in r.stderr, r.stderr[-3000:]
    assert not re.search(r"\[rank\d\]: Traceback", r.stderr)  # torchrun's own report aside, no rank traceback
    assert not (out / MANIFEST).exists()


def test_input_errors_are_found_before_training_and_printed_once(base_lm, corpora, env, tmp_path):
    args = train_args(base_lm, corpora, tmp_path / "out", batch=2)
    args[0] = f"fauno={tmp_path / 'missing'}"
    r = torchrun(["train", *args], env)
    assert r.returncode != 0
    assert r.stderr.count("no such file or folder") == 1, r.stderr[-3000:]
    assert not re.search(r"\[rank\d\]: Traceback", r.stderr)

    # rank 0 of 2 with nobody else coming: the missing corpus is found before it waits for the process group
    code = ("from cerbero_hf.stages.train.config import TrainConfig\n"
            f"TrainConfig(model={str(base_lm)!r}, corpora=[{args[0]!r}], output_dir='o')")
    alone = dict(env, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    r = subprocess.run([sys.executable, "-c", code], env=alone, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "InputError: file " in r.stderr and "missing: no such file or folder" in r.stderr

    # a second run on an output another run holds: the main process says so, once; nobody trains
    from cerbero_hf.outputs import prepare_output

    held = tmp_path / "held"
    with prepare_output(held):
        r = torchrun(["train", *train_args(base_lm, corpora, held, batch=2)], env)
    assert r.returncode != 0 and r.stderr.count("another cerbero-hf run") == 1, r.stderr[-3000:]
    assert not (held / MANIFEST).exists()


def test_kill_the_launcher_then_resume_every_rank(base_lm, corpora, env, tmp_path):
    """kill -9 of torchrun after a checkpoint; the same command resumes both ranks and ends where an uninterrupted
    run ends. Resuming with another number of processes stops with one line."""
    steps = ["--max-steps", "8", "--save-steps", "2"]
    whole = tmp_path / "whole"
    r = torchrun(["train", *train_args(base_lm, corpora, whole, batch=2), *steps], env)
    assert r.returncode == 0, r.stderr[-3000:]

    out = tmp_path / "killed"
    args = ["train", *train_args(base_lm, corpora, out, batch=2), *steps]
    slow = dict(env, CERBERO_TEST_STEP_SLEEP="1.0")
    launcher = torchrun(args, slow, script=SCRIPT, popen=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-4" / "trainer_state.json").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint-4 before the run ended"
        time.sleep(0.2)
    time.sleep(0.5)
    launcher.send_signal(signal.SIGKILL)
    launcher.communicate(timeout=60)
    assert not (out / MANIFEST).exists()  # it did not finish
    deadline = time.monotonic() + 60  # the ranks die with their launcher: the lock is free again
    while subprocess.run(["pgrep", "-f", str(out)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "a rank outlived its launcher"
        time.sleep(0.2)

    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    alone = run_cli(args, env=env)
    assert alone.returncode == 2 and "was written by 2 processes and this run has 1" in alone.stderr, alone.stderr

    r = torchrun(args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = report(out)["result"]
    assert result["resumed_from"].endswith(f"checkpoint-{last}") and result["steps"] == 8
    assert losses(out) == pytest.approx(losses(whole), **SAME) and len(losses(out)) == 8
    assert_same_weights(out, whole)


def test_evaluate_under_torchrun_runs_once_on_the_main_process(tiny_chat_lm, env, tmp_path):
    from conftest import FIXTURES

    out = tmp_path / "results.json"
    r = torchrun(["evaluate", tiny_chat_lm, "--data-dir", FIXTURES / "eval", "--tasks", "sentipolc", "--limit", "3",
                  "--output", out, "--max-new-tokens", "4"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("evaluation runs on the main process only") == 1
    assert r.stderr.count("Results written to") == 1 and json.loads(out.read_text())["tasks"]["sentipolc"]
    with pytest.raises(Exception, match="evaluation runs on the main process only; this is rank 1"):
        _evaluate_as_rank_1(tiny_chat_lm, tmp_path)


def _evaluate_as_rank_1(model, tmp_path):
    from cerbero_hf.stages.evaluate.stage import EvaluateConfig, evaluate_model

    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK")}
    os.environ.update(WORLD_SIZE="2", RANK="1")
    try:
        evaluate_model(EvaluateConfig(), str(model), tmp_path / "r.json")
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert not (tmp_path / "r.json").exists()


def test_run_under_a_launcher_runs_only_the_train_stage(tmp_path, monkeypatch):
    from cerbero_hf.errors import InputError
    from cerbero_hf.recipe import Manifest, check_launched_stages, load_recipe

    monkeypatch.setenv("TGI_URL", "http://127.0.0.1:9")
    recipe = load_recipe(ROOT / "configs" / "cerbero-7b.yaml", [f"output_dir={tmp_path}"])
    manifest = Manifest(tmp_path / "manifest.json")
    check_launched_stages(recipe, manifest, None, False)  # one process: anything goes
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    with pytest.raises(InputError, match=r"under torchrun only the train stage runs, and this run would also run "
                                         r"seeds, generate.*--only train"):
        check_launched_stages(recipe, manifest, None, False)
    check_launched_stages(recipe, manifest, ["train"], False)  # --only train
    with pytest.raises(InputError, match="would also run evaluate"):
        check_launched_stages(recipe, manifest, ["train", "evaluate"], False)


def test_run_recipe_under_torchrun_trains_every_rank_and_writes_the_manifest_once(base_lm, corpora, env, tmp_path):
    """``cerbero-hf run RECIPE`` under torchrun with only the train stage to run: both ranks train, the main process
    writes the manifest and prints; with a data stage to run it stops with one line before anything is done."""
    import yaml

    from cerbero_hf.recipe import STAGES

    recipe = {**{s: {"enabled": False} for s in STAGES}, "output_dir": str(tmp_path / "run"),
              "train": {"model": str(base_lm), "corpora": [f"fauno={corpora['fauno']}"], "condition": "fauno",
                        "max_steps": 2, "max_length": 128, "per_device_train_batch_size": 2,
                        "gradient_accumulation_steps": 1, "warmup_steps": 0, "eval_fraction": 0, "save_steps": 100}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    r = torchrun(["run", path], env)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done" and manifest["stages"]["train"]["counts"]["steps"] == 2
    assert_two_ranks_trained(tmp_path / "run" / "model", steps=2)
    assert r.stdout.count("cerbero-hf run") == 1  # the closing table, from the main process only

    recipe["seeds"] = {"input": str(ROOT / "tests" / "fixtures" / "oasst_sample.jsonl")}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    r = torchrun(["run", path], env)
    assert r.returncode != 0
    assert r.stderr.count("Error: column '--only': under torchrun only the train stage runs, and this run would "
                          "also run seeds") == 1, r.stderr[-3000:]
    assert "seeds" not in json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
