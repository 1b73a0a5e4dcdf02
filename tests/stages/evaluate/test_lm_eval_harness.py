"""lm-eval itself runs the offline cerbero_it tasks (configs/lm_eval/) and scores as ``cerbero-hf evaluate`` does.

* A venv of its own, apart from the project's .venv (lm-eval would downgrade python-dateutil there): lm-eval
  0.4.13 and the cerbero-hf wheel (test_packaging.py's ``wheel`` fixture), installed from requirements/lm-eval.txt
  with torch==2.13.0 in the same pip command. It is built once and kept in the ignored build/lm-eval-venv/<key>
  (key: the lock's hash, the lm-eval pin and the Python version; a file lock guards it, a half-built one is made
  again); each run reinstalls the wheel (``--no-deps``, 2 s), so the venv always holds the code under test.
* The model: the tiny chat Mistral with the label words added as tokens, trained 300 steps to answer the bundled
  tasks' items, so that its answers vary (label words, misses, stray text, a few right) instead of repeating one
  token as the random model does.
* From an empty folder outside the checkout, with no PYTHONPATH, HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1:
  ``lm_eval run --model hf --include_path configs/lm_eval --tasks cerbero_it_offline --limit N
  --apply_chat_template --log_samples``, then ``cerbero-hf evaluate`` (the project's venv) on the same model,
  limit and bundled files (``--data-dir``, ``--format chat``). Every example gets the same prompt (so the same
  shots, in the same order) and the same raw answer on both sides, and every task the same scores.

The venv's build time (cold, once), both runs' times and the scores are printed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import test_packaging
from conftest import ROOT, built_once, run_cli
from test_packaging import _clean_env, _pip, _run

from cerbero_hf.stages.evaluate import TASKS, UNKNOWN, evaluation_settings, few_shot_messages, load_examples, task_configs
from cerbero_hf.stages.evaluate.tasks import DATA
from cerbero_hf.tiny_models import fit

LOCK = ROOT / "requirements" / "lm-eval.txt"
CONF = ROOT / "configs" / "lm_eval"
LM_EVAL = "lm_eval==0.4.13"
LIMIT = 8
SETTINGS = evaluation_settings("it")
packaging_wheel = test_packaging.wheel  # the packaging test's fixture (the project's wheel), under this name here
LABELS = sorted({w for name in TASKS for w in SETTINGS["tasks"][name].get("labels", [])})


def _venv_key() -> str:
    digest = hashlib.sha256(LOCK.read_bytes() + LM_EVAL.encode() + f"{sys.version_info[:2]}".encode())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="module")
def lm_eval_venv(packaging_wheel) -> dict:
    """lm-eval + the cerbero-hf wheel in build/lm-eval-venv/<key>, locked while this module uses it."""
    from filelock import FileLock

    venv = ROOT / "build" / "lm-eval-venv" / _venv_key()
    venv.parent.mkdir(parents=True, exist_ok=True)
    python, done = venv / "bin" / "python", venv / ".complete"
    with FileLock(str(venv) + ".lock"):
        if not done.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            start = time.monotonic()
            _run([sys.executable, "-m", "venv", "--without-pip", venv], env=_clean_env(), cwd=venv.parent, timeout=120)
            _pip(python, "install", "-q", "-c", LOCK, "torch==2.13.0", LM_EVAL, packaging_wheel, timeout=900)
            done.write_text(f"{time.monotonic() - start:.0f}\n")
        _pip(python, "install", "-q", "--no-deps", "--force-reinstall", packaging_wheel)
        probe = _run([python, "-c", "import cerbero_hf, lm_eval; print(cerbero_hf.__file__)"], env=_clean_env(),
                     cwd=venv.parent, timeout=120)
        assert Path(probe.stdout.strip()).resolve().is_relative_to(venv.resolve())  # the wheel's, not the checkout
        yield {"venv": venv, "bin": venv / "bin", "cold_build_s": done.read_text().strip()}


def _train_label_lm(base: Path, out: Path, steps: int = 300, seed: int = 0) -> Path:
    """``base`` with the label words as single tokens, trained ``steps`` steps to answer the bundled tasks' items
    (0-shot chats; the loss of the answer only)."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok, model = AutoTokenizer.from_pretrained(base), AutoModelForCausalLM.from_pretrained(base)
    tok.add_tokens(LABELS)
    model.resize_token_embeddings(len(tok))
    pairs = [(tok.apply_chat_template([{"role": "user", "content": e.input}], tokenize=False, add_generation_prompt=True),
              e.target + "\n")
             for task in task_configs(TASKS, SETTINGS, data_dir=DATA) for e in load_examples(task, task.eval_split)[0]]
    random.Random(seed).shuffle(pairs)

    def answer_loss(step: int):
        ids, labels = [], []
        for prompt, answer in (pairs[(step * 8 + j) % len(pairs)] for j in range(8)):
            p, a = (tok(s, add_special_tokens=False)["input_ids"] for s in (prompt, answer))
            ids.append(p + a)
            labels.append([-100] * len(p) + a)  # the loss of the answer only
        width = max(map(len, ids))
        pad = [width - len(s) for s in ids]
        return model(input_ids=torch.tensor([[tok.pad_token_id] * n + s for n, s in zip(pad, ids)]),
                     attention_mask=torch.tensor([[0] * n + [1] * len(s) for n, s in zip(pad, ids)]),
                     labels=torch.tensor([[-100] * n + s for n, s in zip(pad, labels)])).loss

    fit(model, answer_loss, steps, lr=5e-3)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def label_lm(tiny_models_dir, tiny_chat_lm) -> Path:
    return built_once(tiny_models_dir / "mistral-labels", lambda path: _train_label_lm(tiny_chat_lm, path))


def _samples(out: Path, task: str) -> list[dict]:
    (path,) = out.rglob(f"samples_{task}_*.jsonl")
    return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])


def test_lm_eval_scores_offline_tasks_as_cerbero_hf_evaluate(lm_eval_venv, label_lm, tmp_path, cli_env, capsys):
    from transformers import AutoTokenizer

    empty, out = tmp_path / "empty", tmp_path / "lm-eval"
    empty.mkdir()
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    _run([lm_eval_venv["bin"] / "lm_eval", "run", "--model", "hf", "--model_args", f"pretrained={label_lm},dtype=float32",
          "--device", "cpu", "--batch_size", "1", "--include_path", CONF, "--tasks", "cerbero_it_offline",
          "--limit", LIMIT, "--apply_chat_template", "--log_samples", "--output_path", out],
         env=_clean_env(**offline), cwd=empty, timeout=600)
    lm_eval_s = time.monotonic() - start
    assert sorted(p.name for p in empty.iterdir()) == []  # everything went to --output_path

    start = time.monotonic()
    proc = run_cli(["evaluate", label_lm, "--data-dir", DATA, "--limit", LIMIT, "--format", "chat", "--device", "cpu",
                    "--batch-size", "1", "--threads", "1", "--predictions", "--output", tmp_path / "ours.json"],
                   env={**cli_env, **offline}, cwd=tmp_path)
    ours_s = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads((tmp_path / "ours.json").read_text())
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]

    tok = AutoTokenizer.from_pretrained(label_lm)
    configs = {t.name: t for t in task_configs(TASKS, SETTINGS, data_dir=DATA)}
    scores = {}
    for name in TASKS:
        task, preds = f"cerbero_{name}_offline", ours["predictions"][name]
        samples = _samples(out, task)
        assert [s["doc"]["id"] for s in samples] == [p["id"] for p in preds] and len(preds) == LIMIT
        pool = {e.id: e for e in load_examples(configs[name], configs[name].shot_split)[0]}
        for s, p in zip(samples, preds):
            shots = [(pool[i].input, pool[i].target) for i in p["shots"]]
            prompt = tok.apply_chat_template(few_shot_messages(shots, s["doc"]["input"]), tokenize=False,
                                             add_generation_prompt=True)
            assert s["arguments"]["gen_args_0"]["arg_0"] == prompt, (name, p["id"])  # the same shots, in order
            assert s["resps"][0][0] == p["raw"], (name, p["id"])  # the same greedy answer
        theirs = {k.split(",")[0]: v for k, v in results[task].items() if k.endswith(",none") and "_stderr" not in k}
        mine = {k: v for k, v in ours["tasks"][name]["metrics"].items() if isinstance(v, float)}
        assert theirs == pytest.approx(mine, abs=1e-9), name
        scores[name] = mine

    # Not a vacuous agreement: the answers differ from one another and some are label words, some not.
    labels = [p["prediction"] for name in TASKS if name != "squad_it" for p in ours["predictions"][name]]
    assert len({p["raw"] for preds in ours["predictions"].values() for p in preds}) > 1
    assert set(labels) & set(LABELS) and UNKNOWN in labels
    with capsys.disabled():
        print(f"\n[lm-eval] venv cold build {lm_eval_venv['cold_build_s']} s (once); lm_eval run {lm_eval_s:.0f} s, "
              f"cerbero-hf evaluate {ours_s:.0f} s; scores (both): "
              + "; ".join(f"{n} " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) for n, s in scores.items()))
