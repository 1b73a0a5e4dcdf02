"""A generator behind an HTTP endpoint, through ``huggingface_hub.AsyncInferenceClient(base_url=...)``.

``mode="chat"`` posts ``/v1/chat/completions`` (TGI Messages API, vLLM, SGLang, llama.cpp,
``transformers serve``, which needs ``model=`` set to the path it serves); ``mode="completion"`` calls TGI
``text_generation`` on the rendered transcript with stop sequences and ``details=True``.

Reliability: a per-request timeout; at most ``concurrency`` requests in flight; retries under the one
policy of :mod:`cerbero_hf.retry` (408/429/5xx, connection errors, timeouts, ``Retry-After`` honoured,
exponential backoff with full jitter), plus malformed 2xx answers; at most ``request_attempts`` attempts.
huggingface_hub does not retry by itself (huggingface_hub#4703). A request that still fails raises
:class:`~cerbero_hf.stages.generate.backends.base.GenerationError`, which keeps the server's own error text
and says whether a retry could help (a 4xx other than 408/429 is a wrong request or setting, not a fault).
:meth:`EndpointBackend.probe` checks that anything answers at the URL before a run starts.

Replicas: ``url`` may list several servers of one model (``"http://a:8080,http://b:8080"``). Each attempt goes
to the replica with the fewest requests in flight (ties: the one sent fewest), ``concurrency`` bounding all of
them together. A retry goes to a replica this request has not tried yet when one is up, so a replica answering
5xx or timing out does not keep its requests. A replica that refuses a connection, or fails
:data:`REPLICA_FAILURES` attempts in a row in a way a retry could mend (5xx, 408, 429, timeouts, dropped
connections, malformed answers), is paused: it gets no new request for :data:`REPLICA_PAUSE_S` seconds, doubled
each time it is paused again without having answered in between, up to :data:`REPLICA_PAUSE_MAX_S`. When its pause
ends it gets one trial request at a time: an answer puts it back in the rotation, a failure pauses it again. Each
pause that grows, and each return, is one warning on the ``cerbero_hf.generate`` logger; :meth:`describe` counts
the pauses (``replica_pauses``). A replica is only paused while another is in the run; when every replica is
paused, requests go to all of them again. :meth:`EndpointBackend.probe` skips a replica where nothing answers at
the start (one warning; ``replicas_skipped`` in :meth:`describe`) as long as another answers. The replay-cache key
(:attr:`EndpointBackend.cache_id`) is the model name, never a URL: a run resumes from its cache whichever replicas
answer.

Tokens: chat mode reads the answer's ``usage``; completion mode reads TGI's ``x-prompt-tokens`` response
header (``details.prefill`` is empty unless ``decoder_input_details`` is asked for) and
``details.generated_tokens``.

The API key is read from the environment variable named by ``api_key_env`` when the client is built; it is
never stored in the pickled state, printed or written anywhere.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time

from cerbero_hf.retry import Verdict, acall_with_retries, call_with_retries, classify
from cerbero_hf.stages.generate.backends.base import (
    GenerationError,
    MalformedResponse,
    Request,
    Result,
    finish,
    new_stats,
)

# a 2xx answer whose content we cannot read: worth another try (a server hiccup, not our request)
_MALFORMED = (MalformedResponse, ValueError, KeyError, TypeError, IndexError, AttributeError)


# the response headers of the request the current task is sending (see EndpointBackend._bind)
_HEADERS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cerbero_hf_endpoint_headers", default=None)
REPLICA_FAILURES = 3  # attempts failing in a row (transient faults) that pause a replica; a refused connection: 1
REPLICA_PAUSE_S = 10.0  # the first pause of a replica, in seconds (while another is up)
REPLICA_PAUSE_MAX_S = 300.0  # a replica paused again without answering in between waits twice as long, up to this

log = logging.getLogger("cerbero_hf.generate")


def split_urls(url) -> list[str]:
    """The replica URLs of ``url``: a comma-separated string or a list (each stripped, no trailing ``/``)."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    return [u.strip().rstrip("/") for u in parts]


def _refused(err: BaseException) -> bool:
    """A connection that could not be opened (refused, unreachable), anywhere in the error chain."""
    import httpx2

    from cerbero_hf.retry import _chain

    return any(isinstance(e, (httpx2.ConnectError, ConnectionRefusedError)) for e in _chain(err))


def judge(err: BaseException) -> Verdict:
    """:func:`cerbero_hf.retry.classify`, plus malformed responses (retried)."""
    verdict = classify(err)
    if verdict.kind == "other" and isinstance(err, _MALFORMED) and not verdict.reason.startswith("invalid URL"):
        return Verdict(True, None, f"malformed response ({type(err).__name__})", "malformed")
    return verdict


async def _keep_headers(response) -> None:
    """httpx response hook: hand the headers to the request that is waiting for them."""
    holder = _HEADERS.get()
    if holder is not None:
        holder.update(response.headers)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class EndpointBackend:
    """A text-generation endpoint behind ``huggingface_hub.AsyncInferenceClient``.

    Args:
        url: the server's base URL (e.g. ``http://127.0.0.1:8080``), or several replicas of one model: a
            comma-separated string or a list (requests are balanced across them; see the module docstring).
        mode: ``"chat"`` (``/v1/chat/completions``) or ``"completion"`` (TGI ``text_generation``).
        model: the ``model`` field sent in chat mode (``transformers serve`` needs the path it serves;
            other servers ignore it or need their served name). Also the model id recorded when the
            server does not report one, and the replay-cache key (:attr:`cache_id`).
        api_key_env: name of the environment variable holding the API key (read, never logged).
        concurrency: the most requests in flight at once.
        timeout: seconds per attempt.
        request_attempts: attempts per request (first try included).
        backoff: base delay in seconds; attempt k waits ``uniform(0, min(backoff_max, backoff * 2**(k-1)))``
            unless the server sent ``Retry-After``.
        extra_body: extra JSON fields for chat requests (server-specific options, e.g. vLLM's ``top_k``, or
            ``transformers serve``'s ``generation_config``: it samples only when the model's generation
            config has ``do_sample=True`` and otherwise ignores ``temperature``).
        replica_failures: attempts failing in a row (transient faults) that pause a replica.
        replica_pause / replica_pause_max: a replica's first pause in seconds, and the longest (each pause
            without an answer since the last one doubles it).
    """

    def __init__(self, url: str, mode: str = "chat", model: str | None = None, *, api_key_env: str | None = None,
                 concurrency: int = 64, timeout: float = 300.0, request_attempts: int = 5, backoff: float = 1.0,
                 backoff_max: float = 60.0, extra_body: dict | None = None, replica_failures: int = REPLICA_FAILURES,
                 replica_pause: float = REPLICA_PAUSE_S, replica_pause_max: float = REPLICA_PAUSE_MAX_S):
        if mode not in ("chat", "completion"):
            raise ValueError(f"mode must be 'chat' or 'completion', got {mode!r}")
        if concurrency < 1 or request_attempts < 1 or replica_failures < 1:
            raise ValueError("concurrency, request_attempts and replica_failures must be >= 1")
        self.urls = split_urls(url)
        if not self.urls or not all(self.urls):
            raise ValueError(f"no endpoint URL in {url!r}")
        self.url, self.mode, self.model = ",".join(self.urls), mode, model
        self.api_key_env = api_key_env
        self.extra_body = extra_body
        self.concurrency, self.timeout = concurrency, timeout
        self.request_attempts, self.backoff, self.backoff_max = request_attempts, backoff, backoff_max
        self.stats = new_stats()
        self.replica_failures, self.replica_pause = replica_failures, replica_pause
        self.replica_pause_max = max(replica_pause, replica_pause_max)
        self.sent_to = dict.fromkeys(self.urls, 0)  # attempts sent to each replica
        self.pauses = dict.fromkeys(self.urls, 0)  # times each replica was paused
        self.skipped: list[str] = []  # replicas where nothing answered the start-up probe: left out of the run
        self._live = list(range(len(self.urls)))  # the replicas in the run (all but the skipped ones)
        self.__dict__.update(self._fresh_health())
        self._loop = self._clients = self._sem = None

    def _fresh_health(self) -> dict:
        """Per-replica state of this process (a pickled copy starts afresh): in flight, paused until (monotonic
        time), attempts failed in a row, and the last pause's length (> 0: paused and not answered since)."""
        n = len(self.urls)
        return {"_inflight": [0] * n, "_paused": [0.0] * n, "_streak": [0] * n, "_pause_s": [0.0] * n}

    @property
    def model_id(self) -> str:
        return self.model or self.url

    @property
    def cache_id(self) -> str | None:
        """The model in the replay-cache key: the model name (None without one), never the replica URLs."""
        return self.model

    def describe(self) -> dict:
        """Settings safe to record in a card (no key); with replicas skipped or paused, which (and how often)."""
        out = {"backend": "endpoint", "url": self.url, "mode": self.mode, "model": self.model_id,
               "timeout": self.timeout, "request_attempts": self.request_attempts,
               "concurrency": self.concurrency, "extra_body": self.extra_body}
        if self.skipped:
            out["replicas_skipped"] = list(self.skipped)
        if any(self.pauses.values()):
            out["replica_pauses"] = {url: n for url, n in self.pauses.items() if n}
        return out

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_loop=None, _clients=None, _sem=None, **self._fresh_health())
        return state

    def _client_for(self, url: str, key: str | None):
        import httpx2
        from huggingface_hub import AsyncInferenceClient

        client = AsyncInferenceClient(base_url=url, api_key=key or None, timeout=self.timeout)
        # The default httpx pool caps at 100 connections; size it to our concurrency bound.
        limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        client._async_client = httpx2.AsyncClient(limits=limits, follow_redirects=True, timeout=None,
                                                   event_hooks={"response": [_keep_headers]})
        client.exit_stack.push_async_callback(client._async_client.aclose)
        return client

    def _pick(self, tried=()) -> int:
        """The replica for the next attempt of a request that already went to ``tried``: fewest in flight, then
        fewest sent, among the replicas that are up (not paused; one on trial only while it has nothing in
        flight) and not tried; else among those up; when every replica is paused, among all of the run."""
        now = time.monotonic()
        up = [i for i in self._live
              if self._paused[i] <= now and (not self._pause_s[i] or not self._inflight[i])]
        pool = ([i for i in up if i not in tried] or up or [i for i in self._live if i not in tried]
                or self._live)
        return min(pool, key=lambda i: (self._inflight[i], self.sent_to[self.urls[i]]))

    def _answered(self, i: int) -> None:
        self._streak[i] = 0
        if self._pause_s[i]:
            self._pause_s[i] = 0.0
            log.warning("endpoint replica %s answers again: back in the rotation", self.urls[i])

    def _failed(self, i: int, err: BaseException) -> None:
        """Count a failed attempt against replica ``i``; pause it when it keeps failing (see the module doc)."""
        verdict = judge(err)
        if len(self._live) < 2 or not verdict.retry:  # nowhere else to go, or the request's fault, not the server's
            return
        self._streak[i] += 1
        now = time.monotonic()
        if self._paused[i] > now:  # already paused (this attempt was in flight): one pause per episode
            return
        refused = _refused(err)
        if not (refused or self._pause_s[i] or self._streak[i] >= self.replica_failures):
            return
        length = min(self.replica_pause_max, self._pause_s[i] * 2) if self._pause_s[i] else self.replica_pause
        grew = length != self._pause_s[i]
        self._pause_s[i], self._paused[i] = length, now + length
        self.pauses[self.urls[i]] += 1
        if grew:  # at the longest pause, further ones are counted (describe), not logged
            why = ("it refused a connection" if refused else f"{self._streak[i]} failures in a row")
            others = any(self._paused[j] <= now for j in self._live if j != i)
            where = ("its requests go to the other replicas" if others
                     else "every replica of the run is paused, so requests go to all of them")
            log.warning("endpoint replica %s paused for %g s after %s (%s): %s", self.urls[i], length, why,
                        verdict.reason, where)

    def _bind(self):
        """(Re)build the loop-bound clients (one per replica) and semaphore for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            clients = [self._client_for(url, key) for url in self.urls]
            self._loop, self._clients, self._sem = loop, clients, asyncio.Semaphore(self.concurrency)
        return self._clients, self._sem

    async def aclose(self) -> None:
        if self._clients is not None and self._loop is asyncio.get_running_loop():
            for client in self._clients:
                await client.close()
        self._loop = self._clients = self._sem = None

    async def generate(self, request: Request) -> Result:
        clients, sem = self._bind()
        tries = 0
        tried: set[int] = set()  # the replicas this request went to: a retry goes elsewhere when it can

        async def once() -> Result:
            nonlocal tries
            tries += 1
            headers: dict = {}
            token = _HEADERS.set(headers)
            try:
                async with sem:
                    self.stats["requests"] += 1
                    i = self._pick(tried)
                    tried.add(i)
                    self._inflight[i] += 1
                    self.sent_to[self.urls[i]] += 1
                    try:
                        if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per request
                            async with asyncio.timeout(self.timeout):
                                result = await self._call(clients[i], request, headers)
                        else:
                            result = await asyncio.wait_for(self._call(clients[i], request, headers), self.timeout)
                    except Exception as err:
                        self._failed(i, err)
                        raise
                    finally:
                        self._inflight[i] -= 1
                    self._answered(i)
                    return result
            finally:
                _HEADERS.reset(token)

        def retried(_verdict) -> None:
            self.stats["retries"] += 1

        try:
            result, attempts = await acall_with_retries(once, attempts=self.request_attempts, backoff=self.backoff,
                                                        max_wait=self.backoff_max, judge=judge, on_retry=retried)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - judged by the retry policy
            self.stats["failed"] += 1
            verdict = judge(err)
            raise GenerationError(verdict.reason, tries, status=verdict.status, detail=self._detail(verdict),
                                  transient=verdict.retry) from None
        result.attempts = attempts
        self.stats["tokens_in"] += result.tokens_in
        self.stats["tokens_out"] += result.tokens_out
        return result

    def _detail(self, verdict: Verdict) -> str | None:
        """The server's error text, with the API key blanked out, and a hint when no model name was sent."""
        detail = verdict.detail
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if detail and key:
            detail = detail.replace(key, "<redacted>")
        if self.model is None and self.mode == "chat" and verdict.status in (400, 404, 422):
            # huggingface_hub sends the placeholder "dummy" when no model is given
            detail = (detail + "; " if detail else "") + ("no model name was sent (the client sent a placeholder): "
                                                          "set the model to the name the server serves")
        return detail

    def probe(self) -> None:
        """Check that anything answers at each replica's URL (any HTTP status counts), retried like a request.

        A replica where nothing answers after ``request_attempts`` attempts (connection refused, unknown host,
        timeouts) is skipped for the run, with one warning, when another answers (:attr:`skipped`).

        Raises :class:`GenerationError` (its ``url``: the replica, or every replica joined by ``", "``) when
        nothing answers at any of them, or at once when a URL cannot be requested.
        """
        import httpx2

        dead: dict[str, GenerationError] = {}
        for url in self.urls:
            tries = 0

            def once(url=url) -> None:
                nonlocal tries
                tries += 1
                with httpx2.Client(timeout=min(self.timeout, 10.0)) as client:
                    client.get(url)

            try:
                call_with_retries(once, attempts=self.request_attempts, backoff=self.backoff,
                                  max_wait=self.backoff_max)
            except Exception as err:  # noqa: BLE001 - judged by the retry policy
                verdict = classify(err)
                error = GenerationError(verdict.reason, tries, transient=verdict.retry)
                error.url = url
                if not verdict.retry:  # not a server that is down: a URL no request can be sent to
                    raise error from None
                dead[url] = error
        if len(dead) == len(self.urls):
            error = next(iter(dead.values()))
            error.url = ", ".join(dead)
            raise error from None
        self.skipped = list(dead)
        self._live = [i for i, url in enumerate(self.urls) if url not in dead]
        live = ", ".join(self.urls[i] for i in self._live)
        for url, error in dead.items():
            log.warning("nothing answers at endpoint replica %s (%s): skipped for this run, generating with %s",
                        url, error, live)

    async def _call(self, client, request: Request, headers: dict) -> Result:
        if self.mode == "chat":
            out = await client.chat_completion(
                request.messages, model=self.model, max_tokens=request.max_new_tokens,
                temperature=request.temperature, top_p=request.top_p, stop=request.stop or None, seed=request.seed,
                extra_body=self.extra_body)
            if not out.choices or out.choices[0].message is None:
                raise MalformedResponse("no choices")
            choice = out.choices[0]
            text = choice.message.content
            if not isinstance(text, (str, type(None))):
                raise MalformedResponse("content is not a string")
            usage = out.usage
            return Result(text or "", finish(choice.finish_reason),
                          _int(getattr(usage, "prompt_tokens", 0)) or _int(headers.get("x-prompt-tokens")),
                          _int(getattr(usage, "completion_tokens", 0)), out.model or self.model_id)
        out = await client.text_generation(
            request.prompt, details=True, max_new_tokens=request.max_new_tokens, do_sample=request.temperature > 0,
            temperature=request.temperature or None, top_p=request.top_p, stop=request.stop or None,
            seed=request.seed)
        if isinstance(out, str) or getattr(out, "generated_text", None) is None:
            raise MalformedResponse("no generated_text/details")
        details = out.details
        prefill = getattr(details, "prefill", None) or []
        return Result(out.generated_text, finish(getattr(details, "finish_reason", None)),
                      len(prefill) or _int(headers.get("x-prompt-tokens")),
                      _int(getattr(details, "generated_tokens", 0)) or _int(headers.get("x-generated-tokens")),
                      self.model_id)
