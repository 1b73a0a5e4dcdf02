"""Ctrl-C and SIGTERM during ``cerbero-hf generate`` and ``cerbero-hf run``: the process stops cleanly with
exit 130 (SIGINT) or 143 (SIGTERM) and one line saying how to resume; the requests that finished stay in the
replay cache, and re-running the same command sends only the requests that never finished."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT

from cerbero_hf.io import load_table, save_hub_folder
from cerbero_hf.recipe import STAGES
from cerbero_hf.schema import features, make_row
from cerbero_hf.stages.generate.corpus import plan_conversations

QA = [("Come si prepara il risotto alla milanese?", "Si tosta il riso e si sfuma con il vino."),
      ("Qual è la montagna più alta d'Italia?", "Il Monte Bianco, con circa 4800 metri."),
      ("Mi consigli un libro di Calvino?", "Le città invisibili è un ottimo inizio."),
      ("Perché il mare è salato?", "Perché i fiumi portano sali minerali.")]


def _seeds():
    from datasets import Dataset

    rows = [make_row(f"oasst-{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "oasst",
                     {"origin": ["seed", "seed"]}) for i, (q, a) in enumerate(QA)]
    return Dataset.from_list(rows, features=features())


def _cache_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def _start_and_signal(args, env, server, sig, *, after: int = 6):
    """Start ``cerbero-hf ARGS``, send ``sig`` once ``after`` requests reached the server; (rc, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "cerbero_hf", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(server.log) < after and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _one_message(stderr: str, name: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "Interrupted" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == lines[0]  # the last thing printed
    assert lines[0].startswith(f"Interrupted by {name}") and "re-run the same command to resume" in lines[0]
    return lines[0]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_generate_stops_on_a_signal_keeps_finished_requests_and_resumes(tgi_server, tiny_embedder, tmp_path,
                                                                       cli_env, sig, code):
    seeds_dir, out = tmp_path / "seeds", tmp_path / "corpus"
    save_hub_folder(seeds_dir, {"default": _seeds()})
    cache = tmp_path / "corpus.cache.sqlite"
    args = ["generate", seeds_dir, out, "--endpoint", tgi_server.url, "--mode", "completion", "--embedder",
            tiny_embedder, "--threshold", "0.9999", "--max-new-tokens", "8", "--keep-truncated", "--concurrency", "2",
            "--max-conversations", "8", "--backoff", "0.01"]
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "delay:0.3"
    start = time.monotonic()
    rc, err = _start_and_signal(args, cli_env, tgi_server, sig)
    assert rc == code, err[-3000:]
    line = _one_message(err, sig.name)
    assert str(cache) in line
    assert not (out / "README.md").exists()
    cached_before = _cache_rows(cache)
    assert cached_before >= 4  # the requests that finished before the signal are kept
    assert f"{cached_before} finished requests" in line
    assert time.monotonic() - start < 180

    tgi_server.reset()
    done = subprocess.run([sys.executable, "-m", "cerbero_hf", *map(str, args)], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(tgi_server.log) == _cache_rows(cache) - cached_before  # nothing finished is sent twice
    ids = load_table(out)["id"]
    if (out / "rejected").exists():
        ids += load_table(out, config="rejected")["id"]
    assert sorted(ids) == sorted(plan_conversations(_seeds(), 8, seed=42)["id"])
    assert f"| requests_replayed | {cached_before} |" in (out / "README.md").read_text()


def test_run_command_stops_on_sigterm_with_143_and_resumes(tgi_server, tiny_embedder, tmp_path, cli_env):
    recipe = {**{s: {"enabled": False} for s in STAGES}, "output_dir": str(tmp_path / "run"),
              "seeds": {"input": str(ROOT / "cerbero_hf" / "data" / "oasst_sample_it.jsonl")},
              "generate": {"endpoint": tgi_server.url, "mode": "completion", "embedder": str(tiny_embedder),
                           "threshold": 0.9999, "max_new_tokens": 8, "keep_truncated": True, "concurrency": 2,
                           "max_conversations": 8, "backoff": 0.01}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "delay:0.3"
    rc, err = _start_and_signal(["run", path], cli_env, tgi_server, signal.SIGTERM)
    assert rc == 143, err[-3000:]
    _one_message(err, "SIGTERM")
    cache = tmp_path / "run" / "generated.cache.sqlite"
    cached_before = _cache_rows(cache)
    assert cached_before >= 4

    tgi_server.reset()
    done = subprocess.run([sys.executable, "-m", "cerbero_hf", "run", str(path)], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(tgi_server.log) == _cache_rows(cache) - cached_before
