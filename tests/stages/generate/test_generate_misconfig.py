"""Misconfiguration is not a transient fault: an endpoint nobody answers at, a URL that is not one, a model
name the server does not serve, a missing embedder or local model stop ``generate`` at once with exit 2 and
one line (the endpoint and the server's own message), instead of finishing with exit 0 and 100 % failed rows.
A client error (4xx other than 408/429) is never retried and its text is kept in the row's error."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import run_cli
from fixtures_servers import free_port

from cerbero_hf.errors import InputError
from cerbero_hf.languages import load_language
from cerbero_hf.schema import features, get_meta, make_row
from cerbero_hf.stages.generate.backends import EndpointBackend, GenerationError
from cerbero_hf.stages.generate.corpus import seed_messages
from cerbero_hf.stages.generate.selfchat import SelfChat, build_request

QA = [("Qual è la montagna più alta d'Italia?", "Il Monte Bianco, con circa 4800 metri."),
      ("Perché il mare è salato?", "Perché i fiumi portano sali minerali che si accumulano nel tempo."),
      ("Mi consigli un libro di Calvino?", "Le città invisibili è un ottimo inizio."),
      ("Come funziona un vaccino?", "Insegna al sistema immunitario a riconoscere un agente patogeno.")]


def _seeds(n: int = 4):
    from datasets import Dataset

    rows = [make_row(f"oasst-{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "oasst",
                     {"origin": ["seed", "seed"]}) for i, (q, a) in enumerate(QA[:n])]
    return Dataset.from_list(rows, features=features())


def _seed_folder(path):
    from cerbero_hf.io import save_hub_folder

    save_hub_folder(path, {"default": _seeds()})
    return path


def _one_error_line(res) -> str:
    """The one error line: the last thing on stderr, the only one saying Error (no traceback, no progress bar)."""
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "self-chat" not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    errors = [line for line in lines if "Error" in line]
    assert errors == [lines[-1]] and lines[-1].startswith("Error: "), res.stderr[-3000:]
    return lines[-1]


# -- inputs that are wrong before anything is sent ----------------------------------------------------

@pytest.mark.parametrize("url", ["not-a-url", "http://", "http://exa mple.org", "ftp://127.0.0.1:8080"])
def test_endpoint_that_is_not_a_url_is_one_line(tmp_path, cli_env, url):
    res = run_cli(["generate", _seed_folder(tmp_path / "seeds"), tmp_path / "out", "--endpoint", url], env=cli_env,
                  timeout=120)
    assert "--endpoint must be an http:// or https:// URL" in _one_error_line(res)
    assert not (tmp_path / "out").exists()


def test_missing_embedder_or_local_model_is_one_line(tgi_server, tmp_path, cli_env):
    seeds, out = _seed_folder(tmp_path / "seeds"), tmp_path / "out"
    res = run_cli(["generate", seeds, out, "--endpoint", tgi_server.url, "--embedder", tmp_path / "nonexistent"],
                  env=cli_env, timeout=300)
    line = _one_error_line(res)
    assert "--embedder" in line and str(tmp_path / "nonexistent") in line
    res = run_cli(["generate", seeds, out, "--model", tmp_path / "no-such-model"], env=cli_env, timeout=300)
    line = _one_error_line(res)
    assert "--model" in line and str(tmp_path / "no-such-model") in line
    assert not out.exists() and not (tmp_path / "out.cache.sqlite").exists()


# -- the endpoint answers nothing, or rejects every request --------------------------------------------

def test_unreachable_endpoint_stops_at_the_start_up_probe(tiny_embedder, tmp_path, cli_env):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    res = run_cli(["generate", _seed_folder(tmp_path / "seeds"), tmp_path / "out", "--endpoint", url,
                   "--embedder", tiny_embedder, "--request-attempts", "2", "--backoff", "0.01"], env=cli_env,
                  timeout=300)
    line = _one_error_line(res)
    assert f"nothing answers at {url}" in line and "connection" in line
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - start < 240


def test_wrong_model_name_stops_with_the_servers_message(transformers_serve, tiny_embedder, tmp_path, cli_env):
    seeds, out = _seed_folder(tmp_path / "seeds"), tmp_path / "out"
    args = ["generate", seeds, out, "--endpoint", transformers_serve.url, "--embedder", tiny_embedder,
            "--max-new-tokens", "4", "--concurrency", "2"]
    line = _one_error_line(run_cli([*args, "--model", "no-such/model"], env=cli_env, timeout=300))
    assert transformers_serve.url in line and "HTTP 400" in line
    assert "Server is pinned to" in line and "no-such/model" in line  # the server's own words
    assert not (out / "README.md").exists()

    # No --model at all: the client sends a placeholder name, and the line says what to set.
    line = _one_error_line(run_cli(args, env=cli_env, timeout=300))
    assert transformers_serve.url in line and "Server is pinned to" in line
    assert "no model name was sent" in line and "--model" in line


# -- client errors: not retried, the server's text kept -------------------------------------------------

@pytest.mark.parametrize("status", ["400", "401", "404", "422"])
def test_client_errors_are_not_retried_and_keep_the_servers_text(tgi_server, status):
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: status
    backend = EndpointBackend(tgi_server.url, "completion", request_attempts=5, backoff=0.01)
    request = build_request(load_language("it"), [{"role": "user", "content": "Ciao"}], "assistant",
                            max_new_tokens=4)
    with pytest.raises(GenerationError) as err:
        asyncio.run(backend.generate(request))
    assert len(tgi_server.log) == 1 and err.value.attempts == 1
    assert f"HTTP {status}" in str(err.value) and "injected" in str(err.value)  # {"error": "injected"}
    assert err.value.status == int(status) and not err.value.transient


def test_a_row_keeps_the_servers_error_text(tgi_server, tiny_embedder):
    seeds = _seeds(2)
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "400" if n == 2 else f"text:Risposta nuova numero {n}."
    backend = EndpointBackend(tgi_server.url, "completion", concurrency=1, request_attempts=3, backoff=0.01)
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), threshold=0.9999,
                    max_new_tokens=8, lengths=(4,))
    out = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    errors = [get_meta(r)["error"] for r in out if get_meta(r)["status"] == "failed"]
    assert len(errors) == 1 and "HTTP 400" in errors[0] and "injected" in errors[0]
    assert "after 1 attempt" in errors[0]
    assert len(tgi_server.log) == 4  # one row's two messages, the other's first one and its failed request


def test_first_requests_failing_the_same_way_stop_the_run(tgi_server, tiny_embedder):
    seeds = _seeds(4)
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "404"
    backend = EndpointBackend(tgi_server.url, "completion", concurrency=1, request_attempts=3, backoff=0.01)
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), max_new_tokens=8, fail_fast=3)
    with pytest.raises(InputError) as err:
        seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    message = str(err.value)
    assert tgi_server.url in message and "HTTP 404" in message and "injected" in message
    assert "first 3 requests" in message
    assert 3 <= len(tgi_server.log) <= 4  # no retries; the remaining rows were cancelled


def test_transient_or_mixed_failures_do_not_stop_the_run(tgi_server, tiny_embedder):
    seeds = _seeds(4)
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "503" if n % 2 else "400"
    backend = EndpointBackend(tgi_server.url, "completion", concurrency=1, request_attempts=1, backoff=0.01)
    chat = SelfChat(backend, str(tiny_embedder), seed_texts=seed_messages(seeds), max_new_tokens=8, fail_fast=3)
    out = seeds.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False)
    assert [get_meta(r)["status"] for r in out] == ["failed"] * 4  # failed rows, not a stopped run
    tgi_server.reset()  # a client error, then answers: one failed row, the others go on
    tgi_server.fault_fn = lambda n: "400" if n == 0 else f"text:Risposta diversa {n}."
    out = _seeds(4).map(SelfChat(backend, str(tiny_embedder), threshold=0.9999, max_new_tokens=8, fail_fast=3),
                        features=features(), keep_in_memory=True, load_from_cache_file=False)
    errors = [get_meta(r)["error"] or "" for r in out]
    assert len(out) == 4 and sum("HTTP 400" in e for e in errors) == 1
    assert len(tgi_server.log) > 3
