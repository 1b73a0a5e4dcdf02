"""Benchmark: online accept/reject in the diversity store (METHOD.md D9), against this machine's GEMM rate.

Online accept/reject of N random d-dimensional unit vectors with exact search is about N^2 * d
floating-point operations (each candidate against every vector accepted before it, 2 FLOP per
multiply-add): 3.8 TFLOP for N = 100,000 and d = 384. The store batches candidates into matrix
products and resolves the conflicts inside a batch in order, so it should run near the float32
GEMM rate of the machine, which this script measures first (and again at the end: the machine is
shared and noisy, both figures are printed).

Baselines measured in the same run, on a subset and extrapolated (said so in the output):
  * per-vector: ``try_add`` one candidate at a time (a matrix-vector product per candidate);
  * pure Python: a loop over the stored vectors with one ``np.dot`` per pair.

Then a scaling table (10k and 100k exact; ``--n-approx`` vectors with the HNSW index and its
recall against exact search on a sample) and a run with planted near-duplicates that exercises
rejection.

Usage:
    .venv/bin/python bench/diversity.py [--n 100000] [--n-approx 1000000] [--batch 1024] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cerbero_hf.diversity import EmbeddingStore, normalise


def unit(rng, n, d):
    return normalise(rng.standard_normal((n, d), dtype=np.float32))


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


def online_exact(x: np.ndarray, batch: int, index: str = "exact") -> tuple[float, EmbeddingStore, int]:
    store = EmbeddingStore(x.shape[1], index=index, capacity=len(x))
    accepted = 0
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        accepted += int(store.accept_batch(x[start: start + batch])[0].sum())
    return time.perf_counter() - t0, store, accepted


def per_vector_seconds(x: np.ndarray, samples: int) -> float:
    """The naive loop: one matrix-vector product per candidate (then append), against a store of
    len(x)//2 vectors (the mean store size of the online run); seconds per candidate."""
    stored = x[: len(x) // 2].copy()
    cands = x[len(x) // 2: len(x) // 2 + samples]
    t0 = time.perf_counter()
    for v in cands:
        if float((stored @ v).max()) <= 0.9:
            pass  # a real loop would append here; the cost is the product
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


def approx_run(n: int, d: int, batch: int, sample: int) -> dict:
    rng = np.random.default_rng(7)
    x = unit(rng, n, d)
    secs, store, acc = online_exact(x, batch, index="hnsw")
    stored = store.vectors
    # Recall@1 on fresh random queries (the hard case for a graph index: no structure at all)
    # and decision agreement on planted near-duplicates of stored vectors (cos about 0.95).
    q = unit(rng, sample, d)
    exact_best = (q @ stored.T).argmax(axis=1)
    _, hnsw_best = store.nearest(q)
    src = rng.choice(len(stored), sample, replace=False)
    planted = normalise(stored[src] + 0.33 * unit(rng, sample, d))
    exact_sims = (planted @ stored.T).max(axis=1)
    hnsw_sims = store.max_similarity(planted)
    agree = float(((exact_sims > 0.9) == (hnsw_sims > 0.9)).mean())
    return {"secs": secs, "accepted": acc, "recall1": float((exact_best == hnsw_best).mean()),
            "agree": agree, "planted_cos": float(np.median(exact_sims))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the main exact run")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=1024, help="candidates per accept_batch call")
    ap.add_argument("--n-approx", type=int, default=1_000_000, help="vectors in the HNSW run (0 skips it)")
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
    per_pair = python_pair_seconds(x, pairs=min(20_000, n - 1))
    python_total = per_pair * n * (n - 1) / 2
    print(f"naive per-vector loop (numpy matrix-vector product per candidate): {1e3 * per_vec:.2f} ms per candidate against {n // 2:,} vectors "
          f"(measured on 200 candidates, extrapolated x{n:,}): ~{naive:.0f} s -> batched is {naive / secs:.1f}x faster")
    print(f"pure-Python pair loop: {1e6 * per_pair:.2f} us per pair (measured on {min(20_000, n - 1):,} pairs, "
          f"extrapolated to {n * (n - 1) // 2:,} pairs): ~{python_total:,.0f} s -> batched is {python_total / secs:,.0f}x faster")

    print("\nscaling (exact = numpy matrix products; hnsw = FAISS IndexHNSWFlat, M=32, efSearch=64)")
    print(f"{'N':>10} {'index':>6} {'wall s':>8} {'GFLOP/s':>8} {'% GEMM':>7} {'accepted':>9} {'recall@1':>9} {'agree':>6}")
    for size in sorted({10_000, n}):
        xs = x[:size]
        s_secs, _, s_acc = online_exact(xs, b) if size != n else (secs, None, acc)
        r = float(size) * size * d / s_secs / 1e9
        print(f"{size:>10,} {'exact':>6} {s_secs:>8.1f} {r:>8.1f} {100 * r / gemm:>6.0f}% {s_acc:>9,} {'1.000':>9} {'1.000':>6}")
    if args.n_approx:
        res = approx_run(args.n_approx, d, b, sample=1000)
        print(f"{args.n_approx:>10,} {'hnsw':>6} {res['secs']:>8.1f} {'-':>8} {'-':>7} {res['accepted']:>9,} "
              f"{res['recall1']:>9.3f} {res['agree']:>6.3f}")
        print(f"  recall@1: fresh random queries vs exact search on 1,000 samples; agree: same > 0.9 decision as "
              f"exact on 1,000 planted near-duplicates (median exact cos {res['planted_cos']:.2f})")

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
