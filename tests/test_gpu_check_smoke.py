"""bench/gpu_check.py on the CPU with tiny models (``--device cpu --tiny``), so that the GPU check cannot rot between
GPU runs: every check is present in its JSON with status ok (or "not run" with its reason), training lowers the
loss, the PLL precision comparison and the store's verdict comparison carry their fields, and a failing check is
recorded while the others still run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.py"
REQUIRED = ("matmul", "train_full", "train_lora", "pll", "embed_store", "evaluate")
CUDA_ONLY = ("train_flash", "train_qlora", "train_adam8bit", "train_fsdp")  # flash_attn, bitsandbytes, FSDP: CUDA only
THRESHOLD = 2.0  # the NLL < 2 filter: the random tiny MLM scores every text above it


def run_check(tmp_path, *args, timeout=240):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHONWARNINGS="ignore")
    (tmp_path / "out").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    report = tmp_path / "out" / "gpu_check.json"
    assert report.is_file(), proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc, json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.timeout(300)
def test_cpu_smoke_run_passes_every_check(tmp_path):
    proc, report = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = report["checks"]
    assert list(checks) == ["matmul", "train_full", "train_lora", *CUDA_ONLY, "pll", "embed_store", "evaluate"]
    assert report["device"] == "cpu" and report["tiny"] is True and report["failed"] == []
    for name in REQUIRED:
        assert checks[name]["status"] == "ok", (name, checks[name])
    for name in CUDA_ONLY:
        assert checks[name] == {"status": "not run", "reason": "needs CUDA", "check_seconds": checks[name]["check_seconds"]}
    for name in REQUIRED + CUDA_ONLY:  # the stdout table has one row per check
        assert any(line.split()[:2] == [name, checks[name]["status"].split()[0]] for line in proc.stdout.splitlines())

    assert checks["matmul"]["float32_tflops"] > 0
    for name in ("train_full", "train_lora"):
        t = checks[name]
        assert len(t["losses"]) == t["steps"] == 4 and all(math.isfinite(x) for x in t["losses"])
        assert t["losses"][-1] < t["losses"][0] and t["loss_decreasing"] is True
        assert t["tokens"] > 0 and t["tokens_per_s"] > 0 and t["packing"] is True and t["attn"] == "sdpa"
        assert t["bf16"] is False and t["gradient_checkpointing"] is False and "CPU" in t["note"]  # CPU flags, said so
    assert checks["train_lora"]["lora"] is True and checks["train_full"]["lora"] is False

    pll = checks["pll"]
    assert set(pll["runs"]) == {"float32", "bf16 autocast"} and "bf16 autocast on the CPU only" in pll["note"]
    assert pll["flop_tokens"] == pll["scored_tokens"] > 0 and pll["flops_total"] > 0
    for name, run in pll["runs"].items():
        assert run["tokens_per_s"] > 0 and 0 < run["share_of_matmul"] and run["matmul_dtype"] == "float32"
        assert run["decisions_disagree_at_2"] == 0 and isinstance(run["decisions_disagree_at_median"], int), (name, run)
        assert run["decisions_agree"] is (run["decisions_disagree_at_median"] == 0)
    assert pll["runs"]["float32"]["max_abs_diff"] == 0.0 and pll["runs"]["float32"]["decisions_agree"] is True
    assert 0 < pll["runs"]["bf16 autocast"]["max_abs_diff"] < 0.05  # bf16 really ran, and stays close
    assert pll["median_threshold"] > THRESHOLD and 0 <= pll["label_accuracy_fp32"] <= 1

    store = checks["embed_store"]
    assert store["verdicts_equal"] is True and store["verdicts_differ"] == 0 and store["max_sim_abs_diff"] < 1e-5
    assert 0 < store["rejected"] < store["verdict_sequence"]  # the fixed sequence exercises both verdicts
    assert set(store["rates"]) == {"2000", "10000"} and all(r["batch_vectors_per_s"] > 0 for r in store["rates"].values())
    assert store["embed_texts_per_s"] > 0 and store["dim"] == 64

    ev = checks["evaluate"]
    assert ev["examples"] == 4 and ev["failed"] == 0 and ev["examples_per_s"] > 0
    assert set(ev["tasks"]) == {"squad_it", "sentipolc", "ironita", "ami2020"}


@pytest.mark.timeout(120)
def test_a_failing_check_is_recorded_and_the_others_still_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mlm").write_text("a file where the masked LM's folder should go\n")  # the PLL model cannot load
    proc, report = run_check(tmp_path, "--work", str(work), "--only", "pll", "matmul", timeout=100)
    assert proc.returncode == 1
    assert report["failed"] == ["pll"]
    failed = report["checks"]["pll"]
    assert failed["status"] == "failed" and failed["error"].startswith("InputError: ") and "\n" not in failed["error"]
    assert str(work / "mlm") in failed["error"]
    assert report["checks"]["matmul"]["status"] == "ok" and report["checks"]["matmul"]["float32_tflops"] > 0
    assert "failed: pll" in proc.stdout
