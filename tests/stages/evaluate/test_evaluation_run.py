"""Evaluation end to end with the tiny chat model: local batched generation, the CLI, a real endpoint.

The tiny model's numbers are meaningless; what is checked is the plumbing: counts, JSON structure,
metrics recomputed from the stored predictions, batched == unbatched greedy output, the model card update.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

from cerbero_hf.stages.evaluate import (
    TASKS,
    classification_scores,
    evaluation_settings,
    load_examples,
    prompt_format,
    squad_metrics,
    task_configs,
)
from cerbero_hf.stages.evaluate.runner import build_chats, evaluate_tasks

FIX = FIXTURES / "eval"
SETTINGS = evaluation_settings("it")


@pytest.fixture(scope="module")
def noisy_lm(tiny_chat_lm, tmp_path_factory) -> Path:
    """The tiny chat model with large random weights: greedy output then depends on the whole prompt
    (the plain tiny model just repeats its last token), so batching mistakes would show."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("noisy-lm")
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_lm)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_chat_lm).save_pretrained(out)
    return out


def _chats(limit: int) -> list[list[dict]]:
    chats = []
    for task in task_configs(TASKS, SETTINGS, data_dir=FIX):
        queries = load_examples(task, task.eval_split)[0][:limit]
        chats += build_chats(task, queries, load_examples(task, task.shot_split)[0], seed=42)[0]
    return chats


@pytest.mark.parametrize("fmt_name", ["chat", "cerbero"])
def test_batched_equals_unbatched_greedy(noisy_lm, fmt_name):
    from cerbero_hf.stages.evaluate.generators import LocalGenerator

    chats = _chats(limit=4)  # 16 prompts of different lengths (SQuAD contexts, short tweets)
    fmt = prompt_format(fmt_name, "it", SETTINGS)
    batched = LocalGenerator(str(noisy_lm), batch_size=16, device="cpu").generate(chats, fmt, max_new_tokens=12)
    single = LocalGenerator(str(noisy_lm), batch_size=1, device="cpu").generate(chats, fmt, max_new_tokens=12)
    assert [b["raw"] for b in batched] == [s["raw"] for s in single]
    assert len({b["raw"] for b in batched}) > 8  # outputs differ by prompt, so a padding bug would show


def _check_document(doc: dict, n_per_task: int, with_predictions: bool) -> None:
    assert set(doc["tasks"]) == set(TASKS)
    assert doc["seed"] == 42 and doc["language"] == "it"
    for name, block in doc["tasks"].items():
        assert block["n"] == n_per_task and block["failed"] == 0
        assert block["headline"] == ("f1" if name == "squad_it" else "macro_f1")
        assert block["config"]["shots"] == (3 if name == "squad_it" else 5)
        assert block["skipped"] == (3 if name == "sentipolc" else 0)  # neutral + mixed tweets (binary protocol)
        if not with_predictions:
            continue
        preds = doc["predictions"][name]
        assert len(preds) == n_per_task
        assert all(len(p["shots"]) == block["config"]["shots"] and p["id"] not in p["shots"] for p in preds)
        if name == "squad_it":
            again = squad_metrics([p["prediction"] for p in preds], [p["golds"] for p in preds])
            assert block["unknown"] == sum(1 for p in preds if not p["prediction"])
        else:
            labels = block["config"]["labels"]
            again = classification_scores([p["prediction"] for p in preds], [p["gold"] for p in preds], labels)
            assert block["unknown"] == sum(1 for p in preds if p["prediction"] == "<UNKNOWN>")
            assert all(p["prediction"] in labels + ["<UNKNOWN>"] for p in preds)
        assert {k: block["metrics"][k] for k in again} == pytest.approx(again)


def test_cli_end_to_end_all_tasks_and_model_card(tiny_chat_lm, cli_env, tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: apache-2.0\n---\n# tiny\n\nA tiny test model.\n", encoding="utf-8")
    out = tmp_path / "results.json"
    proc = run_cli(["evaluate", tiny_chat_lm, "--data-dir", FIX, "--limit", "3", "--output", out, "--predictions",
                    "--max-new-tokens", "24", "--threads", "1", "--update-card", "--card", card], env=cli_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    _check_document(doc, 3, with_predictions=True)
    assert doc["format"] == "chat" and doc["stop"] == ["[|Umano|]"]
    assert {b["config"]["max_new_tokens"] for b in doc["tasks"].values()} == {24}
    assert doc["generator"]["kind"] == "local" and doc["generator"]["model"] == str(tiny_chat_lm)
    assert doc["generator"]["threads"] == 1 and doc["generator"]["batch_size"] == 16
    assert "squad_it" in proc.stdout and "macro_f1" in proc.stdout  # the results table
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(card)
    scores = {(r.dataset_name, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert scores[("squad_it", "f1")] == round(doc["tasks"]["squad_it"]["metrics"]["f1"], 2)
    assert scores[("ami2020", "macro_f1")] == round(doc["tasks"]["ami2020"]["metrics"]["macro_f1"], 2)
    assert "A tiny test model." in loaded.text and "| ironita |" in loaded.text


def test_cli_input_errors(tiny_chat_lm, cli_env, tmp_path):
    proc = run_cli(["evaluate", tiny_chat_lm, "--tasks", "squad_it,nope", "--data-dir", FIX], env=cli_env)
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr
    proc = run_cli(["evaluate", tiny_chat_lm, "--data-dir", FIX, "--format", "alpaca"], env=cli_env)
    assert proc.returncode == 2 and "unknown prompt format" in proc.stderr


@pytest.mark.parametrize("fmt_name", ["fauno", "camoscio"])
def test_transcript_formats_run_every_task(tiny_chat_lm, fmt_name):
    from cerbero_hf.stages.evaluate.generators import LocalGenerator

    tasks = task_configs(TASKS, SETTINGS, data_dir=FIX)
    for task in tasks:
        task.max_new_tokens = 12  # short generations: this checks the plumbing, not the answers
    doc = evaluate_tasks(tasks, LocalGenerator(str(tiny_chat_lm), device="cpu"),
                         prompt_format(fmt_name, "it", SETTINGS), limit=2, settings=SETTINGS, keep_predictions=True)
    _check_document(doc, 2, with_predictions=True)
    assert doc["stop"] == (["[|Umano|]"] if fmt_name == "fauno" else ["\n"])


def test_transformers_serve_endpoint(transformers_serve, tiny_chat_lm):
    """The real `transformers serve` over the tiny model: chat requests, greedy, same answers as local."""
    from cerbero_hf.stages.evaluate.generators import EndpointGenerator, LocalGenerator

    tasks = task_configs(["squad_it", "ironita"], SETTINGS, data_dir=FIX)
    for task in tasks:
        task.max_new_tokens = 12
    fmt = prompt_format("chat", "it", SETTINGS)
    remote = evaluate_tasks(tasks, EndpointGenerator(transformers_serve.url, model=transformers_serve.model, seed=0),
                            fmt, limit=2, settings=SETTINGS, keep_predictions=True)
    assert remote["generator"]["kind"] == "endpoint" and remote["generator"]["endpoint"] == transformers_serve.url
    for name in ("squad_it", "ironita"):
        block = remote["tasks"][name]
        assert block["n"] == 2 and block["failed"] == 0
        assert all("error" not in p for p in remote["predictions"][name])
    local = evaluate_tasks(tasks, LocalGenerator(str(tiny_chat_lm), device="cpu"), fmt, limit=2, settings=SETTINGS,
                           keep_predictions=True)
    for name in ("squad_it", "ironita"):
        assert ([p["prediction"] for p in remote["predictions"][name]]
                == [p["prediction"] for p in local["predictions"][name]])


def test_unreachable_endpoint_records_failures():
    from cerbero_hf.stages.evaluate.generators import EndpointGenerator

    tasks = task_configs(["ironita"], SETTINGS, data_dir=FIX)
    gen = EndpointGenerator("http://127.0.0.1:9", model="x", request_attempts=1, timeout=5)
    doc = evaluate_tasks(tasks, gen, prompt_format("chat", "it", SETTINGS), limit=3, settings=SETTINGS,
                         keep_predictions=True)
    block = doc["tasks"]["ironita"]
    assert block["n"] == 3 and block["failed"] == 3 and block["unknown"] == 3
    assert all(p["prediction"] == "<UNKNOWN>" and "connection" in p["error"] for p in doc["predictions"]["ironita"])
