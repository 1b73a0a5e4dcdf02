"""Benchmark: online accept/reject in the diversity store (D9), against this machine's GEMM rate.

Online accept/reject of N random d-dimensional unit vectors with exact search is about N^2 * d
floating-point operations (each candidate against every vector accepted before it, 2 FLOP per
multiply-add): 3.8 TFLOP for N = 100,000 and d = 384. The store batches candidates into matrix
products and resolves the conflicts inside a batch in order, so it should run near the float32
GEMM rate of the machine, which this script measures first (and again at the end: the machine is
shared and noisy, both figures are printed).

Baselines measured in the same run, on a subset and extrapolated (said so in the output):
  * per-vector: one matrix-vector product per candidate against a preallocated store (the best a
    per-vector loop can do: memory-bound, so its rate bounds how far batching can go, printed as the
    "brute-force ceiling");
  * textbook: the same loop with the store grown by ``np.vstack`` on every accept;
  * pure Python: a loop over the stored vectors with one ``np.dot`` per pair.

Then a scaling table (10k and 100k exact; ``--n-approx`` vectors with the HNSW index and its
recall against exact search on a sample) and a run with planted near-duplicates that exercises
rejection.

Usage:
    .venv/bin/python bench/diversity.py [--n 100000] [--n-approx 1000000] [--batch 1024] [--quick]
        [--hnsw-m 32 --ef-construction 80 --ef-search 128] [--approx-data random|structured] [--sweep 100000]
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np

from cerbero_hf.stages.generate.store import EmbeddingStore, normalise


def unit(rng, n, d):
    return normalise(rng.standard_normal((n, d), dtype=np.float32))


def structured(rng, n, d, rank: int = 48, noise: float = 0.5):
    """Unit vectors with the low-rank structure of real sentence embeddings: a random ``rank``-dimensional
    subspace plus isotropic noise (``noise`` of the subspace's scale). Random vectors are the hard case for a
    graph index (no neighbourhood structure at all); these are closer to what the store holds in practice."""
    basis = rng.standard_normal((rank, d), dtype=np.float32)
    return normalise(rng.standard_normal((n, rank), dtype=np.float32) @ basis
                     + noise * np.sqrt(rank) * rng.standard_normal((n, d), dtype=np.float32))


def vectors(kind: str, rng, n, d):
    """``n`` unit vectors: ``random`` (isotropic) or ``structured`` (low-rank + noise, like embeddings)."""
    return unit(rng, n, d) if kind == "random" else structured(rng, n, d)


def planted_near_duplicates(rng, stored: np.ndarray, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies (cos about 0.95) of ``sample`` stored vectors, and their exact largest cosine with the store."""
    src = rng.choice(len(stored), sample, replace=False)
    planted = normalise(stored[src] + 0.33 * unit(rng, sample, stored.shape[1]))
    return planted, (planted @ stored.T).max(axis=1)


def gemm_rate(d: int, batch: int, seconds: float = 3.0) -> float:
    """float32 GFLOP/s of the store's representative product: (batch x d) @ (d x 16384)."""
    rng = np.random.default_rng(1)
    a, b = unit(rng, batch, d), unit(rng, 16384, d)
    a @ b.T  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b.T
        reps += 1
    return 2.0 * batch * 16384 * d * reps / (time.perf_counter() - t0) / 1e9


def online_exact(x: np.ndarray, batch: int, index: str = "exact", **hnsw) -> tuple[float, EmbeddingStore, int]:
    store = EmbeddingStore(x.shape[1], index=index, capacity=len(x), **hnsw)
    accepted = 0
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        accepted += int(store.accept_batch(x[start: start + batch])[0].sum())
    return time.perf_counter() - t0, store, accepted


def per_vector_seconds(x: np.ndarray, samples: int, vstack: bool = False) -> float:
    """A per-vector loop: one matrix-vector product per candidate against a store of len(x)//2 vectors
    (the mean store size of the online run); seconds per candidate. ``vstack=False``: a preallocated
    store (the append is free; the cost is the product). ``vstack=True``: the loop as it is usually first
    written, each accepted vector ``np.vstack``-ed onto the store (a copy of the whole store per accept)."""
    stored = x[: len(x) // 2].copy()
    cands = x[len(x) // 2: len(x) // 2 + samples]
    t0 = time.perf_counter()
    for v in cands:
        if float((stored @ v).max()) <= 0.9 and vstack:
            stored = np.vstack([stored, v[None, :]])
    return (time.perf_counter() - t0) / len(cands)


def python_pair_seconds(x: np.ndarray, pairs: int) -> float:
    stored, v = list(x[:pairs]), x[-1]
    t0 = time.perf_counter()
    best = -1.0
    for s in stored:
        sim = float(np.dot(s, v))
        if sim > best:
            best = sim
    return (time.perf_counter() - t0) / pairs


def approx_run(n: int, d: int, batch: int, sample: int, data: str = "random", **hnsw) -> dict:
    rng = np.random.default_rng(7)
    x = vectors(data, rng, n, d)
    secs, store, acc = online_exact(x, batch, index="hnsw", **hnsw)
    stored = store.vectors
    # Recall@1 on fresh random queries (the hard case for a graph index: no structure at all)
    # and decision agreement on planted near-duplicates of stored vectors (cos about 0.95).
    q = unit(rng, sample, d)
    exact_best = (q @ stored.T).argmax(axis=1)
    _, hnsw_best = store.nearest(q)
    planted, exact_sims = planted_near_duplicates(rng, stored, sample)
    hnsw_sims = store.max_similarity(planted)
    agree = float(((exact_sims > 0.9) == (hnsw_sims > 0.9)).mean())
    return {"secs": secs, "accepted": acc, "recall1": float((exact_best == hnsw_best).mean()),
            "agree": agree, "planted_cos": float(np.median(exact_sims))}


def hnsw_sweep(n: int, d: int) -> None:
    """Decision agreement with exact search on planted near-duplicates (cos ~0.95), bulk-built stores."""
    print(f"\nHNSW parameter sweep, {n:,} vectors (bulk add), 1,000 planted near-duplicates")
    print(f"{'data':>10} {'M':>3} {'efC':>4} {'build/s':>8} {'efSearch':>8} {'agree':>6} {'queries/s':>10}")
    rng = np.random.default_rng(11)
    for data in ("random", "structured"):
        x = vectors(data, rng, n, d)
        planted, exact_sims = planted_near_duplicates(rng, x, 1000)
        for m, efc in ((16, 40), (32, 80)):
            store = EmbeddingStore(d, index="hnsw", hnsw_m=m, ef_construction=efc)
            t0 = time.perf_counter()
            store.add(x)
            build = n / (time.perf_counter() - t0)
            for efs in (32, 128, 512):
                store._faiss.hnsw.efSearch = efs  # the search beam can change on a built graph
                t0 = time.perf_counter()
                sims = store.max_similarity(planted)
                qps = len(planted) / (time.perf_counter() - t0)
                agree = float(((sims > 0.9) == (exact_sims > 0.9)).mean())
                print(f"{data:>10} {m:>3} {efc:>4} {build:>8,.0f} {efs:>8} {agree:>6.3f} {qps:>10,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the main exact run")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=1024, help="candidates per accept_batch call")
    ap.add_argument("--n-approx", type=int, default=1_000_000, help="vectors in the HNSW run (0 skips it)")
    store_defaults = {k: v.default for k, v in inspect.signature(EmbeddingStore).parameters.items()}
    ap.add_argument("--hnsw-m", type=int, default=store_defaults["hnsw_m"], help="HNSW graph degree (the store's default)")
    ap.add_argument("--ef-construction", type=int, default=store_defaults["ef_construction"],
                    help="HNSW build beam (the store's default)")
    ap.add_argument("--ef-search", type=int, default=store_defaults["ef_search"], help="HNSW search beam (the store's default)")
    ap.add_argument("--approx-data", choices=["random", "structured"], default="random",
                    help="vectors of the HNSW run: random (the hard case) or low-rank + noise, like embeddings")
    ap.add_argument("--sweep", type=int, default=0, metavar="N",
                    help="also print HNSW decision agreement on N vectors for a grid of M/efConstruction/efSearch")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.n, args.n_approx = 10_000, 20_000
    n, d, b = args.n, args.dim, args.batch

    gemm0 = gemm_rate(d, b)
    print(f"float32 GEMM rate ((batch {b} x {d}) @ ({d} x 16384), numpy/OpenBLAS): {gemm0:.1f} GFLOP/s")

    rng = np.random.default_rng(0)
    x = unit(rng, n, d)
    flop = float(n) * n * d  # sum over candidates of 2 * d * (store size), store growing 0..n
    secs, store, acc = online_exact(x, b)
    gemm1 = gemm_rate(d, b)
    gemm = (gemm0 + gemm1) / 2
    rate = flop / secs / 1e9
    print(f"\nonline exact, N={n:,}, d={d}: {flop / 1e12:.2f} TFLOP in {secs:.1f} s wall, {acc:,} accepted")
    print(f"GEMM rate after the run: {gemm1:.1f} GFLOP/s; mean of before/after {gemm:.1f}")
    print(f"store effective rate: {rate:.1f} GFLOP/s = {100 * rate / gemm:.0f} % of the measured GEMM rate (target >= 70 %)")

    per_vec = per_vector_seconds(x, samples=200)
    naive = per_vec * n
    textbook = per_vector_seconds(x, samples=100, vstack=True) * n
    per_pair = python_pair_seconds(x, pairs=min(20_000, n - 1))
    python_total = per_pair * n * (n - 1) / 2
    print(f"naive per-vector loop (numpy matrix-vector product per candidate): {1e3 * per_vec:.2f} ms per candidate "
          f"against {n // 2:,} vectors "
          f"(measured on 200 candidates, extrapolated x{n:,}): ~{naive:.0f} s -> batched is {naive / secs:.1f}x faster")
    print(f"textbook per-vector loop (matrix-vector product, np.vstack on accept): measured on 100 candidates, "
          f"extrapolated: ~{textbook:.0f} s -> batched is {textbook / secs:.1f}x faster")
    print(f"brute-force ceiling vs the per-vector product loop: GEMM rate / its rate = "
          f"{gemm / (2 * d * (n // 2) / per_vec / 1e9):.1f}x (it runs at {2 * d * (n // 2) / per_vec / 1e9:.1f} GFLOP/s, "
          f"memory-bound)")
    print(f"pure-Python pair loop: {1e6 * per_pair:.2f} us per pair (measured on {min(20_000, n - 1):,} pairs, "
          f"extrapolated to {n * (n - 1) // 2:,} pairs): ~{python_total:,.0f} s -> batched is {python_total / secs:,.0f}x faster")

    hnsw = dict(hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search)
    print(f"\nscaling (exact = numpy matrix products; hnsw = FAISS IndexHNSWFlat, M={args.hnsw_m}, "
          f"efConstruction={args.ef_construction}, efSearch={args.ef_search})")
    print(f"{'N':>10} {'index':>6} {'wall s':>8} {'GFLOP/s':>8} {'% GEMM':>7} {'accepted':>9} {'recall@1':>9} {'agree':>6}")
    for size in sorted({10_000, n}):
        xs = x[:size]
        s_secs, _, s_acc = online_exact(xs, b) if size != n else (secs, None, acc)
        r = float(size) * size * d / s_secs / 1e9
        print(f"{size:>10,} {'exact':>6} {s_secs:>8.1f} {r:>8.1f} {100 * r / gemm:>6.0f}% {s_acc:>9,} {'1.000':>9} {'1.000':>6}")
    if args.n_approx:
        res = approx_run(args.n_approx, d, b, sample=1000, data=args.approx_data, **hnsw)
        print(f"{args.n_approx:>10,} {'hnsw':>6} {res['secs']:>8.1f} {'-':>8} {'-':>7} {res['accepted']:>9,} "
              f"{res['recall1']:>9.3f} {res['agree']:>6.3f}")
        print(f"  {args.approx_data} vectors; recall@1: fresh random queries vs exact search on 1,000 samples; agree: "
              f"same > 0.9 decision as exact on 1,000 planted near-duplicates (median exact cos {res['planted_cos']:.2f})")
    if args.sweep:
        hnsw_sweep(args.sweep, d)

    # Planted near-duplicates: half of the stream are noisy copies (cos about 0.95) of earlier vectors.
    m = min(n, 20_000)
    base = unit(rng, m // 2, d)
    copies = normalise(base[rng.integers(0, m // 2, m // 2)] + 0.33 * unit(rng, m // 2, d))
    stream = np.concatenate([base, copies])
    order = np.concatenate([np.arange(m // 2), np.arange(m // 2, m)])  # every copy comes after its source
    p_secs, _, p_acc = online_exact(stream[order], b)
    print(f"\nplanted near-duplicates: {m:,} vectors, {m // 2:,} of them copies at cos ~0.95: "
          f"{p_acc:,} accepted, {m - p_acc:,} rejected in {p_secs:.2f} s")


if __name__ == "__main__":
    main()
