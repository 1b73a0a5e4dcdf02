"""The ``generate`` stage: seed conversations -> a self-chat corpus, near-duplicates rejected (paper §3.3).

Config: :class:`~cerbero_hf.stages.generate.config.GenerateConfig` (recipe section ``generate``, CLI
``cerbero-hf generate SEEDS OUTPUT``), re-exported here.
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

import os
from dataclasses import dataclass
from pathlib import Path

from cerbero_hf.config import key_of
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import result_paths, writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output
from cerbero_hf.stages.generate.config import GenerateConfig, selfchat_settings


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
        # GenerateConfig.__post_init__ made sure of both: an endpoint is set, and extra_body is parsed JSON
        assert config.endpoint is not None and not isinstance(config.extra_body, str)
        return EndpointBackend(config.endpoint, config.mode, config.model, api_key_env=config.api_key_env,
                               concurrency=config.concurrency, timeout=config.timeout,
                               request_attempts=config.request_attempts, backoff=config.backoff,
                               extra_body=config.extra_body)
    assert config.model is not None  # generator() is "local" only with a model
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
    seeds_path = getattr(ctx.input("seeds"), "seeds", None)
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
