"""The generator interface every backend implements, and what travels through it.

A backend is an object with::

    model_id: str                                 # the model recorded in the output
    stats: dict                                   # requests, retries, failed, tokens_in, tokens_out
    async def generate(request: Request) -> Result  # raises GenerationError when the request fails for good
    async def aclose() -> None
    def describe() -> dict                        # settings safe to record in a card (never a key)

:class:`~cerbero_hf.stages.generate.backends.endpoint.EndpointBackend` talks to a server,
:class:`~cerbero_hf.stages.generate.backends.local.LocalBackend` runs a transformers model in-process. Both
serve self-chat generation and evaluation (:mod:`cerbero_hf.stages.evaluate.generators`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from cerbero_hf.errors import InputError


@dataclass
class Request:
    """One generation request. Chat backends send ``messages``; completion backends send ``prompt``.

    ``temperature`` 0 means greedy decoding; ``top_p`` None leaves the server's default.
    """

    messages: list[dict] = field(default_factory=list)
    prompt: str = ""
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float | None = 0.9
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
    """A request that failed for good (not retryable, or out of attempts).

    Attributes:
        reason: what failed, in short (``HTTP 400``, ``timeout``, ``connection error (ConnectError)``).
        attempts: attempts made (first try included).
        status: the HTTP status, when the server answered one.
        transient: False when a retry would only repeat it (a client error such as 400/401/404/422, a
            local failure): the request, or the configuration behind it, is wrong.
        detail: the server's own error text (one line, shortened, never an API key), when it sent one.
        url: the replica (or replicas) that failed, when the backend has several.
    """

    def __init__(self, reason: str, attempts: int, *, status: int | None = None, transient: bool = True,
                 detail: str | None = None):
        text = f"{reason}: {detail}" if detail else reason
        super().__init__(f"{text} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.reason, self.attempts, self.status, self.transient, self.detail = reason, attempts, status, transient, detail
        self.url: str | None = None

    @property
    def kind(self) -> tuple:
        """Failures of one kind have the same status (or, without one, the same reason and text)."""
        return (self.status,) if self.status is not None else (self.reason, self.detail)


class GeneratorRejected(InputError):
    """The first requests all failed the same non-transient way: the generator's settings are wrong.

    An :class:`~cerbero_hf.errors.InputError` (one line, exit 2), naming the endpoint and the server's message.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, error: GenerationError | None = None):
        super().__init__(message)
        self.endpoint, self.error = endpoint, error


class MalformedResponse(Exception):
    """The server answered 2xx with something we cannot use."""


def finish(reason: str | None) -> str:
    """A server's finish reason as ``"length"`` (cut by the token limit) or ``"stop"`` (anything else)."""
    return "length" if reason == "length" else "stop"


def new_stats() -> dict:
    return {"requests": 0, "retries": 0, "failed": 0, "tokens_in": 0, "tokens_out": 0}


def payload_dict(backend, request: Request) -> dict:
    """What identifies a request for the replay cache: backend kind, mode, model and the request.

    The model is the backend's ``cache_id`` when it has one (an endpoint: its model name, never a replica URL, so
    a cache replays whichever replicas answer), else its ``model_id``.
    """
    model = backend.cache_id if hasattr(backend, "cache_id") else backend.model_id
    return {"backend": type(backend).__name__, "mode": getattr(backend, "mode", ""), "model": model,
            "extra_body": getattr(backend, "extra_body", None), "request": request.to_dict()}


def payload_hash(backend, request: Request) -> str:
    raw = json.dumps(payload_dict(backend, request), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
