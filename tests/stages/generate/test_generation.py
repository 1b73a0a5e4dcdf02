"""Generator backends: the real AsyncInferenceClient against a TGI-protocol test server with injected faults,
the in-process batching backend, the one retry policy (cerbero_hf.retry) and the pure pieces (Retry-After,
prompts, parsing)."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from cerbero_hf.languages import load_language
from cerbero_hf.retry import retry_after_seconds
from cerbero_hf.stages.generate.backends import EndpointBackend, GenerationError, LocalBackend, Request, Result
from cerbero_hf.stages.generate.selfchat import build_request, parse_message, render_transcript

IT = load_language("it")


def _req(**kw) -> Request:
    conv = [{"role": "user", "content": "Ciao, come stai?"}]
    return build_request(IT, conv, "assistant", max_new_tokens=kw.pop("max_new_tokens", 6), seed=1, **kw)


# -- pure logic -----------------------------------------------------------------------------------

def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(future) <= 31


def test_prompt_is_the_language_pack_transcript_ending_with_the_role_tag():
    conv = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Salve!"}]
    assert render_transcript(IT, conv, "user") == "[|Umano|] Ciao\n[|Assistente|] Salve!\n[|Umano|]"
    req = build_request(IT, conv, "user")
    assert req.messages[0]["role"] == "system" and "umano" in req.messages[0]["content"]
    assert req.messages[1]["content"] == req.prompt
    assert req.stop == ["[|Umano|]", "[|Assistente|]"]
    assert (req.temperature, req.top_p, req.max_new_tokens) == (0.7, 0.9, 512)


@pytest.mark.parametrize("text,finish,expected", [
    (" Roma è la capitale.\n[|Umano|] e poi?", "length", ("Roma è la capitale.", None)),
    ("[|Assistente|] Certo! Ecco.[|Assistente|] altro", "stop", ("Certo! Ecco.", None)),
    ("   \n", "stop", (None, "empty")),
    ("[|Umano|] domanda", "stop", (None, "empty")),
    ("una frase tagliata dal limite", "length", (None, "length")),
    ("x" * 50, "stop", (None, "too_long")),
])
def test_parse_exactly_one_message(text, finish, expected):
    result = Result(text, finish, 0, 0, "m")
    assert parse_message(IT, result, "assistant", max_chars=40) == expected


def test_truncated_messages_can_be_kept_when_configured():
    result = Result("tagliata", "length", 0, 0, "m")
    assert parse_message(IT, result, "user", reject_truncated=False) == ("tagliata", None)


def test_backends_pickle_without_runtime_state_or_key(monkeypatch):
    monkeypatch.setenv("GEN_TEST_KEY", "sk-very-secret")
    backend = EndpointBackend("http://127.0.0.1:1", api_key_env="GEN_TEST_KEY")
    raw = pickle.dumps(backend)
    assert b"sk-very-secret" not in raw
    assert pickle.loads(raw).describe() == backend.describe()


# -- endpoint backend against the TGI-protocol server ---------------------------------------------

def test_completion_mode_retries_every_transient_fault_then_succeeds(tgi_server):
    tgi_server.reset()
    tgi_server.slow_s = 1.5
    faults = ["500", "503", "429", "reset", "malformed", "timeout", "408"]
    tgi_server.faults = list(faults)
    backend = EndpointBackend(tgi_server.url, "completion", timeout=0.75, request_attempts=len(faults) + 1,
                              backoff=0.01)
    result = asyncio.run(backend.generate(_req()))
    assert [e["fault"] for e in tgi_server.log] == faults + ["ok"]
    assert result.attempts == len(faults) + 1 and backend.stats["retries"] == len(faults)
    assert result.finish_reason in ("stop", "length") and result.tokens_out > 0
    assert tgi_server.log[-1]["route"] == "/"


def test_retries_are_bounded_and_permanent_errors_not_retried(tgi_server):
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "503"
    backend = EndpointBackend(tgi_server.url, "completion", request_attempts=3, backoff=0.01)
    with pytest.raises(GenerationError, match="HTTP 503") as err:
        asyncio.run(backend.generate(_req()))
    assert err.value.attempts == 3 and len(tgi_server.log) == 3
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "400"
    with pytest.raises(GenerationError, match="HTTP 400"):
        asyncio.run(backend.generate(_req()))
    assert len(tgi_server.log) == 1


def test_completion_mode_counts_prompt_tokens(tgi_server):
    """TGI leaves ``details.prefill`` empty unless asked; the prompt's tokens come from ``x-prompt-tokens``."""
    tgi_server.reset()
    backend = EndpointBackend(tgi_server.url, "completion")
    request = _req()
    result = asyncio.run(backend.generate(request))
    expected = len(tgi_server.tok(request.prompt, add_special_tokens=False)["input_ids"])
    assert result.tokens_in == expected > 0 and result.tokens_out > 0
    assert backend.stats["tokens_in"] == expected


def test_retry_after_is_honoured(tgi_server):
    tgi_server.reset()
    tgi_server.faults = ["429"]
    backend = EndpointBackend(tgi_server.url, "completion", request_attempts=2, backoff=30.0)
    start = time.monotonic()
    asyncio.run(backend.generate(_req()))
    assert time.monotonic() - start < 10  # Retry-After: 0 overrides the 30 s backoff
    assert len(tgi_server.log) == 2


def test_chat_mode_sends_the_key_and_counts_tokens_and_bounds_concurrency(tgi_server, monkeypatch):
    tgi_server.reset()
    # The first three answers wait until three requests are in flight at once: no timing guess, and a client
    # with fewer slots leaves max_inflight below 3 (after the server's 20 s wait) instead of passing by luck.
    tgi_server.fault_fn = lambda n: "gate:3" if n < 3 else "ok"
    monkeypatch.setenv("GEN_TEST_KEY", "sk-test-123")
    backend = EndpointBackend(tgi_server.url, "chat", model="served", api_key_env="GEN_TEST_KEY", concurrency=3)

    async def many():
        return await asyncio.gather(*(backend.generate(_req()) for _ in range(8)))

    results = asyncio.run(many())
    assert {e["route"] for e in tgi_server.log} == {"/v1/chat/completions"}
    assert all(e["auth"] == "Bearer sk-test-123" for e in tgi_server.log)
    assert tgi_server.max_inflight == 3
    assert all(r.tokens_in > 0 and r.tokens_out > 0 for r in results)
    assert backend.stats["tokens_out"] == sum(r.tokens_out for r in results)
    assert results[0].model == tgi_server.model_dir


# -- local backend --------------------------------------------------------------------------------

def test_local_backend_batches_concurrent_requests(tiny_chat_lm):
    backend = LocalBackend(str(tiny_chat_lm), mode="chat", max_batch=8)

    async def many():
        return await asyncio.gather(*(backend.generate(_req(max_new_tokens=5)) for _ in range(6)))

    results = asyncio.run(many())
    assert len(results) == 6 and all(isinstance(r.text, str) for r in results)
    assert all(0 < r.tokens_out <= 5 and r.tokens_in > 0 for r in results)
    assert backend._batcher.calls == 1  # six concurrent requests, one generate call
