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

Replicas: ``url`` may list several servers of one model; :mod:`~cerbero_hf.stages.generate.backends.replicas`
balances the attempts, moves a retry to another replica, pauses a failing one and skips one silent at the start.
The replay-cache key (:attr:`EndpointBackend.cache_id`) is the model name, never a URL: a run resumes from its cache
whichever replicas answer.

Tokens: chat mode reads the answer's ``usage``; completion mode reads TGI's ``x-prompt-tokens`` response
header (``details.prefill`` is empty unless ``decoder_input_details`` is asked for) and
``details.generated_tokens``.

The API key is read from the environment variable named by ``api_key_env`` when the client is built; it is
never stored in the pickled state, printed or written anywhere.
"""

from __future__ import annotations

import asyncio
import contextvars
import os

from cerbero_hf.retry import Verdict, acall_with_retries, call_with_retries, classify
from cerbero_hf.stages.generate.backends.base import (
    GenerationError,
    MalformedResponse,
    Request,
    Result,
    finish,
    new_stats,
)
from cerbero_hf.stages.generate.backends.replicas import (
    REPLICA_FAILURES,
    REPLICA_PAUSE_MAX_S,
    REPLICA_PAUSE_S,
    Replicas,
    split_urls,
)

# a 2xx answer whose content we cannot read: worth another try (a server hiccup, not our request)
_MALFORMED = (MalformedResponse, ValueError, KeyError, TypeError, IndexError, AttributeError)


# the response headers of the request the current task is sending (see EndpointBackend._bind)
_HEADERS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cerbero_hf_endpoint_headers", default=None)


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
        replica_pause: a replica's first pause in seconds (each pause without an answer since the last one doubles it).
        replica_pause_max: a replica's longest pause in seconds.

    Examples:
        >>> import asyncio
        >>> from cerbero_hf import EndpointBackend
        >>> from cerbero_hf.stages.generate.backends import Request
        >>> backend = EndpointBackend("http://10.0.0.1:8080,http://10.0.0.2:8080", concurrency=16)  # two replicas
        >>> backend.urls
        ['http://10.0.0.1:8080', 'http://10.0.0.2:8080']
        >>> asyncio.run(backend.generate(Request(messages=[{"role": "user", "content": "Ciao!"}]))).text  # doctest: +SKIP
        'Ciao! Come posso aiutarti?'
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
        self.replicas = Replicas(self.urls, replica_failures, replica_pause, replica_pause_max)
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop the clients below are bound to
        self._clients: list | None = None
        self._sem: asyncio.Semaphore | None = None

    @property
    def sent_to(self) -> dict:
        """Attempts sent to each replica URL."""
        return self.replicas.sent_to

    @property
    def skipped(self) -> list[str]:
        """Replica URLs where nothing answered the start-up probe, left out of the run."""
        return self.replicas.skipped

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
        return {**out, **self.replicas.describe()}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_loop=None, _clients=None, _sem=None)
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

    def _bind(self) -> tuple[list, asyncio.Semaphore]:
        """(Re)build the loop-bound clients (one per replica) and semaphore for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._clients is None or self._sem is None:
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
                    i = self.replicas.pick(tried)
                    tried.add(i)
                    self.replicas.sending(i)
                    try:
                        if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per request
                            async with asyncio.timeout(self.timeout):
                                result = await self._call(clients[i], request, headers)
                        else:
                            result = await asyncio.wait_for(self._call(clients[i], request, headers), self.timeout)
                    except Exception as err:
                        self.replicas.failed(i, err, judge(err))
                        raise
                    finally:
                        self.replicas.returned(i)
                    self.replicas.answered(i)
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
        self.replicas.probe(lambda once: call_with_retries(once, attempts=self.request_attempts, backoff=self.backoff,
                                                           max_wait=self.backoff_max), min(self.timeout, 10.0))

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
