"""The final order-aware near-duplicate pass on Ray: embeddings in a pool of actors, the exact pass on one.

:func:`dedup_on_ray` returns what :func:`~cerbero_hf.stages.generate.dedup.dedup_dataset` returns for the same
inputs (the same kept and rejected rows, in the same order, with the same reasons), for corpora whose embedding
needs more than one machine or one GPU:

1. the corpus's rows go to Ray in blocks of ``engine.batch_rows`` rows (``ray.data.from_arrow``) and are
   flattened into one row per message with an explicit ``order`` column, ``(row, message)``: Ray Data does not
   keep the order of blocks, and the pass is order-aware (keep the first, drop later near-duplicates);
2. :func:`embed_on_ray` embeds the messages in ``engine.workers`` actors (GPU actors when the engine gives them
   GPUs), each holding one :class:`~cerbero_hf.stages.generate.embedder.Embedder`;
3. one Ray task gathers the vectors, sorts them by ``order`` and runs the exact
   :func:`~cerbero_hf.stages.generate.dedup.near_duplicates` over them (the vectors go from the actors to that
   task, not through the driver);
4. the driver turns its verdicts into kept and rejected rows with the code ``dedup_dataset`` uses.

``ray`` is imported inside the functions, only when the engine is ``ray``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cerbero_hf.engine import RaySession
from cerbero_hf.stages.generate.dedup import flags_function, initial_vectors, near_duplicates, split_verdicts
from cerbero_hf.stages.generate.embedder import Embedder
from cerbero_hf.stages.generate.store import DEFAULT_THRESHOLD

ORDER = "order"  # (row, message) of each message: the order the pass must see them in
TEXT = "text"
VECTOR = "vector"
ROW = "__row"  # row index of the corpus, added before the rows go to Ray
MAX_BLOCKS = 2048  # blocks of corpus rows at most: Ray Data's driver slows down with hundreds of thousands


class EmbedActor:
    """Ray Data class UDF: adds ``vector`` (float32 unit rows) to batches with a ``text`` column.

    Other columns pass through; ``text`` is dropped unless ``keep_text``. The model is loaded once per actor,
    on ``cuda`` when the actor was given a GPU and the embedder asked for the CPU.
    """

    def __init__(self, embedder: Embedder, torch_threads: int = 1, keep_text: bool = True):
        import ray
        import torch

        torch.set_num_threads(torch_threads)
        device = "cuda" if embedder.device == "cpu" and ray.get_gpu_ids() else embedder.device
        self.embedder = Embedder(embedder.model_id, device=device, batch_size=embedder.batch_size).load()
        self.keep_text = keep_text

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch[TEXT]]
        out = {k: v for k, v in batch.items() if self.keep_text or k != TEXT}
        out[VECTOR] = self.embedder.encode(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        return out


def embed_on_ray(texts_with_order, session: RaySession, embedder: Embedder, keep_text: bool = True):
    """Embed a Ray Dataset's ``text`` column in a pool of ``session.workers`` actors.

    Args:
        texts_with_order: a ``ray.data.Dataset`` with a ``text`` column and the column(s) that say where each
            text belongs (e.g. ``order``): Ray Data returns blocks in whatever order they finish.
        session: from :func:`cerbero_hf.engine.ray_session` (pool size, CPUs/GPUs per actor, block rows).
        embedder: the model (its ``model_id``, ``device`` and ``batch_size`` are used in each actor).
        keep_text: keep the ``text`` column in the output.

    Returns:
        A lazy ``ray.data.Dataset``: the input columns plus ``vector`` (``(dim,)`` float32, L2-normalised,
        within float rounding of ``embedder.encode``).
    """
    import ray.data

    return texts_with_order.map_batches(
        EmbedActor, fn_constructor_args=(embedder, session.torch_threads, keep_text),
        compute=ray.data.ActorPoolStrategy(size=session.workers), batch_size=session.config.batch_rows,
        batch_format="numpy", **session.actor_options())


def flatten_messages(table, flags_of: Callable[[dict], list[bool]]) -> dict:
    """Ray Data task UDF: one row per message, ``order`` = ``(row, message)``, ``generated``, ``text``, ``seed``.

    Input: a pyarrow batch of corpus rows with ``__row`` (their index in the corpus). ``seed`` repeats the text
    of seed messages ("" for generated ones); a seed text already met earlier in the same batch is left out (it
    would embed to the same vector; the final pass keeps each seed text's first message).
    """
    order, generated, texts, seen = [], [], [], set()
    for row in table.to_pylist():
        for j, (m, gen) in enumerate(zip(row["messages"], flags_of(row))):
            if not gen and m["content"] in seen:
                continue
            if not gen:
                seen.add(m["content"])
            order.append((row[ROW], j))
            generated.append(bool(gen))
            texts.append(m["content"])
    seeds = [t if not g else "" for t, g in zip(texts, generated)]
    return {ORDER: np.array(order, np.int64).reshape(-1, 2), "generated": np.array(generated, bool),
            TEXT: np.array(texts, object), "seed": np.array(seeds, object)}


def order_aware_pass(batches: list, threshold: float, initial: Any) -> tuple[np.ndarray, ...]:
    """The exact pass over embedded messages gathered from any number of batches, in ``order``.

    Args:
        batches: dicts of numpy columns ``order``, ``generated``, ``seed``, ``vector`` (any order, any sizes).
        threshold, initial: as in :func:`~cerbero_hf.stages.generate.dedup.dedup_dataset`.

    Returns:
        ``(groups, keep, dup_of, sims)``: the corpus row of each generated message in order, and the verdicts of
        :func:`~cerbero_hf.stages.generate.dedup.near_duplicates`.
    """
    batches = [b for b in batches if ORDER in b and len(b[ORDER])]
    if not batches:
        return np.zeros(0, np.int64), *near_duplicates(np.zeros((0, 1), np.float32), threshold)
    order = np.concatenate([b[ORDER] for b in batches])
    sort = np.lexsort((order[:, 1], order[:, 0]))
    order = order[sort]
    generated = np.concatenate([b["generated"] for b in batches])[sort]
    vectors = np.concatenate([b[VECTOR] for b in batches])[sort]
    seeds = np.concatenate([b["seed"] for b in batches])[sort]
    first: dict[str, int] = {}  # each distinct seed text, at its first message (as dedup_dataset embeds them)
    for k in np.flatnonzero(~generated):
        first.setdefault(seeds[k], int(k))
    seed_vectors = vectors[list(first.values())] if first else None
    init = initial_vectors(initial, seed_vectors)
    vecs = vectors[generated] if generated.any() else np.zeros((0, 1), np.float32)
    groups = order[generated, 0]
    return (groups, *near_duplicates(vecs, threshold, groups=groups, initial=init))


def _gather_and_pass(refs: list, threshold: float, initial: Any) -> tuple[np.ndarray, ...]:
    import ray

    return order_aware_pass(ray.get(refs), threshold, initial)


def corpus_on_ray(ds, batch_rows: int):
    """A ``datasets.Dataset`` as a Ray Dataset with its row index (``__row``) added.

    Blocks hold ``batch_rows`` rows, or more when that would make over :data:`MAX_BLOCKS` blocks (the actors
    still embed ``batch_rows`` messages at a time).
    """
    import pyarrow as pa
    import ray.data

    table = ds.with_format("arrow")[:]  # the rows as ds shows them (after any select or shuffle)
    table = table.append_column(ROW, pa.array(np.arange(len(table), dtype=np.int64)))
    size = max(batch_rows, -(-len(table) // MAX_BLOCKS))
    blocks = [table.slice(i, size) for i in range(0, len(table), size)] or [table]
    return ray.data.from_arrow(blocks)


def dedup_on_ray(ds, session: RaySession, embedder: Embedder, threshold: float = DEFAULT_THRESHOLD,
                 origin_key: str = "origin", initial: Any = None,
                 is_generated: Callable[[dict], list[bool]] | None = None, rule: str = "near-duplicate"):
    """:func:`~cerbero_hf.stages.generate.dedup.dedup_dataset` on Ray: same inputs, same output.

    Input columns: ``id``, ``messages``, ``source``, ``meta`` (``meta[origin_key]``: ``"seed"`` /
    ``"generated"`` per message). Embeddings are computed in ``session.workers`` actors (blocks of
    ``engine.batch_rows``), the pass runs on one Ray task over the vectors sorted by ``(row, message)``.
    ``is_generated``, when given, must be picklable into the workers (a function of an installed module).

    Returns:
        ``(kept, rejected)`` ``datasets.Dataset`` objects, equal to ``dedup_dataset``'s (``rejected`` adds
        ``rule`` and ``reason`` like ``"near-duplicate of <id> (cos=0.93)"``).
    """
    import ray

    flags_of = flags_function(origin_key, is_generated)
    messages = corpus_on_ray(ds, session.config.batch_rows).map_batches(
        flatten_messages, fn_kwargs={"flags_of": flags_of}, batch_size=None, batch_format="pyarrow")
    embedded = embed_on_ray(messages, session, embedder, keep_text=False)
    refs = embedded.to_numpy_refs()  # runs the pipeline; the blocks stay in the object store
    final = ray.remote(num_cpus=1)(_gather_and_pass)
    groups, keep, dup_of, sims = ray.get(final.remote(refs, threshold, initial))
    return split_verdicts(ds, groups, keep, dup_of, sims, threshold, rule)
