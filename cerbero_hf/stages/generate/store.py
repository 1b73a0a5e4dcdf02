"""The embedding diversity store (paper §3.3): the novelty rule every generated message must pass.

Every message the generator proposes is embedded with a sentence encoder and compared with every
vector already in the store; it is rejected when its cosine similarity to **any** of them is
strictly above the threshold (0.9: a similarity of exactly 0.9 is accepted). Vectors are
L2-normalised, so the inner product is the cosine.

* :class:`~cerbero_hf.stages.generate.embedder.Embedder` wraps a sentence-transformers model (loaded lazily,
  picklable).
* :class:`EmbeddingStore` is the growing store: exact search by matrix products (default) or an
  approximate FAISS HNSW index (``index="hnsw"``, for stores above about 1M vectors).
* The final order-aware pass over a whole corpus (merged runs, ``num_proc`` shards) lives in
  :mod:`cerbero_hf.stages.generate.dedup`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from cerbero_hf.stages.generate.config import INDEXES  # the store's searches: declared once, with the setting

DEFAULT_THRESHOLD = 0.9
# float32 cosines carry ~1e-7 rounding; a value within this of the threshold counts as equal to
# it (accepted), so "0.9 exactly" is accepted whatever the rounding of the normalisation.
FLOAT_TOLERANCE = 1e-6
_STORE_CHUNK = 8192  # store rows per matrix product: keeps each product's output small


def normalise(vectors: Any) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 2-D array with unit L2 rows (zero rows stay zero)."""
    v = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if v.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array of vectors, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    np.divide(v, norms, out=v, where=norms > 0)
    return np.ascontiguousarray(v)


class EmbeddingStore:
    """A growing set of unit vectors with the strict ``> threshold`` novelty rule.

    All methods are synchronous and guarded by one ``threading.RLock``, so the store is safe to
    share between threads and between asyncio coroutines (a method never awaits, so a check and
    its add happen atomically). They are quick enough to call directly from a coroutine: a
    :meth:`try_add` against 100,000 vectors of 384 dimensions is one 77 MFLOP matrix-vector
    product, about a millisecond.

    Args:
        dim: vector dimension.
        threshold: reject when the largest inner product is strictly greater than this.
        index: ``"exact"`` (numpy matrix products, never misses a neighbour) or ``"hnsw"``
            (FAISS ``IndexHNSWFlat`` with inner product; approximate, for > ~1M vectors).
        capacity: initial preallocated rows (doubles when full: amortised O(1) appends).
        hnsw_m: HNSW's ``M``. On 100k random 384-d vectors (the hard case, no structure) M=32/efConstruction=80 agrees
            with exact search on every planted near-duplicate from efSearch=128 (0.93 at 32); on low-rank vectors like
            real embeddings M=16/40 already agrees at efSearch=32 (``bench/diversity.py --sweep``).
        ef_search: HNSW's ``efSearch``.
        ef_construction: HNSW's ``efConstruction``.

    Examples:
        >>> import numpy as np
        >>> from cerbero_hf import EmbeddingStore
        >>> store = EmbeddingStore(dim=3, threshold=0.9)
        >>> store.try_add(np.array([1.0, 0.0, 0.0]))  # (added?, largest cosine to a stored vector)
        (True, -1.0)
        >>> store.try_add(np.array([1.0, 0.01, 0.0]))  # cosine 0.99995 > 0.9: rejected
        (False, 0.99995...)
    """

    def __init__(self, dim: int, threshold: float = DEFAULT_THRESHOLD, index: str = "exact",
                 capacity: int = 1024, hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = 80):
        if index not in INDEXES:
            raise ValueError(f"index must be {' or '.join(map(repr, INDEXES))}, got {index!r}")
        self.dim = int(dim)
        self.threshold = float(threshold)
        self.index = index
        self.hnsw_params = (hnsw_m, ef_search, ef_construction)
        self._lock = threading.RLock()
        self._n = 0
        self._vecs = np.empty((max(1, capacity) if index == "exact" else 0, self.dim), dtype=np.float32)
        self._faiss = self._new_hnsw() if index == "hnsw" else None

    # -- construction helpers -------------------------------------------------------------------
    def _new_hnsw(self):
        from cerbero_hf.errors import require

        faiss = require("faiss", "faiss", "the hnsw index")

        m, ef_search, ef_construction = self.hnsw_params
        idx = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efSearch = ef_search
        idx.hnsw.efConstruction = ef_construction
        return idx

    def _check(self, vectors: Any) -> np.ndarray:
        v = normalise(vectors)
        if v.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got {v.shape[1]}")
        return v

    def __len__(self) -> int:
        return self._n

    @property
    def vectors(self) -> np.ndarray:
        """A copy of the stored vectors, ``(len(self), dim)`` float32."""
        with self._lock:
            if self._faiss is not None:
                return self._faiss.reconstruct_n(0, self._n) if self._n else np.zeros((0, self.dim), np.float32)
            return self._vecs[: self._n].copy()

    # -- mutation -------------------------------------------------------------------------------
    def add(self, vectors: Any) -> None:
        """Add vectors unconditionally (e.g. the seed messages). They are L2-normalised."""
        v = self._check(vectors)
        with self._lock:
            self._append(v)

    def _append(self, v: np.ndarray) -> None:
        if not len(v):
            return
        if self._faiss is not None:
            self._faiss.add(v)
            self._n += len(v)
            return
        need = self._n + len(v)
        if need > len(self._vecs):
            cap = max(need, 2 * len(self._vecs))
            grown = np.empty((cap, self.dim), dtype=np.float32)
            grown[: self._n] = self._vecs[: self._n]
            self._vecs = grown
        self._vecs[self._n: need] = v
        self._n = need

    # -- search ---------------------------------------------------------------------------------
    def _search(self, v: np.ndarray, want_index: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Largest inner product of each row of ``v`` with the store (-1.0 when empty), and its row (-1 when empty,
        and everywhere unless ``want_index``)."""
        best = np.full(len(v), -1.0, dtype=np.float32)
        arg = np.full(len(v), -1, dtype=np.int64)
        if not self._n or not len(v):
            return best, arg
        if self._faiss is not None:
            d, i = self._faiss.search(v, 1)
            best[:] = d[:, 0]
            if want_index:
                arg[:] = i[:, 0]
            return best, arg
        for start in range(0, self._n, _STORE_CHUNK):
            chunk = self._vecs[start: min(self._n, start + _STORE_CHUNK)]
            sims = (chunk @ v[0])[None, :] if len(v) == 1 else v @ chunk.T  # one candidate: gemv
            if want_index:
                j = sims.argmax(axis=1)
                m = sims[np.arange(len(v)), j]
                better = m > best
                arg[better] = j[better] + start
            else:
                m = sims.max(axis=1)
                better = m > best
            best[better] = m[better]
        return best, arg

    def max_similarity(self, vectors: Any) -> np.ndarray:
        """Largest cosine of each vector with the store (``-1.0`` for an empty store)."""
        v = self._check(vectors)
        with self._lock:
            return self._search(v)[0]

    def nearest(self, vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(max_sims, store_rows)``: the nearest stored row of each vector (-1 for an empty store)."""
        v = self._check(vectors)
        with self._lock:
            return self._search(v, want_index=True)

    # -- the novelty rule -----------------------------------------------------------------------
    def try_add(self, vector: Any) -> tuple[bool, float]:
        """Add one vector if novel. Returns ``(accepted, max_sim)``; rejected iff ``max_sim > threshold``.

        Synchronous and quick (one matrix-vector product under the lock): call it directly from a
        coroutine; the check and the add are atomic with respect to other coroutines and threads.
        """
        mask, sims = self.accept_batch(vector)
        return bool(mask[0]), float(sims[0])

    def accept_batch(self, vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """Check candidates in order and add the accepted ones, as if :meth:`try_add` ran on each in turn.

        A candidate is rejected when it is ``> threshold`` to a stored vector or to an *earlier
        accepted* candidate of the same batch. Vectorised: one matrix product against the store,
        one inside the batch; only candidates with an in-batch conflict are resolved one by one.

        Returns:
            ``(accepted mask, max_sims)`` where ``max_sims[i]`` is the largest cosine of candidate
            ``i`` with the store and the candidates accepted before it.
        """
        mask, sims, _ = self.accept_groups(vectors)
        return mask, sims

    def accept_groups(self, vectors: Any, groups: Any = None, want_nearest: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Like :meth:`accept_batch`, all-or-nothing per group (e.g. the messages of one conversation).

        Args:
            vectors: ``(n, dim)`` candidates, in order.
            groups: non-decreasing group labels, one per vector (default: each vector alone).
                Vectors of one group are not compared with each other; a group is accepted only
                if all its vectors pass, and then all are added.
            want_nearest: also return, per vector, the store row of its nearest accepted
                neighbour (rows are numbered in insertion order; accepted candidates are appended
                in order, so a row ``>= len(store)`` before the call is an in-batch neighbour).

        Returns:
            ``(accepted, max_sims, nearest_rows | None)``, one entry per vector.
        """
        v = self._check(vectors)
        n = len(v)
        g = np.arange(n) if groups is None else np.asarray(groups)
        if len(g) != n or (n and np.any(np.diff(g) < 0)):
            raise ValueError("groups must be non-decreasing and one label per vector")
        with self._lock:
            n0 = self._n
            best, arg = self._search(v, want_index=want_nearest)
            inner = v @ v.T
            earlier = g[None, :] < g[:, None]  # [i, j]: j belongs to an earlier group than i
            cut = self.threshold + FLOAT_TOLERANCE
            conflict = (inner > cut) & earlier
            bad = best > cut
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if n else np.zeros(0, int)
            gbad = np.logical_or.reduceat(bad, starts) if n else bad
            glabel = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
            accepted = ~gbad[glabel]
            # Groups without any conflict with an earlier group are decided; resolve the rest in order.
            pending = np.flatnonzero(np.logical_or.reduceat(conflict.any(axis=1), starts)) if n else np.zeros(0, int)
            for gi in pending:
                if gbad[gi]:
                    continue
                rows = glabel == gi
                if (conflict[rows] & accepted[None, :]).any():
                    accepted[rows] = False
            # Similarity to earlier accepted candidates, for the report and the nearest row.
            inb = np.where(earlier & accepted[None, :], inner, -np.inf)
            if n:
                j = inb.argmax(axis=1)
                m = inb[np.arange(n), j]
                use = m > best
                best = np.where(use, m, best).astype(np.float32)
                if want_nearest:
                    rank = np.cumsum(accepted) - 1  # store row of accepted candidate j is n0 + rank[j]
                    arg = np.where(use, n0 + rank[j], arg)
            self._append(v[accepted])
        return accepted, best, (arg if want_nearest else None)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the vectors as a ``.npy`` file (exactly ``path``). Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, self.vectors)
        return path

    @classmethod
    def load(cls, path: str | Path, threshold: float = DEFAULT_THRESHOLD, index: str = "exact",
             **kw) -> "EmbeddingStore":
        """Rebuild a store from :meth:`save` output (the vectors; threshold and index are arguments)."""
        vecs = np.load(Path(path))
        store = cls(vecs.shape[1], threshold=threshold, index=index, capacity=max(1, len(vecs)), **kw)
        store.add(vecs)
        return store

    def __getstate__(self):
        return {"dim": self.dim, "threshold": self.threshold, "index": self.index,
                "hnsw_params": self.hnsw_params, "vectors": self.vectors}

    def __setstate__(self, state):
        m, ef_s, ef_c = state["hnsw_params"]
        EmbeddingStore.__init__(self, state["dim"], state["threshold"], state["index"], max(1, len(state["vectors"])),
                                m, ef_s, ef_c)
        self._append(state["vectors"])

    def __repr__(self) -> str:
        return f"EmbeddingStore(dim={self.dim}, n={self._n}, threshold={self.threshold}, index={self.index!r})"
