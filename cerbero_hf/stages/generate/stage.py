"""The ``generate`` stage: seed conversations -> a self-chat corpus, near-duplicates rejected (paper §3.3).

Config: :class:`GenerateConfig` (recipe section ``generate``, CLI ``cerbero-hf generate SEEDS OUTPUT``).
Input: the ``seeds`` stage's folder (columns ``id``, ``messages``, ``source``, ``meta``).
Output: a Hub-layout folder with configs ``default`` (complete and short conversations, same columns; ``meta``
gains per-message ``origin``, ``attempts``, ``rejected``, ``max_sim`` and the run's settings) and ``rejected``
(failed conversations, plus ``rule`` and ``reason``), a ``README.md`` card; the request-replay cache
(``<output>.cache.sqlite``) sits beside it, so re-running the same command resumes.

The generator is an endpoint (``endpoint``: a server URL, or replicas of one model as ``URL1,URL2,...``, balanced
by least requests in flight; ``model``: the name sent to it) or, without an endpoint, a local model (``model``: a
path or Hub id run in this process). With the ``ray`` engine (``--engine ray``, a recipe's ``engine:``), a pool of
Ray actors generates over the endpoint replicas, sharing one diversity store
(:mod:`cerbero_hf.stages.generate.ray_generate`). Two attempt counts are kept apart:
``max_attempts`` is candidates per message position (the diversity filter's retries), ``request_attempts``
is HTTP attempts per request (the network's retries).

Misconfiguration stops the run at once (exit 2, one line) instead of producing a corpus of failed rows: a
missing embedder or local model folder; an endpoint where nothing answers a start-up probe (retried like a
request; of several replicas, the silent ones are skipped with a warning while another answers); the first
requests all failing the same non-transient way (a wrong model name, a missing key), with the server's own
message. A seed conversation holding a message over ``max_chars`` characters is never sent: it goes to
``rejected`` with the reason. A run where more than ``max_failed_share`` of the conversations failed on their
requests (default: more than half) writes its corpus, failed rows included, then ends with one line (exit 2).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cerbero_hf.config import Config, from_dict, key_of, setting
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import result_paths, writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output

INDEXES = ("exact", "hnsw")  # the diversity store's searches: exact matrix products, or approximate FAISS HNSW
BACKENDS = ("endpoint", "local")
MODES = ("chat", "completion")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class GenerateConfig(Config):
    """The generator, its sampling, the self-chat rules and the diversity filter."""

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


def _missing_folder(name: str) -> bool:
    """True when ``name`` is written as a local path (``/``, ``.``, ``~``) and nothing is there (a Hub id is not)."""
    return name.startswith(("/", ".", "~")) and not Path(os.path.expanduser(name)).exists()


@dataclass
class GenerateResult(Result):
    """Counts of one run (conversations, messages, requests, tokens) and the corpus folder."""

    conversations: int = 0  # planned conversations (complete + short + failed)
    complete: int = 0
    short: int = 0  # ended early by a dead end, still >= 4 messages with >= 1 generated
    failed: int = 0  # in the `rejected` config
    accepted_messages: int = 0
    rejected_messages: int = 0  # candidates rejected, by reason below
    rejected_similar: int = 0
    rejected_empty: int = 0
    rejected_length: int = 0
    rejected_too_long: int = 0
    seeds_too_long: int = 0  # seed conversations holding a message over max_chars: never sent, in `rejected`
    requests_sent: int = 0  # HTTP requests sent (local: generate calls), retries and failed ones included
    requests_replayed: int = 0  # answered from the replay cache
    request_retries: int = 0  # of requests_sent, the retries
    failed_requests: int = 0  # requests that failed for good (each fails its conversation)
    tokens_in: int = 0
    tokens_out: int = 0
    store_size: int = 0  # vectors in the diversity store at the end (seed messages included)
    near_duplicates: int | None = None  # on Ray: rows the final order-aware pass moved to `rejected` (expected 0)
    generated: str | None = output()


def make_backend(config: GenerateConfig):
    """The generator backend ``config`` describes (nothing is loaded or connected yet)."""
    from cerbero_hf.stages.generate.backends import EndpointBackend, LocalBackend

    if config.generator() == "endpoint":
        return EndpointBackend(config.endpoint, config.mode, config.model, api_key_env=config.api_key_env,
                               concurrency=config.concurrency, timeout=config.timeout,
                               request_attempts=config.request_attempts, backoff=config.backoff,
                               extra_body=config.extra_body)
    return LocalBackend(config.model, config.mode, device=config.device, max_batch=min(config.concurrency, 32))


@writes_output(lambda config, ctx: result_paths(ctx, ("seeds", "seeds")))
def run_generate(config: GenerateConfig, ctx: Context) -> GenerateResult:
    """Grow the seeds of ``ctx.input("seeds")`` with self-chat and write the corpus folder ``ctx.output``.

    Events for a console (``ctx.on_event``): ``planned`` (``conversations``) once, then one per self-chat
    event with the running counts (``conversations`` when a conversation is finished).
    """
    import os

    import datasets

    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language
    from cerbero_hf.schema import validate
    from cerbero_hf.stages.generate.backends import GeneratorRejected
    from cerbero_hf.stages.generate.embedder import Embedder

    config.generator()
    if config.api_key_env and config.api_key_env not in os.environ:
        raise InputError(f"environment variable {config.api_key_env} is not set (named by "
                         f"{key_of(config, 'api_key_env')})", column=key_of(config, "api_key_env"))
    seeds_path = ctx.input("seeds").seeds
    if not seeds_path:
        raise InputError("the seeds stage recorded no output folder", column="seeds")
    pack = load_language(config.language)
    datasets.disable_progress_bars()
    seeds = load_table(seeds_path)
    validate(seeds, file=str(seeds_path), max_chars=None)  # over max_chars: a rejected conversation (SelfChat)
    key = lambda name: key_of(config, name)  # noqa: E731
    embedder_name = str(config.embedder or pack.embedder)
    if _missing_folder(embedder_name):
        raise InputError(f"{key('embedder')}: no such folder {embedder_name}", column=key("embedder"))
    if config.generator() == "local" and _missing_folder(str(config.model)):
        raise InputError(f"{key('model')}: no such folder {config.model}", column=key("model"))
    backend = make_backend(config)
    if config.generator() == "endpoint":
        _probe(backend, key("endpoint"))
    embedder = Embedder(embedder_name, device=config.device)
    try:
        embedder.load()  # a wrong name stops here, not after the first requests
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{key('embedder')}: cannot load {embedder_name!r}: {first}", column=key("embedder")) from None
    try:
        out = _generate(config, ctx, seeds, backend, embedder)
    except GeneratorRejected as err:
        hint = ""
        if config.generator() == "endpoint" and not config.model and config.mode == "chat":
            hint = f" ({key('model')})"
        raise InputError(f"{err}{hint}", column=key("endpoint")) from None
    from cerbero_hf.stages.generate.corpus import check_failures

    check_failures(out["summary"], config.max_failed_share, key("max_failed_share"), ctx.output)
    return GenerateResult(**out["summary"], generated=str(ctx.output))


def _probe(backend, endpoint_key: str) -> None:
    """Stop with one line when nothing answers at the endpoint (retried like a request)."""
    from cerbero_hf.stages.generate.backends import GenerationError

    try:
        backend.probe()
    except GenerationError as err:
        url = getattr(err, "url", None) or backend.url  # the replica that did not answer
        raise InputError(f"nothing answers at {url}: {err}; is the server running, and is {endpoint_key} "
                         "right?", column=endpoint_key) from None


def selfchat_settings(config: GenerateConfig) -> dict:
    """The :class:`SelfChat` settings of ``config`` (besides backend, embedder, seeds, threshold, seed and cache)."""
    return dict(language=config.language, lengths=tuple(config.lengths), max_attempts=config.max_attempts,
                max_chars=config.max_chars, reject_truncated=not config.keep_truncated, temperature=config.temperature,
                top_p=config.top_p, max_new_tokens=config.max_new_tokens, index=config.index)


def _generate(config: GenerateConfig, ctx: Context, seeds, backend, embedder) -> dict:
    from cerbero_hf.stages.generate.corpus import generate_corpus

    if ctx.engine is not None and ctx.engine.ray:  # fan-out over the endpoint replicas in Ray actors
        from cerbero_hf.engine import ray_session
        from cerbero_hf.stages.generate.ray_generate import generate_on_ray

        with ray_session(ctx.engine) as session:
            return generate_on_ray(config, ctx, seeds, backend, embedder, session)
    return generate_corpus(
        seeds, backend, embedder, ctx.output, max_conversations=config.max_conversations, seed=config.seed,
        threshold=config.threshold, cache_path=(config.cache or "auto") if config.resume else None,
        on_event=ctx.on_event, map_progress=False, command=ctx.command, **selfchat_settings(config))


STAGE = Stage("generate", GenerateConfig, run_generate, GenerateResult, inputs=("seeds",), folder="generated",
              help=__doc__.splitlines()[0])
