"""SelfChat (paper §3.3) with real parts: ``Dataset.map`` over the real
AsyncInferenceClient against ``transformers serve`` (chat) and the TGI-protocol server (completion,
faults), the tiny SentenceTransformer, the sqlite replay cache, and ``cerbero-hf generate`` killed with
SIGKILL and resumed. The tiny generator writes gibberish: thresholds and token limits are set so the
plumbing, not the prose, is under test."""

from __future__ import annotations

import inspect
import json
import pickle
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from cerbero_hf.schema import features, get_meta, make_row
from cerbero_hf.stages.generate.backends import EndpointBackend
from cerbero_hf.stages.generate.corpus import plan_conversations, seed_messages
from cerbero_hf.stages.generate.selfchat import SelfChat

SEED_TEXTS = [
    ("Come si prepara il risotto alla milanese?", "Si tosta il riso, si sfuma con il vino e si aggiunge lo zafferano."),
    ("Qual è la montagna più alta d'Italia?", "Il Monte Bianco, con circa 4800 metri."),
    ("Mi consigli un libro di Calvino?", "Le città invisibili è un ottimo inizio."),
    ("Perché il mare è salato?", "Perché i fiumi portano sali minerali che si accumulano nel tempo."),
    ("Come funziona un vaccino?", "Insegna al sistema immunitario a riconoscere un agente patogeno."),
    ("Che tempo fa a Palermo in inverno?", "Di solito è mite, con temperature intorno ai quindici gradi."),
]


def _seeds(n: int = 6):
    from datasets import Dataset

    rows = []
    for i in range(n):
        q, a = SEED_TEXTS[i % len(SEED_TEXTS)]
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a},
                {"role": "user", "content": f"Puoi dirmi di più? ({i})"},
                {"role": "assistant", "content": f"Certo, ecco altri dettagli numero {i}."}]
        rows.append(make_row(f"oasst-{i}", msgs[: 2 + 2 * (i % 2)], "oasst", {"origin": ["seed"] * (2 + 2 * (i % 2))}))
    return Dataset.from_list(rows, features=features())


def _check_row(row, seed_row):
    """The invariants every output row keeps, whatever happened to it."""
    meta = get_meta(row)
    n = len(row["messages"])
    assert n > 0, "a conversation is never an empty row"
    for key in ("origin", "attempts", "rejected", "rejected_reasons", "max_sim"):
        assert len(meta[key]) == n, key
    n_seed = meta["origin"].count("seed")
    assert row["messages"][:n_seed] == seed_row["messages"][:n_seed]
    assert all(o == "seed" for o in meta["origin"][:n_seed]) and "seed" not in meta["origin"][n_seed:]
    roles = [m["role"] for m in row["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:])), "roles alternate"
    assert meta["status"] in ("complete", "short", "failed")
    if meta["status"] == "complete":
        assert n == meta["target_length"] and roles[-1] == "assistant" and meta["error"] is None
    if meta["status"] == "short":
        assert 4 <= n < meta["target_length"] and roles[-1] == "assistant" and n_seed < n
    if meta["status"] == "failed":
        assert meta["error"]
    assert meta["target_length"] in (4, 6, 8, 10)
    return meta


def test_selfchat_is_an_async_picklable_map_function(tiny_embedder):
    chat = SelfChat(EndpointBackend("http://127.0.0.1:1"), str(tiny_embedder), seed_texts=["a", "b"])
    assert inspect.iscoroutinefunction(chat)  # datasets 5 runs it concurrently
    clone = pickle.loads(pickle.dumps(chat))
    assert inspect.iscoroutinefunction(clone) and clone.seed_texts == ["a", "b"] and clone.store is None


def test_plan_draws_every_seed_once_per_pass():
    seeds = _seeds(4)
    plan = plan_conversations(seeds, 10, seed=3)
    ids = plan["id"]
    assert len(ids) == len(set(ids)) == 10
    seed_ids = [get_meta(r)["seed_id"] for r in plan]
    assert sorted(seed_ids[:4]) == sorted(seed_ids[4:8]) == sorted(seeds["id"])
    assert plan_conversations(seeds, 10, seed=3)["id"] == ids  # reproducible
    assert len(seed_messages(seeds)) == len({m["content"] for r in seeds for m in r["messages"]})


def test_chat_mode_against_transformers_serve(transformers_serve, tiny_embedder):
    seeds = _seeds(4)
    # transformers serve samples only when asked through its generation_config (the tiny model's says greedy,
    # and greedy decoding of its random weights repeats one whitespace token).
    backend = EndpointBackend(transformers_serve.url, "chat", model=transformers_serve.model, concurrency=4,
                              extra_body={"generation_config": json.dumps({"do_sample": True})})
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), threshold=0.9999,
                    max_new_tokens=8, reject_truncated=False, lengths=(4, 6))
    out = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    assert out["id"] == seeds["id"]
    for row, seed_row in zip(out, seeds):
        meta = _check_row(row, seed_row)
        assert meta["status"] == "complete", meta["error"]
        assert meta["origin"].count("generated") >= 2  # D4: at least two generated messages
        # the server's own name for the model (transformers serve before 5.24 adds the revision, "@main")
        assert meta["generator"]["server_models"] in ([transformers_serve.model], [transformers_serve.model + "@main"])
        assert meta["tokens_in"] > 0 and meta["tokens_out"] > 0
        assert meta["generator"]["temperature"] == 0.7 and meta["generator"]["rng_seed"] == 42
    assert chat.stats["requests_sent"] == chat.stats["accepted"] + chat.stats.get("rejected", 0)
    assert len(chat.store) == len(seed_messages(seeds)) + chat.stats["accepted"]


def test_faults_end_every_conversation_complete_or_recorded(tgi_server, tiny_embedder):
    import random

    seeds = _seeds(6)
    rng = random.Random(0)
    pool = ["ok"] * 6 + ["500", "503", "429", "reset", "malformed", "empty", f"text:{SEED_TEXTS[0][1]}"]
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: rng.choice(pool)
    backend = EndpointBackend(tgi_server.url, "completion", concurrency=4, request_attempts=3, backoff=0.01)
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), threshold=0.9999,
                    max_new_tokens=8, reject_truncated=False)
    out = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    assert sorted(out["id"]) == sorted(seeds["id"])  # none lost, none duplicated
    statuses = [_check_row(r, s)["status"] for r, s in zip(out, seeds)]
    assert set(statuses) <= {"complete", "short", "failed"}
    assert tgi_server.max_inflight > 1  # datasets ran the rows concurrently
    bound = sum(get_meta(r)["target_length"] for r in out) * chat.max_attempts * backend.request_attempts
    assert len(tgi_server.log) <= bound
    assert backend.stats["requests"] == len(tgi_server.log)
    assert chat.stats["rejected_similar"] + chat.stats["rejected_empty"] > 0


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_dead_ends_and_failed_requests_are_recorded_rows(tgi_server, tiny_embedder, index):
    seeds = _seeds(2)
    duplicate = seeds[0]["messages"][1]["content"]
    backend = EndpointBackend(tgi_server.url, "completion", request_attempts=2, backoff=0.01)
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), max_new_tokens=8, index=index)
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: f"text:{duplicate}"  # an exact copy of a seed message: cos 1.0 > 0.9
    out = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    for row, seed_row in zip(out, seeds):
        meta = _check_row(row, seed_row)
        assert meta["status"] == "failed" and "similar x5" in meta["error"]
        assert row["messages"] and meta["origin"] == ["seed"] * len(row["messages"])
    assert len(tgi_server.log) == 2 * 5 and chat.store.index == index
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "503"
    row = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)[0]
    meta = _check_row(row, seeds[0])
    assert meta["status"] == "failed" and "HTTP 503" in meta["error"] and "2 attempts" in meta["error"]


def _cache_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def test_cli_resume_after_sigkill(tgi_server, tiny_embedder, tmp_path, cli_env):
    from cerbero_hf.io import load_table, save_hub_folder

    seeds_dir, out = tmp_path / "seeds", tmp_path / "corpus"
    save_hub_folder(seeds_dir, {"default": _seeds(6)})
    cache = tmp_path / "corpus.cache.sqlite"
    env = dict(cli_env, CERBERO_TEST_API_KEY="sk-never-print-me")
    args = ["generate", seeds_dir, out, "--endpoint", tgi_server.url, "--mode", "completion", "--embedder",
            tiny_embedder, "--threshold", "0.9999", "--max-new-tokens", "8", "--keep-truncated", "--concurrency", "2",
            "--max-conversations", "8", "--api-key-env", "CERBERO_TEST_API_KEY", "--backoff", "0.01"]
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "delay:0.15"
    proc = subprocess.Popen([sys.executable, "-m", "cerbero_hf", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(tgi_server.log) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "README.md").exists()  # killed mid-run
    cached_before = _cache_rows(cache)
    assert cached_before >= 6

    tgi_server.reset()
    done = subprocess.run([sys.executable, "-m", "cerbero_hf", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sent_again = len(tgi_server.log)
    assert sent_again == _cache_rows(cache) - cached_before  # every request sent now is a new one
    assert all(e["auth"] == "Bearer sk-never-print-me" for e in tgi_server.log)

    ids = load_table(out)["id"]
    if (out / "rejected").exists():
        ids += load_table(out, config="rejected")["id"]
    plan = plan_conversations(_seeds(6), 8, seed=42)
    assert sorted(ids) == sorted(plan["id"]) and len(ids) == len(set(ids)) == 8
    card = (out / "README.md").read_text()
    assert f"| requests_replayed | {cached_before} |" in card and f"| requests_sent | {sent_again} |" in card
    assert "threshold" in card and "0.9999" in card and "CERBERO_TEST_API_KEY" not in done.stdout
    for text in (card, done.stdout, done.stderr):
        assert "sk-never-print-me" not in text


def test_generate_cli_rejects_an_unknown_index(tmp_path, cli_env):
    res = run_cli(["generate", tmp_path / "seeds", tmp_path / "out", "--endpoint", "http://127.0.0.1:1",
                   "--index", "ivf"], env=cli_env)
    assert res.returncode == 2 and "--index must be exact or hnsw" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
