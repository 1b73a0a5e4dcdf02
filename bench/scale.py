"""Benchmark: the Ray engine (issue: beyond one machine) — scoring actors, generation fan-out, the store actor.

Run: ``.venv/bin/python bench/scale.py [--parts overhead score generate store] [--rows 256] [--latency 2]``

* ``overhead``: a new local cluster (``ray_session``): seconds to join, then the resident memory (RSS) of every
  Ray process (GCS, raylet, agents, idle workers) after 5 s idle. Targets: join <= 5 s, <= 700 MB.
* ``score``: PLL scoring of ``--rows`` conversations (the bundled refined sample, repeated) with a small BERT
  (hidden 256, 4 layers, random weights) on Ray with 1 actor and with 2 actors (one torch thread each, the
  same 2-CPU cluster). Steady rows/s = rows of the blocks finished after the first one / the time between the
  first and the last block; the first block's latency is reported apart (model loading). Target: 2 actors
  >= 1.6x 1 actor, no actor over 60 % of the rows, first block <= 15 s.
* ``generate``: 4 local mock replicas (bench/generate.py's endpoint, ``--latency`` s per answer) driven
  through ``EndpointBackend("URL1,...,URL4")`` for a warm-up then a window: from this process (no Ray) and
  from 2 Ray actors sharing the total concurrency. Target: >= 90 % of the ideal aggregate rate
  (total concurrency / latency).
* ``store``: the named store actor at 100k stored 384-d vectors, checked by 64 concurrent coroutines through
  ``StoreProxy.atry_add`` (calls batched): ms per check, against the same checks on a local
  ``EmbeddingStore``. Target: <= 2 ms per vector.

Every figure is measured in the same run as its baseline; the machine's load (``os.getloadavg``) is printed:
on a shared 2-core machine the scoring ratio is only meaningful when it is otherwise idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def ray_rss_mb() -> float:
    """Resident memory of every Ray process on this machine (not this driver), in MB."""
    total = 0
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "ray" not in cmd or "bench/scale.py" in cmd:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def part_overhead() -> dict:
    from cerbero_hf.engine import EngineConfig, ray_session

    t0 = time.perf_counter()
    with ray_session(EngineConfig(kind="ray", num_cpus=2)) as session:
        joined = time.perf_counter() - t0
        time.sleep(5)
        rss = ray_rss_mb()
    print(f"overhead: ray_session joined a new local cluster in {joined:.1f} s (target <= 5), idle Ray processes "
          f"{rss:.0f} MB RSS (target <= 700), {session.workers} worker(s) sized")
    return {"join_s": joined, "idle_rss_mb": rss}


def _corpus(rows: int):
    from datasets import concatenate_datasets

    from cerbero_hf.io import load_table
    from cerbero_hf.stages.refine.refiner import Refiner

    src = ROOT / "cerbero_hf" / "data" / "fauno_sample.jsonl"
    kept, _, _ = Refiner(use_lingua=False).run(load_table(str(src)))
    copies = -(-rows // len(kept))
    ds = concatenate_datasets([kept] * copies).select(range(rows))
    return ds.map(lambda r, i: {"id": f"{r['id']}-{i}"}, with_indices=True)


def part_score(rows: int, batch_rows: int) -> dict:
    import torch

    from cerbero_hf.engine import EngineConfig
    from cerbero_hf.stages.quality.pll import PLLScorer
    from cerbero_hf.stages.quality.ray_score import score_dataset_ray
    from cerbero_hf.tiny_models import build_tiny_mlm

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="cerbero-scale-"))
    model = build_tiny_mlm(work / "mlm", hidden=256, layers=4, vocab=8000)
    ds = _corpus(rows)
    out = {}
    for workers in (1, 2):
        engine = EngineConfig(kind="ray", num_cpus=2, workers=workers, cpus_per_worker=0.5, batch_rows=batch_rows)
        marks: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        stats: dict = {}
        score_dataset_ray(ds, PLLScorer(str(model), device="cpu"), work / f"out{workers}", engine, stats=stats,
                          progress=lambda n, marks=marks: marks.append((time.perf_counter(), n)))
        first = marks[0][0] - t0
        steady_rows = sum(n for _, n in marks[1:])
        steady = steady_rows / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else float("nan")
        per_worker = stats.get("rows_per_worker") or {}
        share = max(per_worker.values()) / rows if per_worker else float("nan")
        out[workers] = {"first_block_s": first, "steady_rows_s": steady, "max_worker_share": share}
        print(f"score: {workers} actor(s): first block {first:.1f} s, steady {steady:.2f} rows/s, "
              f"largest share of rows {100 * share:.0f} % ({per_worker})")
    ratio = out[2]["steady_rows_s"] / out[1]["steady_rows_s"]
    print(f"score: 2 actors / 1 actor = {ratio:.2f}x (target >= 1.6x; largest share <= 60 %, first block <= 15 s)")
    return {"actors": out, "ratio": ratio}


async def _drive_backend(urls: str, concurrency: int, warm: float, window: float) -> tuple[int, float, dict]:
    from generate import MESSAGES, _drive

    from cerbero_hf.stages.generate.backends import EndpointBackend, Request

    backend = EndpointBackend(urls, "chat", model="bench", concurrency=concurrency, timeout=60)
    request = Request(messages=MESSAGES, max_new_tokens=64, stop=["[|Umano|]"], seed=1)

    async def send():
        assert (await backend.generate(request)).text

    try:
        done, secs, _, _, _ = await _drive(send, concurrency, warm, window)
    finally:
        await backend.aclose()
    return done, secs, dict(backend.sent_to)


def part_generate(latency: float, concurrency: int, warm: float, window: float) -> dict:
    from generate import start_server

    from cerbero_hf.engine import EngineConfig, ray_session

    servers = [start_server(latency) for _ in range(4)]
    urls = ",".join(url for _, url in servers)
    ideal = concurrency / latency
    out = {}
    try:
        done, secs, spread = asyncio.run(_drive_backend(urls, concurrency, warm, window))
        out["one_process"] = done / secs / ideal
        print(f"generate: one process, concurrency {concurrency} over 4 replicas: {done / secs:.1f} req/s = "
              f"{100 * out['one_process']:.1f} % of ideal {ideal:.0f} (per replica {sorted(spread.values())})")
        with ray_session(EngineConfig(kind="ray", num_cpus=2, workers=2, cpus_per_worker=0.5)):
            import ray

            @ray.remote(num_cpus=0.5)
            def actor_run(n):
                return asyncio.run(_drive_backend(urls, n, warm, window))

            results = ray.get([actor_run.remote(concurrency // 2) for _ in range(2)])
        rate = sum(d / s for d, s, _ in results)
        out["two_ray_actors"] = rate / ideal
        print(f"generate: 2 Ray actors x {concurrency // 2}: {rate:.1f} req/s = {100 * out['two_ray_actors']:.1f} % "
              f"of ideal (target >= 90 %)")
    finally:
        for proc, _ in servers:
            proc.kill()
    return out


def part_store(stored: int, checks: int, dim: int = 384, concurrency: int = 64) -> dict:
    import numpy as np

    from cerbero_hf.engine import EngineConfig, ray_session
    from cerbero_hf.stages.generate.store import EmbeddingStore
    from cerbero_hf.stages.generate.store_actor import StoreProxy, create_store_actor

    rng = np.random.default_rng(0)
    base = rng.standard_normal((stored, dim)).astype("float32")
    queries = rng.standard_normal((checks, dim)).astype("float32")
    local = EmbeddingStore(dim)
    local.add(base)
    t0 = time.perf_counter()
    for q in queries:
        local.try_add(q)
    local_ms = (time.perf_counter() - t0) / checks * 1000
    with ray_session(EngineConfig(kind="ray", num_cpus=2)):
        actor = create_store_actor(dim, 0.9, preload=[base])
        proxy = StoreProxy(actor)

        async def run():
            queue = list(queries)

            async def worker():
                while queue:
                    await proxy.atry_add(queue.pop())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        t0 = time.perf_counter()
        asyncio.run(run())
        actor_ms = (time.perf_counter() - t0) / checks * 1000
    print(f"store: {stored:,} stored, {checks} checks from {concurrency} coroutines: actor {actor_ms:.2f} ms/check "
          f"in {proxy.calls} calls (target <= 2), local store {local_ms:.2f} ms/check "
          f"(actor/local = {actor_ms / local_ms:.2f})")
    return {"actor_ms": actor_ms, "local_ms": local_ms, "calls": proxy.calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["overhead", "score", "generate", "store"])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-rows", type=int, default=16)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--warm", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if "overhead" in args.parts:
        part_overhead()
    if "score" in args.parts:
        part_score(args.rows, args.batch_rows)
    if "generate" in args.parts:
        part_generate(args.latency, args.concurrency, args.warm, args.window)
    if "store" in args.parts:
        part_store(args.stored, args.checks)


if __name__ == "__main__":
    main()
