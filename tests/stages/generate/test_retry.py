"""The one retry policy (cerbero_hf.retry), shared by the generator endpoint and the Hub uploads."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from cerbero_hf import retry
from cerbero_hf.stages.generate.backends.base import MalformedResponse
from cerbero_hf.stages.generate.backends.endpoint import judge


def http_error(status: int, retry_after: str | None = None) -> HfHubHTTPError:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    response = httpx2.Response(status, headers=headers, request=httpx2.Request("POST", "http://127.0.0.1/x"))
    return HfHubHTTPError(f"{status} error", response=response)


@pytest.mark.parametrize("status,transient", [(408, True), (429, True), (500, True), (502, True), (503, True),
                                              (504, True), (599, True), (400, False), (401, False), (403, False),
                                              (404, False), (409, False), (422, False), (425, False)])
def test_status_sets_are_one_policy_for_endpoint_and_hub(status, transient):
    from cerbero_hf.stages.publish import hub

    err = http_error(status)
    assert retry.is_transient(err) is transient
    assert hub.is_transient(err) is transient  # the Hub uploads use the same function
    assert judge(err).retry is transient and judge(err).reason == f"HTTP {status}"


def test_wrapped_errors_timeouts_and_connections():
    try:
        raise TextGenerationError("overloaded") from http_error(503, "7")
    except TextGenerationError as wrapped:
        verdict = retry.classify(wrapped)
    assert verdict.retry and verdict.wait == 7.0 and verdict.reason == "HTTP 503"
    try:
        raise RuntimeError("upload failed") from httpx2.ConnectError("refused")
    except RuntimeError as wrapped:
        assert retry.classify(wrapped).kind == "connection" and retry.is_transient(wrapped)
    assert retry.classify(asyncio.TimeoutError()).kind == "timeout"
    assert retry.classify(httpx2.ReadTimeout("slow")).kind == "timeout"
    assert not retry.is_transient(ValueError("bad"))
    assert judge(MalformedResponse("no choices")).retry  # the endpoint also retries unreadable 2xx answers
    assert not judge(RuntimeError("bug")).retry


def test_backoff_is_jittered_exponential_and_retry_after_wins():
    for attempt in (1, 2, 3, 6):
        delays = [retry.backoff_delay(attempt, backoff=0.5, max_wait=4.0) for _ in range(200)]
        assert all(0 <= d <= min(4.0, 0.5 * 2 ** (attempt - 1)) for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert retry.backoff_delay(3, backoff=10, max_wait=60, retry_after=2.5) == 2.5
    assert retry.backoff_delay(1, max_wait=5, retry_after=100) == 5


def test_call_with_retries_counts_attempts_and_stops_on_permanent_errors():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise http_error(429, "3")
        if len(calls) == 2:
            raise http_error(502)
        return "ok"

    assert retry.call_with_retries(flaky, attempts=5, backoff=0.5, sleep=sleeps.append) == ("ok", 3)
    assert sleeps[0] == 3.0 and 0 <= sleeps[1] <= 1.0
    calls.clear()
    with pytest.raises(HfHubHTTPError):
        retry.call_with_retries(lambda: (calls.append(1), (_ for _ in ()).throw(http_error(404)))[1],
                                attempts=5, sleep=sleeps.append)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(HfHubHTTPError):
        retry.call_with_retries(lambda: (calls.append(1), (_ for _ in ()).throw(http_error(503)))[1],
                                attempts=3, backoff=0, sleep=lambda s: None)
    assert len(calls) == 3


def test_async_twin_retries_the_same_way():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise httpx2.ConnectError("refused")
        return "ok"

    retried = []
    assert asyncio.run(retry.acall_with_retries(flaky, attempts=4, backoff=0.001, on_retry=retried.append)) == ("ok", 3)
    assert [v.kind for v in retried] == ["connection", "connection"]


def _answered(status: int, **body) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/x"), **body)
    return HfHubHTTPError(f"{status} error", response=response)


@pytest.mark.parametrize("body,message", [
    ({"json": {"error": "Input validation error: `inputs` too long"}}, "Input validation error: `inputs` too long"),
    ({"json": {"error": {"message": "The model `x` does not exist", "type": "invalid_request_error"}}},
     "The model `x` does not exist"),  # OpenAI
    ({"json": {"detail": [{"loc": ["body", "model"], "msg": "field required"}]}}, "field required"),  # FastAPI
    ({"json": {"detail": "Server is pinned to 'a'; requested 'b'."}}, "Server is pinned to 'a'; requested 'b'."),
    ({"text": "<html><body><h1>404 Not Found</h1>\n<p>nginx</p></body></html>"}, "404 Not Found nginx"),
    ({"text": ""}, None),
])
def test_the_servers_error_text_travels_with_the_verdict(body, message):
    verdict = retry.classify(_answered(400, **body))
    assert (verdict.status, verdict.detail, verdict.reason, verdict.retry) == (400, message, "HTTP 400", False)


def test_the_servers_text_is_one_short_line_and_never_shows_the_key(monkeypatch):
    from cerbero_hf.stages.generate.backends import EndpointBackend

    long = retry.classify(_answered(422, text="word\n" * 500)).detail
    assert "\n" not in long and len(long) == retry.DETAIL_CHARS and long.endswith("…")
    monkeypatch.setenv("GEN_RETRY_KEY", "sk-echoed-secret")
    backend = EndpointBackend("http://127.0.0.1:1", "chat", api_key_env="GEN_RETRY_KEY")
    verdict = retry.classify(_answered(401, json={"error": "invalid key sk-echoed-secret"}))
    detail = backend._detail(verdict)
    assert "sk-echoed-secret" not in detail and "invalid key <redacted>" in detail
    assert "no model name was sent" not in detail  # 401: the key, not the model
    assert "no model name was sent" in backend._detail(retry.classify(_answered(400, json={"error": "bad model"})))
    assert not retry.classify(httpx2.InvalidURL("no host")).retry  # no request can be sent there
