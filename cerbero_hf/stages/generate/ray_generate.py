"""Generation fan-out on Ray Data: SelfChat in a pool of actors over the endpoint replicas, one shared store.

What ``run_generate`` runs when the engine is ``ray`` (``cerbero-hf generate --engine ray``, or a recipe's
``engine: {kind: ray}``); same output folder, card and counts as the local run
(:func:`cerbero_hf.stages.generate.corpus.generate_corpus`), rows in plan order.

1. The driver draws the plan (:func:`~cerbero_hf.stages.generate.corpus.plan_conversations`) and cuts it into
   blocks of ``engine.batch_rows`` rows, each with its plan ``order``.
2. It starts ONE named store actor (:mod:`cerbero_hf.stages.generate.store_actor`), preloaded with the seed
   messages and the vectors a cached earlier run accepted (like ``SelfChat.prepare`` does locally).
3. ``map_batches`` with ``ActorPoolStrategy(size=session.workers)``: each actor holds a copy of the run's
   :class:`~cerbero_hf.stages.generate.selfchat.SelfChat` whose store is a proxy of the shared actor and whose
   :class:`~cerbero_hf.stages.generate.backends.EndpointBackend` balances over every replica, with
   ``ceil(concurrency / workers)`` requests in flight (``concurrency`` stays the total bound). An actor runs a
   block's conversations concurrently on its own event loop, as ``datasets.map`` does locally.
4. The driver gathers the rows as blocks finish (progress events), sorts them by ``order`` and writes the folder
   with :func:`~cerbero_hf.stages.generate.corpus.write_corpus`, after the final order-aware near-duplicate pass
   on Ray (:func:`~cerbero_hf.stages.generate.ray_dedup.dedup_on_ray`) as the invariant check: with one shared store it
   finds nothing; rows it rejects go to ``rejected`` with its reason, their number is ``near_duplicates``.

Resume: every actor opens the same sqlite replay cache (WAL: safe across processes on ONE machine). On a
multi-node cluster the cache path must be on storage every node sees with working file locks (not NFS), or use
``--no-resume``; a node that cannot see it keeps its own cache at that path and replays only its own requests.
The generator must be an endpoint: a local model is not loaded into actors.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from cerbero_hf.config import key_of
from cerbero_hf.errors import InputError

_EXTRA = ("order", "stats", "abort")  # columns the workers add to the corpus schema


class GenerateWorker:
    """The class UDF of ``map_batches``: a block of planned rows (+ ``order``) -> finished rows.

    Input columns: ``id``, ``messages``, ``source``, ``meta``, ``order``. Output columns: SelfChat's row
    (same schema), ``order``, ``stats`` (the block's SelfChat counters as JSON, on its first row) and ``abort``
    (the message of :class:`GeneratorRejected`, when the first requests all failed alike: the driver stops).
    """

    def __init__(self, chat, concurrency: int, threads: int = 1):
        import torch

        torch.set_num_threads(max(1, threads))
        self.chat = chat
        if hasattr(chat.backend, "concurrency"):
            chat.backend.concurrency = concurrency
        self.loop = asyncio.new_event_loop()  # the actor's own loop: clients and batchers stay bound to it
        self.lock = threading.Lock()  # Ray may call from different threads; the loop runs one batch at a time

    async def _rows(self, rows: list[dict]) -> list:
        return await asyncio.gather(*(self.chat(row) for row in rows), return_exceptions=True)

    def __call__(self, batch):
        import pyarrow as pa

        from cerbero_hf.schema import features
        from cerbero_hf.stages.generate.backends import GeneratorRejected

        rows = batch.to_pylist()
        with self.lock:
            before = Counter(self.chat.stats)
            self.chat.prepare()
            done = self.loop.run_until_complete(self._rows([{k: r[k] for k in features()} for r in rows]))
            delta = Counter(self.chat.stats)
            delta.subtract(before)
        abort = next((str(d) for d in done if isinstance(d, GeneratorRejected)), None)
        error = next((d for d in done if isinstance(d, BaseException) and not isinstance(d, GeneratorRejected)), None)
        if error is not None:
            raise error
        if abort is not None:
            done = [dict(r, meta="{}") for r in rows]
        out = pa.Table.from_pylist([{k: d[k] for k in features()} for d in done], schema=features().arrow_schema)
        n = len(rows)
        stats = [json.dumps({k: v for k, v in delta.items() if v})] + [None] * (n - 1)
        return (out.append_column("order", pa.array([r["order"] for r in rows], pa.int64()))
                .append_column("stats", pa.array(stats, pa.string()))
                .append_column("abort", pa.array([abort] * n, pa.string())))


def _blocks(plan, batch_rows: int) -> list:
    """The plan as Arrow tables of ``batch_rows`` rows, each row with its plan ``order``."""
    import pyarrow as pa

    table = plan.with_format("arrow")[:]
    table = table.append_column("order", pa.array(range(len(table)), pa.int64()))
    return [table.slice(i, batch_rows) for i in range(0, len(table), batch_rows)]


def final_pass(embedder, threshold: float, initial, session=None):
    """The invariant check as :func:`write_corpus` wants it: kept rows -> (kept rows, rejected rows).

    With a ``session``, the pass runs on Ray (:func:`~cerbero_hf.stages.generate.ray_dedup.dedup_on_ray`:
    embeddings in the session's actors, the order-aware pass on one task); without, in this process.
    """
    from cerbero_hf.schema import features
    from cerbero_hf.stages.generate.corpus import _table
    from cerbero_hf.stages.generate.dedup import dedup_dataset
    from cerbero_hf.stages.generate.ray_dedup import dedup_on_ray

    def check(kept: list[dict]):
        if not kept:
            return kept, []
        ds = _table(kept, features())
        start = None if not len(initial) else initial
        if session is not None:
            good, bad = dedup_on_ray(ds, session, embedder, threshold=threshold, initial=start)
        else:
            good, bad = dedup_dataset(ds, embedder, threshold=threshold, initial=start)
        return list(good), list(bad)

    return check


def generate_on_ray(config, ctx, seeds, backend, embedder, session, *, shared_store: bool = True) -> dict:
    """Generate the corpus of ``seeds`` in ``session``'s actors and write ``ctx.output``; returns the summary.

    Args:
        config: the stage's :class:`~cerbero_hf.stages.generate.config.GenerateConfig`.
        ctx: its :class:`~cerbero_hf.stages.base.Context` (``output``, ``on_event``, ``command``).
        seeds: the seed Dataset; backend: an :class:`EndpointBackend` (probed); embedder: a loaded ``Embedder``.
        session: a :class:`cerbero_hf.engine.RaySession` (``workers``, ``actor_options()``).
        shared_store: False gives each worker its own store (tests only: shows what the shared one prevents).

    Returns:
        ``{"params", "summary"}`` like :func:`~cerbero_hf.stages.generate.corpus.generate_corpus`, the summary
        with ``near_duplicates``.
    """
    import uuid

    import numpy as np
    import ray
    from ray.data import ActorPoolStrategy

    from cerbero_hf.stages.generate.backends import EndpointBackend, GeneratorRejected
    from cerbero_hf.stages.generate.config import selfchat_settings
    from cerbero_hf.stages.generate.corpus import make_selfchat, open_cache, plan_conversations, write_corpus
    from cerbero_hf.stages.generate.store_actor import StoreProxy, create_store_actor

    if not isinstance(backend, EndpointBackend):
        raise InputError(f"generation on Ray fans out over endpoint replicas: set {key_of(config, 'endpoint')} "
                         "(URL1,URL2,...) or run a local model without the ray engine", column=key_of(config, "endpoint"))
    out_dir = Path(ctx.output)
    cache = open_cache((config.cache or "auto") if config.resume else None, out_dir)
    plan = plan_conversations(seeds, config.max_conversations, config.seed)
    chat = make_selfchat(seeds, backend, embedder, conversations=len(plan), threshold=config.threshold,
                         seed=config.seed, cache=cache, **selfchat_settings(config))
    dim = embedder.dim
    seed_vectors = embedder.encode(chat.seed_texts) if chat.seed_texts else np.zeros((0, dim), np.float32)
    cached = cache.accepted_vectors(chat.verdict_key, dim) if cache is not None else np.zeros((0, dim), np.float32)
    actor = None
    if shared_store:
        actor = create_store_actor(dim, config.threshold, config.index, preload=[seed_vectors, cached],
                                   run_id=uuid.uuid4().hex[:12])
        chat.store = StoreProxy(actor, config.index, config.threshold)
    if ctx.on_event is not None:
        ctx.on_event("planned", {"conversations": len(plan)})
    per_actor = max(1, math.ceil(backend.concurrency / session.workers))
    stats: Counter[str] = Counter()
    tables: list = []
    try:
        ds = ray.data.from_arrow(_blocks(plan, session.config.batch_rows)).map_batches(
            GenerateWorker, fn_constructor_kwargs={"chat": chat, "concurrency": per_actor,
                                                   "threads": session.torch_threads},
            batch_format="pyarrow", batch_size=None, compute=ActorPoolStrategy(size=session.workers),
            **session.actor_options())
        # pyarrow Tables (batch_format="pyarrow"); ray's annotation lists every batch format's type
        batches: Iterable[Any] = ds.iter_batches(batch_size=None, batch_format="pyarrow")
        for table in batches:
            abort = table.column("abort")[0].as_py() if len(table) else None
            if abort:
                raise GeneratorRejected(abort)
            for value in table.column("stats").to_pylist():
                stats.update(json.loads(value) if value else {})
            tables.append(table)
            if ctx.on_event is not None:
                for _ in range(len(table)):
                    ctx.on_event("conversations", stats)
        store_size = len(chat.store) if shared_store else 0
    finally:
        if actor is not None:
            ray.kill(actor)
    if not shared_store:  # the workers' stores are gone with them
        from cerbero_hf.stages.generate.store import EmbeddingStore

        chat.store = EmbeddingStore(dim, config.threshold, config.index)
    rows = _rows_in_order(tables)
    chat.stats = stats
    result = write_corpus(out_dir, rows, chat, stats, seed_conversations=len(seeds), command=ctx.command,
                          store_size=store_size, final_pass=final_pass(embedder, config.threshold, seed_vectors, session))
    if cache is not None:
        cache.close()
    return result


def _rows_in_order(tables: list) -> list[dict]:
    """The workers' tables as corpus rows, sorted by plan ``order`` (Ray Data does not keep it)."""
    import pyarrow as pa

    if not tables:
        return []
    table = pa.concat_tables(tables).sort_by("order")
    return table.drop_columns(list(_EXTRA)).to_pylist()
