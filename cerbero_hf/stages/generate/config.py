"""The ``generate`` stage's settings: :class:`GenerateConfig` (recipe section ``generate``, the flags of
``cerbero-hf generate``), declared once here and read by the stage (:mod:`.stage`), the diversity store
(:data:`INDEXES`) and the Ray fan-out (:func:`selfchat_settings`). :mod:`.stage` explains what they do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cerbero_hf.config import Config, from_dict, key_of, setting
from cerbero_hf.errors import InputError

INDEXES = ("exact", "hnsw")  # the diversity store's searches: exact matrix products, or approximate FAISS HNSW
BACKENDS = ("endpoint", "local")
MODES = ("chat", "completion")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class GenerateConfig(Config):
    """The generator, its sampling, the self-chat rules and the diversity filter.

    Examples:
        >>> from cerbero_hf import GenerateConfig
        >>> config = GenerateConfig(endpoint="http://127.0.0.1:8080", threshold=0.85)
        >>> config.lengths, config.temperature, config.top_p
        ([4, 6, 8, 10], 0.7, 0.9)
        >>> GenerateConfig(threshold=1.5)
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: column 'generate.threshold': generate.threshold must be <= 1, got 1.5
    """

    SECTION = "generate"
    # -- the generator --------------------------------------------------------------------------------
    endpoint: str | None = setting(None, help="Generator server URL, or URL1,URL2,... for replicas of one model. "
                                              "Without it, --model runs in this process.")
    model: str | None = setting(None, help="Model name sent to --endpoint; without it, a local path or Hub id run "
                                           "in this process.")
    backend: str | None = setting(None, choices=BACKENDS, help="endpoint or local (default: endpoint when "
                                                               "--endpoint is set, else local).")
    mode: str = setting("chat", choices=MODES, help="chat: /v1/chat/completions; completion: TGI text_generation.")
    api_key_env: str | None = setting(None, help="NAME of the variable holding the API key (never printed).")
    extra_body: dict | str | None = setting(None, help="JSON object of extra fields for chat requests.")
    concurrency: int = setting(64, ge=1, help="Requests in flight at most (a local model batches up to 32).")
    timeout: float = setting(300.0, gt=0, help="Seconds per request attempt.")
    request_attempts: int = setting(5, ge=1, help="HTTP attempts per request (retries on 408/429/5xx, connection "
                                                  "errors, timeouts).")
    backoff: float = setting(1.0, ge=0, help="Base retry delay in seconds (exponential, jittered; a Retry-After "
                                             "header wins).")
    max_failed_share: float = setting(0.5, ge=0, le=1, help="Share of failed conversations that ends the run with "
                                      "an error, after writing the corpus (1: never).")
    device: str = setting("cpu", help="Embedder and local generator device.")
    # -- sampling -------------------------------------------------------------------------------------
    max_new_tokens: int = setting(512, ge=1, help="Token limit per message.")
    temperature: float = setting(0.7, ge=0, help="Sampling temperature.")
    top_p: float = setting(0.9, gt=0, le=1, help="Nucleus sampling top_p.")
    # -- self-chat ------------------------------------------------------------------------------------
    language: str = setting("it", help="Language pack: code or YAML file.")
    seed: int = setting(42, help="Global RNG seed (lengths, request seeds, seed order).")
    max_conversations: int | None = setting(None, ge=1, help="Conversations to generate (default: one per seed).")
    lengths: list[int] = setting(default_factory=lambda: [4, 6, 8, 10], item_ge=2,
                                 help="Target lengths, drawn uniformly (messages, seed included).")
    max_attempts: int = setting(5, ge=1, help="Candidates per message position before a conversation ends.")
    max_chars: int = setting(8000, ge=1, help="Longest message in characters (default 8000): a longer generated one "
                                              "is rejected (too_long), a seed conversation holding one goes to "
                                              "`rejected` unsent.")
    keep_truncated: bool = setting(False, help="Accept messages cut by the token limit.")
    # -- diversity filter -----------------------------------------------------------------------------
    embedder: str | None = setting(None, help="Embedding model (default: the language pack's).")
    threshold: float = setting(0.9, ge=-1, le=1, help="Reject a message whose cosine to a stored one is above this.")
    index: str = setting("exact", choices=INDEXES, help="Diversity store search: exact, or hnsw (approximate).")
    # -- resume ---------------------------------------------------------------------------------------
    resume: bool = setting(True, help="Keep a replay cache so a re-run resumes; --no-resume sends every "
                                      "request.")
    cache: str | None = setting(None, help="Replay cache file (default: OUTPUT.cache.sqlite).")

    def __post_init__(self) -> None:
        super().__post_init__()
        key = lambda name: key_of(self, name)  # noqa: E731
        if isinstance(self.extra_body, str):  # from the command line
            try:
                self.extra_body = json.loads(self.extra_body) if self.extra_body.strip() else None
            except ValueError:
                raise InputError(f"{key('extra_body')} must be a JSON object", column=key("extra_body")) from None
        if self.extra_body is not None and not isinstance(self.extra_body, dict):
            raise InputError(f"{key('extra_body')} must be a JSON object", column=key("extra_body"))
        if not self.lengths:
            raise InputError(f"{key('lengths')} must list at least one length", column=key("lengths"))
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # never echo the value: it may be the key itself
            raise InputError(f"{key('api_key_env')} must be the NAME of an environment variable (e.g. HF_TOKEN), "
                             "not the key", column=key("api_key_env"))
        urls = [u.strip() for u in self.endpoint.split(",")] if self.endpoint is not None else []
        if any(not _is_url(u) for u in urls):
            raise InputError(f"{key('endpoint')} must be an http:// or https:// URL (or URL1,URL2,...), got "
                             f"{next(u for u in urls if not _is_url(u))!r}", column=key("endpoint"))
        if len({u.rstrip("/") for u in urls}) < len(urls):
            raise InputError(f"{key('endpoint')} lists a URL twice", column=key("endpoint"))
        if self.backend == "endpoint" and not self.endpoint:
            raise InputError(f"{key('endpoint')} must be set when {key('backend')} is endpoint", column=key("endpoint"))
        if self.backend == "local":
            if not self.model:
                raise InputError(f"{key('model')} must be set when {key('backend')} is local", column=key("model"))
            if self.endpoint:
                raise InputError(f"{key('endpoint')} is set but {key('backend')} is local: drop one",
                                 column=key("endpoint"))

    def generator(self) -> str:
        """``"endpoint"`` or ``"local"``: the backend this config runs (an input error when neither is given)."""
        if self.backend:
            return self.backend
        if self.endpoint:
            return "endpoint"
        if self.model:
            return "local"
        raise InputError(f"no generator: set {key_of(self, 'endpoint')} (a server URL) or {key_of(self, 'model')} "
                         "(a local model path or Hub id)", column=key_of(self, "endpoint"))

    @classmethod
    def from_recipe(cls, section: dict | None, *, file: str | None = None, defaults: dict | None = None,
                    enabled: bool = True) -> "GenerateConfig":
        """The recipe's ``generate:`` mapping; an enabled stage must name its generator at load time."""
        config = from_dict(cls, section, file=file, defaults=defaults)
        if enabled:
            try:
                config.generator()
            except InputError as err:
                raise InputError(err.message, file=file, column=err.column) from None
        return config


def _is_url(text: str) -> bool:
    """An http(s) URL with a host and no spaces."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:  # e.g. a bad port
        return False
    return parts.scheme in ("http", "https") and bool(host) and not re.search(r"\s", text)


def selfchat_settings(config: GenerateConfig) -> dict:
    """The :class:`SelfChat` settings of ``config`` (besides backend, embedder, seeds, threshold, seed and cache)."""
    return dict(language=config.language, lengths=tuple(config.lengths), max_attempts=config.max_attempts,
                max_chars=config.max_chars, reject_truncated=not config.keep_truncated, temperature=config.temperature,
                top_p=config.top_p, max_new_tokens=config.max_new_tokens, index=config.index)
