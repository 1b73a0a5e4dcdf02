"""PLL scoring on Ray Data: the ``score`` stage and ``cerbero-hf score`` with ``--engine ray``.

The input's rows are cut by position into blocks of ``engine.batch_rows`` rows (PLL cost follows tokens, so
blocks are sized by rows, never by bytes: byte-sized blocks put all the work on one actor). Ray Data runs one
task per block that is not on disk yet: ``from_items`` of the block ranges (one item per Ray block) →
``map_batches`` with the class UDF :class:`ScoreBlock` (one
:class:`~cerbero_hf.stages.quality.pll.PLLScorer` per actor) in an ``ActorPoolStrategy`` pool of
``session.workers`` actors, ``num_cpus`` / ``num_gpus`` per actor from the engine config. Each actor reads its
rows straight from the input's parquet data files (pyarrow; a corpus that is not a Hub-layout parquet folder is
first written once to a staging parquet file under the output folder), scores them and writes them atomically
as ``train-<k>-of-<n>.parquet`` (the input's ``datasets`` features) under
``<output>/.score-partial/ray/``. The driver then reads the blocks back in order and writes the same Hub folder
as the local path (:mod:`cerbero_hf.stages.quality.folders`), after which the blocks are removed.

Why not ``read_parquet`` → ``repartition``: Ray Data neither keeps row order by default nor names a block's
rows, and resuming needs both. Here a block is a fixed row range, so an interrupted run (driver killed) resumes
with the blocks whose file exists skipped. An actor that crashes mid-block is restarted by Ray
(``max_restarts``/``max_task_retries``, Ray Data's defaults for actor pools) and its block scored again; one
gone for good (``ray.kill``, a lost node) fails the Ray Data pipeline, which is then started again for the
blocks still missing (up to :data:`RETRIES` times). Input and output must be on storage every node reads
(shared disk, NFS).

Output: the input's rows in the input's order, ``meta`` carrying ``nll``, ``nll_tokens``, ``nll_mean``,
``nll_model`` and ``nll_variant``, as the local path writes them (NLLs equal within float rounding: the
scorer's length-sorted batches differ with the rows scored together).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path

WORK = "ray"  # under resume.PARTIAL: blocks, key, staging copy of the input
STAGING = "input.parquet"
RETRIES = 3  # pipeline restarts after actors were lost for good (ray.kill, a node gone)
# Tests set this to the name of an actor (namespace REGISTRY_NAMESPACE) with a ``register(handle, pid, node)`` method:
# every scoring actor then registers itself there, so a test can ray.kill one mid-run.
REGISTRY_ENV = "CERBERO_HF_TEST_ACTOR_REGISTRY"
REGISTRY_NAMESPACE = "cerbero-hf-test"


def block_name(k: int, n: int) -> str:
    """The file of block ``k`` of ``n`` (Hub shard naming)."""
    return f"train-{k:05d}-of-{n:05d}.parquet"


def block_ranges(rows: int, batch_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each block: ``batch_rows`` rows each, by position (the last one shorter)."""
    return [(s, min(s + batch_rows, rows)) for s in range(0, rows, batch_rows)]


def read_rows(files: list[str], start: int, stop: int):
    """Rows ``[start, stop)`` of the parquet ``files`` read one after the other, as one pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts, offset = [], 0
    for f in files:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            lo, hi = max(start, offset), min(stop, offset + n)
            if lo < hi:
                parts.append(pf.read_row_group(g).slice(lo - offset, hi - lo))
            offset += n
            if offset >= stop:
                return pa.concat_tables(parts, promote_options="permissive")
    return pa.concat_tables(parts, promote_options="permissive")


def write_atomic(table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and a rename: a reader sees all of it or nothing."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def output_features(ds):
    """The scored rows' ``datasets`` features: the input's, ``meta`` a string (as the local path writes it)."""
    from datasets import Value

    features = ds.features.copy()
    features["meta"] = Value("string")
    return features


def _register_for_tests() -> None:
    name = os.environ.get(REGISTRY_ENV)
    if name:
        import ray

        registry = ray.get_actor(name, namespace=REGISTRY_NAMESPACE)
        context = ray.get_runtime_context()
        ray.get(registry.register.remote(context.current_actor, os.getpid(), context.get_node_id()))


class ScoreBlock:
    """Ray Data class UDF: scores whole blocks of rows and writes each to its own parquet file.

    Input batch columns: ``block`` (index), ``start``, ``stop`` (row range of the input). Output columns:
    ``block``, ``rows`` (rows written; 0 when the file already existed, e.g. a retried task), ``node``, ``actor``,
    ``error`` (an :class:`~cerbero_hf.errors.InputError` of the block as JSON, its row counted in the whole input; else "").
    """

    def __init__(self, scorer, files: list[str], schema, blocks: str, n_blocks: int, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.scorer, self.files, self.schema = scorer, files, schema
        self.blocks, self.n_blocks = Path(blocks), n_blocks
        self.scorer._load()
        _register_for_tests()

    def __call__(self, batch: dict) -> dict:
        import ray

        from cerbero_hf.errors import InputError

        out: dict[str, list] = {"block": [], "rows": [], "node": [], "actor": [], "error": []}
        for k, start, stop in zip(batch["block"], batch["start"], batch["stop"]):
            rows, error = 0, ""
            try:
                rows = self._score(int(k), int(start), int(stop))
            except InputError as err:  # crosses Ray as data: Ray's task errors keep only its traceback text
                error = json.dumps({"message": err.message, "file": err.file, "column": err.column,
                                    "row": None if err.row is None else int(start) + err.row})
            out["block"].append(int(k))
            out["rows"].append(rows)
            out["node"].append(ray.get_runtime_context().get_node_id())
            out["actor"].append(ray.get_runtime_context().get_actor_id())
            out["error"].append(error)
        return out

    def _score(self, k: int, start: int, stop: int) -> int:
        import pyarrow as pa

        path = self.blocks / block_name(k, self.n_blocks)
        if path.exists():
            return 0
        table = read_rows(self.files, start, stop).select(self.schema.names)
        metas = self.scorer({"messages": table.column("messages").to_pylist(),
                             "meta": table.column("meta").to_pylist()})["meta"]
        table = table.set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
        write_atomic(table.cast(self.schema), path)
        return table.num_rows


def input_files(ds, source, work: Path) -> list[str]:
    """Parquet files holding ``ds``'s rows in order, as every node reads them.

    ``source`` a Hub-layout folder whose ``default`` config is parquet files holding exactly ``ds``'s ids in
    order: those files. Anything else (JSON lines, a Hub id, a ``save_to_disk`` folder): ``ds`` written once to
    ``work/input.parquet``.
    """
    import pyarrow.parquet as pq

    if source is not None and Path(source).is_dir():
        files = sorted(str(p) for p in (Path(source) / "data").glob("train-*.parquet"))
        if files and sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(ds):
            ids = [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
            if ids == ds["id"]:
                return files
    staging = work / STAGING
    if not staging.exists():
        write_atomic(ds.data.table if ds._indices is None else ds.flatten_indices().data.table, staging)
    return [str(staging)]


def check_model(scorer) -> None:
    """Fail in the driver, before Ray starts, when the scorer's model cannot be found (tokenizer and config)."""
    from transformers import AutoConfig, AutoTokenizer

    for what, loader in (("tokenizer", AutoTokenizer), ("model config", AutoConfig)):
        try:
            loader.from_pretrained(scorer.model_id)
        except Exception as err:  # noqa: BLE001 - any loading failure is an input problem
            raise scorer._error(f"cannot load {what}: {str(err).splitlines()[0]}", file=scorer.model_id) from None


def score_dataset_ray(ds, scorer, work_dir, engine, *, source=None, progress=None, stats: dict | None = None):
    """Return ``ds`` with ``meta`` carrying per-message NLLs, scored on Ray (see the module docstring).

    ``source``: where ``ds`` was read from (its parquet files are read directly when they hold its rows).
    ``progress(n_rows)``: called with the rows of every finished block (and once with the rows of the blocks an
    earlier run finished). ``stats`` (optional dict) receives ``blocks``, ``skipped`` (blocks found on disk),
    ``workers``, ``nodes`` (nodes whose actors scored a block), ``retries`` (pipeline restarts) and
    ``rows_per_worker`` (actor id -> rows it scored in this run).

    Raises:
        InputError: the model cannot be found (before Ray starts), or a row cannot be scored (its row number
            counted in ``ds``).
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cerbero_hf.stages.quality.resume import PARTIAL, resume_key

    work = Path(work_dir) / PARTIAL / WORK
    blocks = work / "blocks"
    ranges = block_ranges(len(ds), engine.batch_rows)
    n = len(ranges)
    key = resume_key(work, ds._fingerprint, len(ds), engine.batch_rows, scorer.model_id, scorer.variant,
                     scorer.max_length)
    done = {k for k in range(n) if (blocks / block_name(k, n)).exists()}
    info = {"blocks": n, "skipped": len(done), "workers": 0, "nodes": 0, "retries": 0}
    if len(done) < n:
        check_model(scorer)  # before anything is written
    blocks.mkdir(parents=True, exist_ok=True)
    (work / "key").write_text(key)
    if progress and done:
        progress(sum(ranges[k][1] - ranges[k][0] for k in done))
    if len(done) < n:
        files = input_files(ds, source, work)
        info.update(_run_blocks(scorer, files, output_features(ds).arrow_schema, blocks, ranges, engine,
                                progress, done))
    if stats is not None:
        stats.update(info)
    table = pa.concat_tables([pq.read_table(blocks / block_name(k, n)) for k in range(n)])
    return datasets.Dataset(table)


def _pipeline(ray, session, scorer, files, schema, blocks: Path, ranges, todo):
    """The Ray Data pipeline scoring the blocks ``todo``: one item per block → the :class:`ScoreBlock` pool."""
    items = [{"block": k, "start": ranges[k][0], "stop": ranges[k][1]} for k in todo]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ScoreBlock, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(session.workers, len(todo)), max_tasks_in_flight_per_actor=1),
        fn_constructor_kwargs=dict(scorer=scorer, files=files, schema=schema, blocks=str(blocks),
                                   n_blocks=len(ranges), threads=session.torch_threads),
        **session.actor_options())  # Ray Data spreads the actors over the nodes by default


def _run_blocks(scorer, files, schema, blocks: Path, ranges, engine, progress, done: set[int]) -> dict:
    """Score the blocks not on disk yet (``done``: those that were, already reported to ``progress``) in a Ray actor
    pool; returns ``workers``, ``nodes``, ``retries`` and ``rows_per_worker``.

    Ray restarts a crashed actor and retries its block by itself; an actor that is gone for good (``ray.kill``,
    a lost node) fails the pipeline, which then starts again for the blocks still missing, up to
    :data:`RETRIES` times.
    """
    from cerbero_hf.engine import ray_session
    from cerbero_hf.errors import InputError

    n = len(ranges)

    def missing() -> list[int]:
        return [k for k in range(n) if not (blocks / block_name(k, n)).exists()]

    reported, nodes, retries, workers = set(done), set(), 0, 0
    per_actor: Counter = Counter()  # rows scored by each actor (how evenly the pool shared the work)

    def advance(k: int) -> None:
        if k not in reported:
            reported.add(k)
            if progress:
                progress(ranges[k][1] - ranges[k][0])

    with ray_session(engine) as session:
        import ray

        lost = tuple(getattr(ray.exceptions, name) for name in ("RayActorError", "ObjectLostError", "NodeDiedError",
                                                                "WorkerCrashedError") if hasattr(ray.exceptions, name))
        while todo := missing():
            for k in sorted(set(range(n)) - set(todo)):  # finished by an attempt that then failed
                advance(k)
            workers = max(workers, min(session.workers, len(todo)))
            try:
                for row in _pipeline(ray, session, scorer, files, schema, blocks, ranges, todo).iter_rows():
                    if row["error"]:
                        raise InputError(**json.loads(row["error"]))
                    nodes.add(row["node"])
                    per_actor[row["actor"]] += int(row["rows"])
                    advance(int(row["block"]))
            except lost:
                retries += 1
                if retries > RETRIES:
                    raise
                continue
            if missing():  # every task ended well: a block file can only be missing if it was removed meanwhile
                raise RuntimeError(f"Ray scoring ended with block files missing under {blocks}")
        return {"workers": workers, "nodes": len(nodes), "retries": retries, "rows_per_worker": dict(per_actor)}
