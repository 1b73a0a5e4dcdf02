"""SelfChat: grow seed conversations one message at a time, rejecting near-duplicates (paper §3.3, Fig. 2).

``seeds.map(SelfChat(backend, embedder, seed_texts=...))`` runs asynchronously: datasets 5 detects a
coroutine function and keeps up to 1000 rows in flight on one event loop (``Dataset.map`` with
``inspect.iscoroutinefunction``); the backend's semaphore bounds the requests actually sent.

Per row:

1. Draw the target length L from a per-row RNG seeded with ``(seed, row id)`` (uniform over
   ``lengths``, default {4, 6, 8, 10}, counting seed messages).
2. Start from the first ``min(n, L − 2)`` seed messages, so at least two messages are generated.
3. For each missing position, alternate roles; prompt the generator with the language pack's system prompt for that
   role and the transcript rendered with the pack's tags (:func:`cerbero_hf.transcript.render`), ending with the tag of
   the role to write; parse one message (cut at the next role tag, strip; reject it when empty, over ``max_chars`` or
   cut by the token limit); embed it and reject it when its cosine to any stored vector is > threshold; otherwise
   append it and add its vector to the store.
4. After ``max_attempts`` rejections at one position, trim to the last assistant turn: ``short`` if ≥ 4 messages and
   ≥ 1 generated remain, else ``failed``. A request that fails after the backend's ``request_attempts`` makes the row
   ``failed``. A failed row keeps its messages and its error (for an endpoint, the server's own error text).

Bounds: a seed conversation holding a message longer than ``max_chars`` is ``failed`` at once (nothing of it
is sent, and its messages do not seed the diversity store). With ``fail_fast`` = N, when the first N requests
sent all fail the same non-transient way (the same HTTP 4xx, or the same local error), the whole map stops
with :class:`~cerbero_hf.stages.generate.backends.base.GeneratorRejected` (an input error): the generator's
settings are wrong, and every further row would fail the same way.

Input columns: ``id``, ``messages`` (and ``source``, ``meta``). Output columns: the same, in the corpus schema; ``meta``
gains lists parallel to ``messages`` (``origin`` seed/generated, ``attempts``, ``rejected``, ``rejected_reasons``,
``max_sim``) and ``status``, ``error``, ``target_length``, ``generator`` (model ids, sampling parameters, RNG seed),
``embedder``, ``threshold``, ``tokens_in/out``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
from collections import Counter
from dataclasses import asdict

from cerbero_hf.languages import load_language
from cerbero_hf.schema import get_meta, make_row
from cerbero_hf.stages.generate.backends.base import (
    GenerationError,
    Request,
    Result,
    payload_hash,
)
from cerbero_hf.stages.generate.messages import (  # noqa: F401  (re-exported: the public step helpers)
    REJECT_REASONS,
    build_request,
    parse_message,
    render_transcript,
    watch_first_failures,
)

ROLES = ("user", "assistant")


def _int_seed(*parts) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class SelfChat:
    """An async, picklable row transform for ``Dataset.map`` (see module docstring).

    Args:
        backend: an ``EndpointBackend`` or ``LocalBackend`` (``await backend.generate(request)``).
        embedder: a :class:`cerbero_hf.stages.generate.embedder.Embedder` or a model path/id.
        language: language pack code or YAML path (tags, prompts).
        seed_texts: texts that seed the diversity store (every seed message).
        store: an existing ``EmbeddingStore`` to use instead of building one from ``seed_texts``.
        threshold: reject when cosine > threshold.
        index: the store's search, ``"exact"`` (never misses) or ``"hnsw"`` (approximate, for millions of vectors).
        lengths: target lengths drawn uniformly.
        max_attempts: candidates per position before the conversation ends (HTTP attempts: the backend's).
        max_chars: longest message: a longer candidate is ``too_long``, a seed conversation holding one ``failed``.
        reject_truncated: reject a message cut by the token limit.
        temperature: sampling temperature.
        top_p: nucleus sampling's probability mass.
        max_new_tokens: the token limit of one message.
        seed: the global seed every row's draws and request seeds derive from.
        cache: a ``RequestCache`` or sqlite path for resume, or None.
        fail_fast: stop the map when the first ``fail_fast`` requests sent all fail the same non-transient way (0: never).

    Examples:
        >>> generated = seeds.map(SelfChat(EndpointBackend("http://127.0.0.1:8080"), "sentence-transformers/all-MiniLM-L6-v2",
        ...                                seed_texts=seed_messages(seeds)))  # doctest: +SKIP
    """

    def __init__(self, backend, embedder, *, language="it", seed_texts=(), store=None, threshold: float = 0.9,
                 index: str = "exact", lengths=(4, 6, 8, 10), max_attempts: int = 5, max_chars: int = 8000,
                 reject_truncated: bool = True,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 512, seed: int = 42,
                 cache=None, embed_batch: int = 64, fail_fast: int = 0):
        from cerbero_hf.stages.generate.cache import RequestCache
        from cerbero_hf.stages.generate.embedder import Embedder

        if min(lengths) < 2:
            raise ValueError("target lengths must be >= 2")
        self.backend = backend
        self.embedder = Embedder(str(embedder)) if isinstance(embedder, (str, os.PathLike)) else embedder
        self.pack = load_language(language)
        self.seed_texts = [t for t in dict.fromkeys(seed_texts) if len(t) <= max_chars]
        self.store = store
        self.threshold, self.lengths, self.max_attempts = threshold, tuple(lengths), max_attempts
        self.index = index
        self.max_chars, self.reject_truncated = max_chars, reject_truncated
        self.sampling: dict = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        self.seed = seed
        self.cache = cache if isinstance(cache, RequestCache) or cache is None else RequestCache(cache)
        self.embed_batch = embed_batch
        self.fail_fast = fail_fast
        self._init_runtime()

    def _init_runtime(self) -> None:
        from cerbero_hf.stages.generate.batching import AsyncBatcher

        self._ready = False
        self._embed = AsyncBatcher(lambda texts: list(self.embedder.encode(texts)), max_batch=self.embed_batch)
        self.stats: Counter[str] = Counter()
        self.on_event = None  # optional callback(event, stats) for progress displays; not pickled
        self._first_failures: list | None = []  # the first requests' failures while all failed (None: disarmed)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_ready", "_embed", "stats", "on_event", "_first_failures")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def verdict_key(self) -> str:
        """Identifies the settings a cached verdict depends on (embedder, threshold, parsing)."""
        key: tuple = (self.embedder.model_id, self.threshold, self.max_chars, self.reject_truncated)
        if self.index != "exact":  # an approximate store may decide differently (exact keys stay as they were)
            key += (self.index,)
        return hashlib.sha256(repr(key).encode()).hexdigest()[:16]

    def prepare(self) -> None:
        """Build the store (seed messages + every vector accepted in a cached earlier run). Idempotent."""
        if self._ready:
            return
        from cerbero_hf.stages.generate.store import EmbeddingStore

        if self.store is None:
            dim = self.embedder.dim
            self.store = EmbeddingStore(dim, threshold=self.threshold, index=self.index)
            if self.seed_texts:
                self.store.add(self.embedder.encode(self.seed_texts))
            if self.cache is not None:
                self.store.add(self.cache.accepted_vectors(self.verdict_key, dim))
        self._ready = True

    def close(self) -> None:
        """Stop the batch workers (embeddings, a local model's) an interrupted map left running. Idempotent."""
        self._embed.close()
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    def _emit(self, event: str, n: int = 1) -> None:
        self.stats[event] += n
        if self.on_event is not None:
            self.on_event(event, self.stats)

    def _watch(self, err: GenerationError | None) -> None:
        """Fail fast: raise :class:`GeneratorRejected` when the first ``fail_fast`` requests all failed alike."""
        if self.fail_fast and self._first_failures is not None:  # raised once: rows in flight then fail alone
            first, self._first_failures = self._first_failures, None
            self._first_failures = watch_first_failures(first, err, self.fail_fast, self.backend)

    async def _request(self, request: Request) -> Result:
        """Send one request; count what went on the wire (every attempt), retries and failures."""
        try:
            result = await self.backend.generate(request)
        except GenerationError as err:
            self._emit("requests_sent", err.attempts)
            self._emit("request_retries", err.attempts - 1)
            self._watch(err)
            raise
        self._emit("requests_sent", result.attempts)
        self._emit("request_retries", result.attempts - 1)
        self._watch(None)
        return result

    async def _candidate(self, rid: str, pos: int, attempt: int, request: Request, role: str):
        """One candidate: replayed or requested, parsed, judged. Returns (result, verdict, text, max_sim)."""
        key = (rid, pos, attempt, payload_hash(self.backend, request))
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            result = Result(**cached["result"])
            self._emit("requests_replayed")
        else:
            result = await self._request(request)
            if self.cache is not None:
                self.cache.put_result(key, asdict(result))
            self.stats["tokens_in"] += result.tokens_in
            self.stats["tokens_out"] += result.tokens_out
        text, reason = parse_message(self.pack, result, role, max_chars=self.max_chars,
                                     reject_truncated=self.reject_truncated)
        if reason:
            return result, reason, None, None
        if cached is not None and cached["verdict_key"] == self.verdict_key and cached["verdict"]:
            return result, cached["verdict"], text, cached["max_sim"]  # accepted vectors were preloaded
        vector = (await self._embed.submit(text))
        remote = getattr(self.store, "atry_add", None)  # a shared store in another process: batched, awaited
        accepted, max_sim = (await remote(vector)) if remote else self.store.try_add(vector)  # atomic check+add
        verdict = "accepted" if accepted else "similar"
        if self.cache is not None:
            self.cache.put_verdict(key, self.verdict_key, verdict, max_sim, vector if accepted else None)
        return result, verdict, text, max_sim

    async def __call__(self, row: dict) -> dict:
        self.prepare()
        rid = str(row["id"])
        rng = random.Random(f"{self.seed}:{rid}")
        target = rng.choice(self.lengths)
        seed_msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"] if m["role"] in ROLES]
        conv = seed_msgs[:max(0, min(len(seed_msgs), target - 2))]
        info: dict[str, list] = {"origin": ["seed"] * len(conv), "attempts": [0] * len(conv), "rejected": [0] * len(conv),
                                  "rejected_reasons": [{} for _ in conv], "max_sim": [None] * len(conv)}
        status, error, models, tokens = "complete", None, set(), [0, 0]
        too_long = next(((i, len(m["content"])) for i, m in enumerate(seed_msgs)
                         if len(m["content"]) > self.max_chars), None)
        if too_long is not None:  # never sent, never embedded
            status = "failed"
            error = (f"seed message {too_long[0]} has {too_long[1]} characters, over the maximum of {self.max_chars} "
                     "(max_chars): the conversation was not sent")
            self._emit("seeds_too_long")
        while status == "complete" and len(conv) < target:
            pos = len(conv)
            role = "user" if not conv or conv[-1]["role"] == "assistant" else "assistant"
            reasons, accepted = Counter[str](), False
            for attempt in range(self.max_attempts):
                request = build_request(self.pack, conv, role, seed=_int_seed(self.seed, rid, pos, attempt),
                                        **self.sampling)
                try:
                    result, verdict, text, sim = await self._candidate(rid, pos, attempt, request, role)
                except GenerationError as err:
                    status, error = "failed", f"request for message {pos} failed: {err}"
                    self._emit("request_failures")
                    break
                models.add(result.model)
                tokens[0] += result.tokens_in
                tokens[1] += result.tokens_out
                if verdict == "accepted":
                    conv.append({"role": role, "content": text})
                    for k, v in (("origin", "generated"), ("attempts", attempt + 1),
                                 ("rejected", sum(reasons.values())), ("rejected_reasons", dict(reasons)),
                                 ("max_sim", round(float(sim), 6))):
                        info[k].append(v)
                    self._emit("accepted")
                    accepted = True
                    break
                reasons[verdict] += 1
                self._emit("rejected")
                self._emit(f"rejected_{verdict}")
            if status == "failed":
                break
            if not accepted:
                status, error = self._dead_end(conv, info, pos, role, reasons)
                break
        self._emit(status)
        self._emit("conversations")
        meta = get_meta(row)
        meta.update(info)
        meta.update(seed_id=meta.get("seed_id", rid), status=status, error=error, target_length=target,
                    tokens_in=tokens[0], tokens_out=tokens[1], embedder=self.embedder.model_id,
                    threshold=self.threshold, language=self.pack.code,
                    generator={"model": self.backend.model_id, "server_models": sorted(models),
                               **self.sampling, "stop": [self.pack.user_tag, self.pack.assistant_tag],
                               "rng_seed": self.seed, "max_attempts": self.max_attempts})
        return make_row(rid, conv, "selfchat", meta)

    def _dead_end(self, conv: list, info: dict, pos: int, role: str, reasons: Counter) -> tuple[str, str | None]:
        """Trim to the last assistant turn; ``short`` if ≥ 4 messages and ≥ 1 generated, else ``failed``."""
        why = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items()))
        reason = f"no acceptable {role} message at position {pos} after {self.max_attempts} candidates ({why})"
        keep = len(conv)
        while keep and conv[keep - 1]["role"] != "assistant":
            keep -= 1
        if keep >= 4 and "generated" in info["origin"][:keep]:
            del conv[keep:]
            for values in info.values():
                del values[keep:]
            return "short", reason
        return "failed", reason

    # datasets 5 runs an async map function concurrently when inspect.iscoroutinefunction() is true.
    # On Python 3.11 that test only looks at function-like objects, so an instance exposes the
    # attributes of its async __call__ (on 3.12+ the coroutine marker does the same).
    __code__ = __call__.__code__
    __defaults__ = None
    __kwdefaults__ = None
    __name__ = "SelfChat"
    if hasattr(inspect, "markcoroutinefunction"):
        _is_coroutine_marker = getattr(inspect, "_is_coroutine_mark", None)
