"""The one retry policy for HTTP calls: the generator endpoint (async) and the Hub uploads (sync).

Retried: HTTP 408 (request timeout), 429 (too many requests) and every 5xx; connection errors and
timeouts. Not retried: any other status (400, 401, 403, 404, 422, ...), which a second try would only
repeat, and a URL no request can be sent to. The error may be wrapped (``raise X from http_error``): the
whole ``__cause__`` / ``__context__`` chain is looked at, and the first HTTP status found in it decides.
The server's own error text (``{"error": ...}``, ``{"detail": ...}``, ``{"message": ...}`` or the body)
travels with the verdict as one shortened line, so a wrong model name is reported in the server's words.

Waits: a ``Retry-After`` header (seconds or an HTTP date) is honoured, capped at ``max_wait``; otherwise
attempt *k* waits ``uniform(0, min(max_wait, backoff * 2**(k-1)))`` seconds (exponential backoff with full
jitter, so many clients retrying at once spread out)::

    result, attempts = call_with_retries(lambda: api.create_commit(...), attempts=6, backoff=1.0)

huggingface_hub's ``http_backoff`` is synchronous and bound to one request; the endpoint backend needs the
same policy around an async client call, hence this small module.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

RETRY_STATUS = frozenset({408, 429})  # plus every 5xx (see retryable_status)


def retryable_status(status: int) -> bool:
    """True for 408, 429 and 5xx."""
    return status in RETRY_STATUS or 500 <= status <= 599


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date (None when absent or unreadable)."""
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


@dataclass(frozen=True)
class Verdict:
    """What to do about one error.

    Attributes:
        retry: worth another attempt.
        wait: the server's ``Retry-After`` in seconds, if it sent one.
        reason: one line for logs and error messages (``HTTP 503``, ``timeout``, ...).
        kind: ``http``, ``timeout``, ``connection`` or ``other`` (callers may retry more ``other`` errors).
        status: the HTTP status (``kind == "http"``).
        detail: the server's error text, one line, at most :data:`DETAIL_CHARS` characters (``kind == "http"``).
    """

    retry: bool
    wait: float | None
    reason: str
    kind: str
    status: int | None = None
    detail: str | None = None


DETAIL_CHARS = 300


def _text_of(value) -> str | None:
    """The message in a JSON error field: a string, ``{"message": ...}`` (OpenAI) or FastAPI's list of ``msg``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _text_of(value.get("message") or value.get("detail") or value.get("msg"))
    if isinstance(value, list):
        parts = [_text_of(v) for v in value]
        return "; ".join(p for p in parts if p) or None
    return None


def server_message(response, limit: int = DETAIL_CHARS) -> str | None:
    """The error text of an HTTP ``response`` as one line of at most ``limit`` characters (None when empty)."""
    try:
        text = response.text
    except Exception:  # noqa: BLE001 - a streamed or unreadable body has no message to show
        return None
    if not isinstance(text, str) or not text.strip():
        return None
    message = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            message = _text_of(data.get(key))
            if message and message.strip():
                break
    if not message:
        message = re.sub(r"<[^>]+>", " ", text)  # an HTML error page: its words
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit - 1] + "…"


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def classify(err: BaseException) -> Verdict:
    """The :class:`Verdict` for ``err`` (and the errors it wraps) under this module's policy."""
    import httpx2

    chain = list(_chain(err))
    for e in chain:
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            headers = getattr(response, "headers", None) or {}
            wait = retry_after_seconds(headers.get("retry-after")) if hasattr(headers, "get") else None
            return Verdict(retryable_status(status), wait, f"HTTP {status}", "http", status, server_message(response))
    for e in chain:
        if isinstance(e, (httpx2.InvalidURL, httpx2.UnsupportedProtocol)):  # no request can be sent there
            return Verdict(False, None, f"invalid URL ({e})", "other")
    for e in chain:
        if isinstance(e, (TimeoutError, asyncio.TimeoutError, httpx2.TimeoutException)):
            return Verdict(True, None, "timeout", "timeout")
        if isinstance(e, (httpx2.TransportError, ConnectionError)):
            return Verdict(True, None, f"connection error ({type(e).__name__})", "connection")
    first = str(err).splitlines()[0] if str(err) else ""
    return Verdict(False, None, f"{type(err).__name__}: {first}" if first else type(err).__name__, "other")


def is_transient(err: BaseException) -> bool:
    """True for errors worth retrying: HTTP 408/429/5xx, connection errors and timeouts (any in the chain)."""
    return classify(err).retry


def backoff_delay(attempt: int, backoff: float = 1.0, max_wait: float = 60.0,
                  retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if retry_after is not None:
        return min(retry_after, max_wait)
    return random.uniform(0, min(max_wait, backoff * 2 ** (attempt - 1)))


def call_with_retries(fn: Callable[[], Any], *, attempts: int = 5, backoff: float = 1.0, max_wait: float = 60.0,
                      judge: Callable[[BaseException], Verdict] = classify, sleep: Callable[[float], Any] = time.sleep,
                      on_retry: Callable[[Verdict], Any] | None = None) -> tuple[Any, int]:
    """Call ``fn()`` up to ``attempts`` times; returns ``(result, attempts_used)``.

    The last error, or the first one ``judge`` says not to retry, is re-raised unchanged.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except Exception as err:  # noqa: BLE001 - judged below
            verdict = judge(err)
            if not verdict.retry or attempt >= attempts:
                raise
            if on_retry:
                on_retry(verdict)
            sleep(backoff_delay(attempt, backoff, max_wait, verdict.wait))


async def acall_with_retries(fn: Callable[[], Awaitable[Any]], *, attempts: int = 5, backoff: float = 1.0,
                             max_wait: float = 60.0, judge: Callable[[BaseException], Verdict] = classify,
                             on_retry: Callable[[Verdict], Any] | None = None) -> tuple[Any, int]:
    """The async twin of :func:`call_with_retries` (``await fn()``, ``asyncio.sleep`` between attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn(), attempt
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - judged below
            verdict = judge(err)
            if not verdict.retry or attempt >= attempts:
                raise
            if on_retry:
                on_retry(verdict)
            await asyncio.sleep(backoff_delay(attempt, backoff, max_wait, verdict.wait))
