"""One diversity store for every generation worker on Ray: a named actor, and the proxy SelfChat talks to.

A store per worker would let near-duplicates through: two workers accept the same message, each checking only
its own store. :func:`create_store_actor` (called once by the driver) starts one actor holding an
:class:`~cerbero_hf.stages.generate.store.EmbeddingStore`, named ``cerbero-hf-store-<run id>``; every worker
gets a :class:`StoreProxy` around its handle in place of SelfChat's store.

Calls are batched: a worker's concurrent conversations ask :meth:`StoreProxy.atry_add` (what SelfChat awaits
when its store has it), the proxy sends everything queued since its last call as ONE
:meth:`EmbeddingStore.accept_batch` (checked in order, accepted ones added: as if ``try_add`` ran on each in
turn), and at most one call per worker is in flight. The actor runs one call at a time, so a check and its add
stay atomic across workers. The actor reserves no CPU (``num_cpus=0``): its matrix products are short, and a
CPU held by it could leave Ray Data's read/write tasks none (ray-project/ray#44687).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np


class StoreServer:
    """The actor's body: an :class:`EmbeddingStore` (``dim``, ``threshold``, ``index``) behind remote calls."""

    def __init__(self, dim: int, threshold: float, index: str = "exact"):
        import os

        from threadpoolctl import threadpool_limits

        from cerbero_hf.stages.generate.store import EmbeddingStore

        # Ray gives an actor with no CPU one BLAS thread; every worker waits on this actor's matrix products,
        # which are short and batched: let them use the node's cores.
        self._threads = threadpool_limits(limits=os.cpu_count() or 1, user_api="blas")

        self.store = EmbeddingStore(dim, threshold=threshold, index=index)

    def add(self, vectors) -> int:
        """Add ``vectors`` unconditionally (seed messages, vectors accepted in a cached run); returns the size."""
        if len(vectors):
            self.store.add(vectors)
        return len(self.store)

    def accept_batch(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`EmbeddingStore.accept_batch`: ``(accepted mask, max_sims)``."""
        return self.store.accept_batch(vectors)

    def size(self) -> int:
        return len(self.store)


def create_store_actor(dim: int, threshold: float, index: str = "exact", preload=(), run_id: str | None = None):
    """Start the run's store actor (named ``cerbero-hf-store-<run_id>``), add ``preload``; returns its handle.

    Args:
        dim, threshold, index: the store's settings (see :class:`EmbeddingStore`).
        preload: arrays of vectors added unconditionally, in order (seed messages, then cached accepted ones).
        run_id: the name's suffix (default: a random one).
    """
    import ray

    name = f"cerbero-hf-store-{run_id or uuid.uuid4().hex[:12]}"
    # an ActorHandle; Any here because ray's annotations give its methods the plain signatures, without .remote
    actor: Any = ray.remote(StoreServer).options(name=name, num_cpus=0, max_restarts=0).remote(dim, threshold, index)
    for vectors in preload:
        if len(vectors):
            ray.get(actor.add.remote(np.asarray(vectors, dtype=np.float32)))
    ray.get(actor.size.remote())  # started and loaded before any worker asks
    return actor


class StoreProxy:
    """What a worker's SelfChat uses as its store: the interface of :class:`EmbeddingStore` over the actor.

    Picklable (the actor handle travels; the queue does not). ``atry_add`` is the batched path (see the module
    docstring); ``try_add``, ``add``, ``accept_batch`` and ``len()`` are blocking single calls.
    """

    def __init__(self, actor, index: str = "exact", threshold: float = 0.9):
        self.actor, self.index, self.threshold = actor, index, threshold
        self.calls = 0  # remote accept_batch calls made by this copy
        self._pending: list = []
        self._flusher: asyncio.Task | None = None

    def __getstate__(self) -> dict:
        return {"actor": self.actor, "index": self.index, "threshold": self.threshold}

    def __setstate__(self, state: dict) -> None:
        StoreProxy.__init__(self, state["actor"], state["index"], state["threshold"])

    async def atry_add(self, vector) -> tuple[bool, float]:
        """Check ``vector`` and add it if novel, batched with the other coroutines' calls; ``(accepted, max_sim)``."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((np.asarray(vector, dtype=np.float32).reshape(-1), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the coroutines woken in this step queue theirs
        while self._pending:
            batch, self._pending = self._pending, []
            self.calls += 1
            try:
                mask, sims = await self.actor.accept_batch.remote(np.stack([v for v, _ in batch]))
            except Exception as err:  # noqa: BLE001 - handed to every waiting caller
                for _, done in batch:
                    if not done.done():
                        done.set_exception(err)
                continue
            for (_, done), ok, sim in zip(batch, mask, sims):
                if not done.done():
                    done.set_result((bool(ok), float(sim)))

    def try_add(self, vector) -> tuple[bool, float]:
        mask, sims = self.accept_batch(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        return bool(mask[0]), float(sims[0])

    def accept_batch(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        import ray

        self.calls += 1
        return ray.get(self.actor.accept_batch.remote(np.asarray(vectors, dtype=np.float32)))

    def add(self, vectors) -> None:
        import ray

        ray.get(self.actor.add.remote(np.asarray(vectors, dtype=np.float32)))

    def __len__(self) -> int:
        import ray

        return ray.get(self.actor.size.remote())
