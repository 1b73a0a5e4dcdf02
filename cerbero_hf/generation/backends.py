"""Generator backends: one small async interface, ``await backend.generate(request) -> Result``.

- :class:`EndpointBackend` (production, METHOD.md D2): ``huggingface_hub.AsyncInferenceClient(base_url=...)``.
  ``mode="chat"`` posts ``/v1/chat/completions`` (TGI Messages API, vLLM, SGLang, llama.cpp,
  ``transformers serve``, which needs ``model=`` set to the path it serves); ``mode="completion"`` calls TGI
  ``text_generation`` on the rendered transcript with stop sequences and ``details=True``.
- :class:`LocalBackend` (embedded default, no server): an in-process transformers model; concurrent
  requests are batched into one left-padded ``generate`` call run in a worker thread.

Reliability (D11), in :class:`EndpointBackend`: a per-request timeout; retries with exponential backoff and
full jitter on 408/429/5xx, connection errors, timeouts and malformed responses, honouring ``Retry-After``;
at most ``max_attempts`` attempts; at most ``concurrency`` requests in flight. huggingface_hub does not
retry by itself (huggingface_hub#4703). A request that still fails raises :class:`GenerationError`.

The API key is read from the environment variable named by ``api_key_env`` when the client is built; it is
never stored in the pickled state, printed or written anywhere.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class Request:
    """One generation request. Chat backends send ``messages``; completion backends send ``prompt``."""

    messages: list[dict] = field(default_factory=list)
    prompt: str = ""
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    """What a backend returns. ``finish_reason`` is ``"stop"`` or ``"length"`` (normalised)."""

    text: str
    finish_reason: str
    tokens_in: int
    tokens_out: int
    model: str
    attempts: int = 1


class GenerationError(Exception):
    """A request that failed for good (not retryable, or out of attempts)."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(f"{reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.reason = reason
        self.attempts = attempts


class MalformedResponse(Exception):
    """The server answered 2xx with something we cannot use."""


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify(err: BaseException) -> tuple[bool, float | None, str]:
    """Return ``(retryable, retry_after_seconds, reason)`` for an exception raised by a request."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError

    if isinstance(err, TextGenerationError) and isinstance(err.__cause__, HfHubHTTPError):
        err = err.__cause__  # TGI errors (OverloadedError, ...) wrap the HTTP error: judge by its status
    if isinstance(err, HfHubHTTPError) and getattr(err, "response", None) is not None:
        status = err.response.status_code
        hint = retry_after_seconds(err.response.headers.get("retry-after"))
        return status in RETRY_STATUS or status >= 500, hint, f"HTTP {status}"
    if isinstance(err, (InferenceTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return True, None, "timeout"
    if isinstance(err, (httpx2.TransportError, ConnectionError)):
        return True, None, f"connection error ({type(err).__name__})"
    if isinstance(err, (MalformedResponse, ValueError, KeyError, TypeError, IndexError, AttributeError)):
        return True, None, f"malformed response ({type(err).__name__})"
    return False, None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


class EndpointBackend:
    """A text-generation endpoint behind ``huggingface_hub.AsyncInferenceClient``.

    Args:
        url: the server's base URL (e.g. ``http://127.0.0.1:8080``).
        mode: ``"chat"`` (``/v1/chat/completions``) or ``"completion"`` (TGI ``text_generation``).
        model: the ``model`` field sent in chat mode (``transformers serve`` needs the path it serves;
            other servers ignore it or need their served name). Also the model id recorded when the
            server does not report one.
        api_key_env: name of the environment variable holding the API key (read, never logged).
        concurrency: the most requests in flight at once.
        timeout: seconds per attempt.
        max_attempts: attempts per request (first try included).
        backoff: base delay in seconds; attempt k waits ``uniform(0, min(backoff_max, backoff * 2**k))``
            unless the server sent ``Retry-After``.
        extra_body: extra JSON fields for chat requests (server-specific options, e.g. vLLM's ``top_k``, or
            ``transformers serve``'s ``generation_config``: it samples only when the model's generation
            config has ``do_sample=True`` and otherwise ignores ``temperature``).
    """

    def __init__(self, url: str, mode: str = "chat", model: str | None = None, *, api_key_env: str | None = None,
                 concurrency: int = 64, timeout: float = 300.0, max_attempts: int = 5, backoff: float = 1.0,
                 backoff_max: float = 60.0, extra_body: dict | None = None):
        if mode not in ("chat", "completion"):
            raise ValueError(f"mode must be 'chat' or 'completion', got {mode!r}")
        self.url, self.mode, self.model = url.rstrip("/"), mode, model
        self.api_key_env = api_key_env
        self.extra_body = extra_body
        self.concurrency, self.timeout = concurrency, timeout
        self.max_attempts, self.backoff, self.backoff_max = max_attempts, backoff, backoff_max
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "tokens_in": 0, "tokens_out": 0}
        self._loop = self._client = self._sem = None

    @property
    def model_id(self) -> str:
        return self.model or self.url

    def describe(self) -> dict:
        """Settings safe to record in a card (no key)."""
        return {"backend": "endpoint", "url": self.url, "mode": self.mode, "model": self.model_id,
                "timeout": self.timeout, "max_attempts": self.max_attempts, "concurrency": self.concurrency,
                "extra_body": self.extra_body}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_loop=None, _client=None, _sem=None)
        return state

    def _bind(self):
        """(Re)build the loop-bound client and semaphore for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import httpx2
            from huggingface_hub import AsyncInferenceClient

            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            client = AsyncInferenceClient(base_url=self.url, api_key=key or None, timeout=self.timeout)
            # The default httpx pool caps at 100 connections; size it to our concurrency bound.
            limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            client._async_client = httpx2.AsyncClient(limits=limits, follow_redirects=True, timeout=None)
            client.exit_stack.push_async_callback(client._async_client.aclose)
            self._loop, self._client, self._sem = loop, client, asyncio.Semaphore(self.concurrency)
        return self._client, self._sem

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._loop = self._client = self._sem = None

    async def generate(self, request: Request) -> Result:
        client, sem = self._bind()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with sem:
                    self.stats["requests"] += 1
                    if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per request
                        async with asyncio.timeout(self.timeout):
                            result = await self._call(client, request)
                    else:
                        result = await asyncio.wait_for(self._call(client, request), self.timeout)
                result.attempts = attempt
                self.stats["tokens_in"] += result.tokens_in
                self.stats["tokens_out"] += result.tokens_out
                return result
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - classified below
                retry, hint, reason = classify(err)
                if not retry or attempt >= self.max_attempts:
                    self.stats["failed"] += 1
                    raise GenerationError(reason, attempt) from None
                self.stats["retries"] += 1
                cap = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(min(hint, self.backoff_max) if hint is not None else random.uniform(0, cap))

    async def _call(self, client, request: Request) -> Result:
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
            return Result(text or "", _finish(choice.finish_reason), int(getattr(usage, "prompt_tokens", 0) or 0),
                          int(getattr(usage, "completion_tokens", 0) or 0), out.model or self.model_id)
        out = await client.text_generation(
            request.prompt, details=True, max_new_tokens=request.max_new_tokens, do_sample=request.temperature > 0,
            temperature=request.temperature or None, top_p=request.top_p, stop=request.stop or None,
            seed=request.seed)
        if isinstance(out, str) or getattr(out, "generated_text", None) is None:
            raise MalformedResponse("no generated_text/details")
        details = out.details
        prefill = getattr(details, "prefill", None) or []
        return Result(out.generated_text, _finish(getattr(details, "finish_reason", None)), len(prefill),
                      int(getattr(details, "generated_tokens", 0) or 0), self.model_id)


class LocalBackend:
    """An in-process transformers causal LM that batches concurrent requests (no server needed).

    Args:
        model: local path (or Hub id) of a causal LM with a tokenizer.
        mode: ``"chat"`` applies the tokenizer's chat template to ``request.messages``;
            ``"completion"`` feeds ``request.prompt`` as is.
        device: torch device.
        max_batch: the most requests per ``generate`` call.

    One batch shares one set of sampling parameters and one torch seed (the first request's), so a
    per-request seed is not honoured exactly under batching.
    """

    def __init__(self, model: str, mode: str = "chat", *, device: str = "cpu", max_batch: int = 16):
        from cerbero_hf.generation.batching import AsyncBatcher

        self.model, self.mode, self.device, self.max_batch = str(model), mode, device, max_batch
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "tokens_in": 0, "tokens_out": 0}
        self._lm = self._tok = None
        self._batcher = AsyncBatcher(self._generate_batch, max_batch=max_batch,
                                     key=lambda r: (r.max_new_tokens, r.temperature, r.top_p, tuple(r.stop)))

    @property
    def model_id(self) -> str:
        return self.model

    def describe(self) -> dict:
        return {"backend": "local", "model": self.model, "mode": self.mode, "device": self.device,
                "max_batch": self.max_batch}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_lm=None, _tok=None)
        return state

    async def aclose(self) -> None:
        return None

    async def generate(self, request: Request) -> Result:
        self.stats["requests"] += 1
        try:
            result = await self._batcher.submit(request)
        except Exception as err:  # noqa: BLE001 - a local failure is final
            self.stats["failed"] += 1
            raise GenerationError(f"{type(err).__name__}: {err}", 1) from err
        self.stats["tokens_in"] += result.tokens_in
        self.stats["tokens_out"] += result.tokens_out
        return result

    def _load(self):
        if self._lm is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.model)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self._lm = AutoModelForCausalLM.from_pretrained(self.model).to(self.device).eval()
            self._tok = tok
        return self._lm, self._tok

    def _generate_batch(self, requests: list[Request]) -> list[Result]:
        import torch

        lm, tok = self._load()
        if self.mode == "chat":
            texts = [tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) for r in requests]
        else:
            texts = [r.prompt for r in requests]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=self.mode != "chat").to(self.device)
        first = requests[0]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        kwargs = {"do_sample": first.temperature > 0, "max_new_tokens": first.max_new_tokens,
                  "pad_token_id": tok.pad_token_id}
        if first.temperature > 0:
            kwargs.update(temperature=first.temperature, top_p=first.top_p)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=tok)
        with torch.no_grad():
            out = lm.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        specials = {tok.pad_token_id, tok.eos_token_id}
        results = []
        for i, r in enumerate(requests):
            gen = out[i, prompt_len:].tolist()
            n_out = next((k + 1 for k, t in enumerate(gen) if t in specials), len(gen))
            text = tok.decode(gen[:n_out], skip_special_tokens=True)
            cut = min((text.find(s) for s in r.stop if s in text), default=-1)
            stopped = cut >= 0 or (n_out < len(gen)) or (gen and gen[n_out - 1] in specials)
            if cut >= 0:
                text = text[:cut]
            results.append(Result(text, "stop" if stopped or n_out < r.max_new_tokens else "length",
                                  int(enc["attention_mask"][i].sum()), n_out, self.model))
        return results


def payload_dict(backend, request: Request) -> dict:
    """What identifies a request for the replay cache: backend kind, mode, model and the request."""
    return {"backend": type(backend).__name__, "mode": getattr(backend, "mode", ""), "model": backend.model_id,
            "extra_body": getattr(backend, "extra_body", None), "request": request.to_dict()}


def payload_hash(backend, request: Request) -> str:
    import hashlib

    raw = json.dumps(payload_dict(backend, request), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
