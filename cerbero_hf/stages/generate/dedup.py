"""The final order-aware near-duplicate pass (paper §3.3), for merged runs and ``num_proc`` shards.

Online, :class:`~cerbero_hf.stages.generate.store.EmbeddingStore` already rejects every message too similar to an
earlier one; when several shards or runs are merged, this pass restores the invariant over the whole
corpus: keep the first, drop later near-duplicates of *kept* rows (never assuming that a row's nearest
neighbour is itself).

* :func:`near_duplicate_mask` / :func:`near_duplicates`: the rule on a matrix of vectors, blockwise.
* :func:`dedup_dataset`: the rule on a corpus in our row schema; returns kept and rejected rows. Its steps
  (:func:`flags_function`, :func:`initial_vectors`, :func:`split_verdicts`) are shared with the Ray engine's
  :func:`~cerbero_hf.stages.generate.ray_dedup.dedup_on_ray`, which embeds in actors and gives the same result.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from cerbero_hf.stages.generate.embedder import Embedder
from cerbero_hf.stages.generate.store import DEFAULT_THRESHOLD, FLOAT_TOLERANCE, EmbeddingStore, normalise


def near_duplicates(vectors: Any, threshold: float = DEFAULT_THRESHOLD, groups: Any = None,
                    block: int = 2048, initial: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The final order-aware pass: keep the first, drop later near-duplicates of **kept** rows.

    A row (or a group of rows, e.g. the generated messages of one conversation) is dropped when
    one of its vectors is ``> threshold`` to a vector of an earlier *kept* group or to
    ``initial`` (e.g. the seed messages). Processed ``block`` rows at a time, so memory stays
    bounded; no assumption that a row's nearest neighbour is itself.

    Returns:
        ``(keep, dup_of, max_sims)`` per row: ``dup_of`` is the row index of the kept neighbour
        that caused the drop (``-1`` for kept rows or a match in ``initial``, which is reported
        as ``-2 - k`` for initial row ``k``), ``max_sims`` the largest cosine found.
    """
    if not len(vectors):
        return np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.float32)
    v = normalise(vectors)
    n = len(v)
    g = np.arange(n) if groups is None else np.asarray(groups)
    init = normalise(initial) if initial is not None and len(initial) else np.zeros((0, v.shape[1]), np.float32)
    store = EmbeddingStore(v.shape[1], threshold, capacity=max(1, len(init) + n))
    store.add(init)
    origin = [np.arange(-2, -2 - len(init), -1)]  # store row -> input row (initial rows: -2 - k)
    keep = np.zeros(n, bool)
    dup_of = np.full(n, -1, np.int64)
    sims = np.full(n, -1.0, np.float32)
    start = 0
    while start < n:
        stop = min(n, start + block)
        while stop < n and g[stop] == g[stop - 1]:  # never split a group
            stop += 1
        acc, s, near = store.accept_groups(v[start:stop], g[start:stop], want_nearest=True)
        assert near is not None  # asked for with want_nearest
        table = np.concatenate(origin + [np.arange(start, stop)[acc]])
        origin = [table]
        keep[start:stop], sims[start:stop] = acc, s
        drop = np.flatnonzero(~acc & (near >= 0))
        dup_of[start + drop] = table[near[drop]]
        start = stop
    return keep, dup_of, sims


def near_duplicate_mask(vectors: Any, threshold: float = DEFAULT_THRESHOLD, block: int = 2048) -> np.ndarray:
    """Keep mask of the order-aware near-duplicate pass (see :func:`near_duplicates`)."""
    return near_duplicates(vectors, threshold, block=block)[0]


def _generated_flags(row: dict, origin_key: str) -> list[bool]:
    from cerbero_hf.schema import get_meta

    origin = get_meta(row).get(origin_key)
    if isinstance(origin, list) and len(origin) == len(row["messages"]):
        return [o != "seed" for o in origin]
    return [True] * len(row["messages"])


def flags_function(origin_key: str = "origin", is_generated: Callable[[dict], list[bool]] | None = None
                   ) -> Callable[[dict], list[bool]]:
    """``is_generated``, else the rule of :func:`dedup_dataset`: ``meta[origin_key]`` (picklable, for workers)."""
    return is_generated or functools.partial(_generated_flags, origin_key=origin_key)


def initial_vectors(initial: Any, seed_vectors: Any) -> np.ndarray | None:
    """The store the pass starts from: ``initial`` then the vectors of the distinct seed messages (or None)."""
    init = [] if initial is None else [normalise(initial)]
    if seed_vectors is not None and len(seed_vectors):
        init.append(seed_vectors)
    return np.concatenate(init) if init else None


def split_verdicts(ds, groups: Any, keep: np.ndarray, dup_of: np.ndarray, sims: np.ndarray,
                   threshold: float = DEFAULT_THRESHOLD, rule: str = "near-duplicate"):
    """Turn the verdicts of :func:`near_duplicates` (one per generated message) into kept and rejected rows.

    Args:
        ds: the corpus (a ``datasets.Dataset``; columns ``id``, ``messages``, ``source``, ``meta``).
        groups: the row of ``ds`` of each generated message, in the order the pass saw them.
        keep, dup_of, sims: :func:`near_duplicates`' output for those messages.

    Returns:
        ``(kept, rejected)`` Datasets as :func:`dedup_dataset` describes them.
    """
    from cerbero_hf.schema import rejected_features, to_dataset

    ids = list(ds["id"])
    drop_rows: dict[int, str] = {}
    for k in np.flatnonzero(~keep):
        r = int(groups[k])
        if r in drop_rows or sims[k] <= threshold + FLOAT_TOLERANCE:
            continue  # another message of the row caused it, or this one was only dragged along
        other = ids[groups[dup_of[k]]] if dup_of[k] >= 0 else "a seed message"
        drop_rows[r] = f"{rule} of {other} (cos={sims[k]:.2f})"
    kept = ds.select([i for i in range(len(ds)) if i not in drop_rows])
    rej_rows = []
    for i, reason in sorted(drop_rows.items()):
        row = dict(ds[i])
        row.update(rule=rule, reason=reason)
        rej_rows.append(row)
    rejected = to_dataset(rej_rows, rejected_features())
    return kept, rejected


def dedup_dataset(ds, embedder: Embedder, threshold: float = DEFAULT_THRESHOLD, origin_key: str = "origin",
                  initial: Any = None, is_generated: Callable[[dict], list[bool]] | None = None,
                  rule: str = "near-duplicate"):
    """Enforce the diversity invariant over a merged corpus (shards of ``num_proc``, several runs).

    Input columns: ``id``, ``messages``, ``meta`` (``meta[origin_key]``: a list parallel to
    ``messages`` of ``"seed"`` / ``"generated"``; without it every message is checked).
    Seed messages are not checked; they join the initial store with ``initial``. A row is
    dropped when one of its generated messages is ``> threshold`` to a seed message or to a
    generated message of an earlier kept row. Paper §3.3.

    Returns:
        ``(kept, rejected)`` Datasets; ``rejected`` adds ``rule`` and ``reason`` like
        ``"near-duplicate of <id> (cos=0.93)"``. ``len(kept) + len(rejected) == len(ds)``.
    """
    flags_of = flags_function(origin_key, is_generated)
    texts: list[str] = []  # the generated messages, in order
    groups: list[int] = []  # the row of each
    seeds: list[str] = []
    for i, row in enumerate(ds):
        for m, gen in zip(row["messages"], flags_of(row)):
            (texts if gen else seeds).append(m["content"])
            if gen:
                groups.append(i)
    vecs = embedder.encode(texts) if texts else np.zeros((0, 1), np.float32)
    uniq = list(dict.fromkeys(seeds))
    init = initial_vectors(initial, embedder.encode(uniq) if uniq else None)
    keep, dup_of, sims = near_duplicates(vecs, threshold, groups=groups, initial=init)
    return split_verdicts(ds, groups, keep, dup_of, sims, threshold, rule)
