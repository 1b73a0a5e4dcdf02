"""Benchmark: peak memory of a refine run against the corpus size (the target: flat within 20 % from 300k to 1M rows).

    .venv/bin/python bench/refine_memory.py [--sizes 50000,300000,1000000] [--format parquet|jsonl]
                                            [--num-proc 2] [--lingua] [--baseline-rev 717b9a7 | --no-baseline]

1. For each size, a Fauno-shaped corpus with the paper's defect rates (dataset_scripts/fauno_sample/build.py,
   ``bench_counts``, as bench/refine.py) is built into bench/_work/ (reused when present), as JSON lines and,
   with ``--format parquet`` (the default), converted to parquet.
2. Each run is the refine stage itself (``run_refine``: load, every rule, the order-aware duplicate pass, the
   Hub-layout folder) in a fresh Python process. Its peak RSS is the largest of its own ``VmHWM`` (read by the
   process at its end) and the ``ru_maxrss`` of the worker processes it started. Not ``ru_maxrss`` of the run
   itself: Linux counts in it the RSS of the parent that started it (the image replaced by ``exec``), and this
   parent holds the corpus it built. The parent also samples the run's ``/proc/PID/status`` every 20 ms for the
   peaks of the two parts of RSS: ``RssAnon`` (the heap: Python objects, Arrow buffers) and ``RssFile`` (pages
   of files mapped into the process, such as memory-mapped Arrow files: clean page cache that the kernel takes
   back when memory runs short). "before write": the peak RSS when the run starts its final write of the
   Hub-layout folder (``io.save_hub_folder``, which reads the kept rows back memory-mapped, so RssFile grows by
   the size of the output there).
3. Baseline: the same runs with the package as of ``--baseline-rev`` (the refiner that held the whole corpus in
   memory), extracted with ``git archive`` into bench/_work/baseline-REV/ and put first on PYTHONPATH.

Each run's report is checked against the injected defects (``report ok``). Prints one row per run, then the
ratios largest/second-largest size (1M/300k by default). The machine is shared: the load average is printed.
Without ``--lingua`` the language check makes its first pass only (Lingua triples the time; its models are
loaded once per process, the same at every size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work"
sys.path.insert(0, str(ROOT / "bench"))


def parquet_corpus(jsonl: Path) -> Path:
    """``jsonl`` converted to parquet (read and written a block at a time)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    out = jsonl.with_suffix(".parquet")
    if not out.exists():
        schema = pa.schema([("id", pa.string()), ("input", pa.string())])
        reader = pj.open_json(jsonl, parse_options=pj.ParseOptions(explicit_schema=schema))
        with pq.ParquetWriter(out.with_suffix(".tmp"), schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        out.with_suffix(".tmp").rename(out)
    return out


def baseline_package(rev: str) -> Path | None:
    """The ``cerbero_hf`` package as of git revision ``rev``, under bench/_work/baseline-REV/ (None: no git)."""
    folder = WORK / f"baseline-{rev}"
    if (folder / "cerbero_hf").is_dir():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "cerbero_hf"], capture_output=True)
    if archive.returncode != 0:
        print(f"baseline: git archive {rev} failed ({archive.stderr.decode().strip()}); no baseline")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def _status(pid: int) -> dict[str, int]:
    """RssAnon and RssFile of process ``pid`` in MB ({} once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return {line.split(":")[0]: int(line.split()[1]) // 1024 for line in fh
                    if line.startswith(("RssAnon:", "RssFile:"))}
    except (OSError, ValueError):
        return {}


def measure(corpus: Path, out: Path, num_proc: int, lingua: bool, package: Path | None) -> dict:
    """One refine run in a fresh process: peak RSS (MB), peaks of RssAnon/RssFile (MB), seconds, its result."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HOME": str(WORK / "hf_home"), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(str(p) for p in (package or ROOT, ROOT))}
    cmd = [sys.executable, __file__, "--worker", str(corpus), str(out), "--num-proc", str(num_proc)]
    logs = WORK / "refine_memory.log"
    start = time.perf_counter()
    with (WORK / "refine_memory.json").open("w") as stdout, logs.open("w") as stderr:
        proc = subprocess.Popen(cmd + (["--lingua"] if lingua else []), env=env, stdout=stdout, stderr=stderr)
    peaks, done = {"RssAnon": 0, "RssFile": 0}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _status(proc.pid).items():
                peaks[key] = max(peaks[key], value)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"refine run failed ({corpus}):\n{logs.read_text()[-3000:]}")
    result = json.loads((WORK / "refine_memory.json").read_text().strip().splitlines()[-1])
    return {"rss": max(result["hwm_mb"], result["workers_mb"]), "anon": peaks["RssAnon"], "file": peaks["RssFile"],
            "before_write": max(result["before_write_mb"], result["workers_mb"]), "seconds": seconds,
            "result": result}


def _hwm_mb() -> int:
    """This process's peak RSS so far (``VmHWM``), in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) // 1024


def worker(corpus: str, out: str, num_proc: int, lingua: bool) -> None:
    """The measured process: the refine stage on ``corpus``; prints its result as one JSON line."""
    import resource

    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.refine.stage import RefineConfig, run_refine

    before = {}  # the peak RSS when the final write of the folder starts (the "writing" event)
    context = Context(output=Path(out), on_event=lambda event, stats: before.setdefault(event, _hwm_mb()))
    result = run_refine(RefineConfig(inputs=[corpus], num_proc=num_proc, use_lingua=lingua), context)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # the largest worker process
    print(json.dumps({"input": result.input, "kept": result.kept, "removed": result.removed,
                      "changed": result.changed, "hwm_mb": _hwm_mb(), "workers_mb": workers,
                      "before_write_mb": before["writing"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50000,300000,1000000", help="corpus sizes (rows), comma-separated")
    ap.add_argument("--format", choices=("parquet", "jsonl"), default="parquet", help="the input file's format")
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--lingua", action="store_true", help="the language check's second pass too (slower)")
    ap.add_argument("--baseline-rev", default="717b9a7", help="git revision of the whole-in-memory refiner")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker, args.num_proc, args.lingua)
    from refine import corpus  # bench/refine.py: the same corpora

    WORK.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    package = None if args.no_baseline else baseline_package(args.baseline_rev)
    sides = [("streamed", None)] + ([(f"baseline {args.baseline_rev}", package)] if package else [])
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; input {args.format}, "
          f"num_proc={args.num_proc}, lingua={args.lingua}")
    print(f"{'run':22s} {'rows':>9s} {'peak RSS MB':>12s} {'before write':>13s} {'RssAnon MB':>11s} {'RssFile MB':>11s} "
          f"{'seconds':>8s}  report ok")
    figures: dict = {}
    for n in sizes:
        path, expected = corpus(n, WORK)
        if args.format == "parquet":
            path = parquet_corpus(path)
        removed = {k: v for k, v in expected["removed"].items() if v}
        for name, pkg in sides:
            m = measure(path, WORK / f"refine_memory_out_{n}", args.num_proc, args.lingua, pkg)
            ok = {k: v for k, v in m["result"]["removed"].items() if v} == removed and m["result"]["input"] == n
            figures[name, n] = m
            print(f"{name:22s} {n:9,d} {m['rss']:12,d} {m['before_write']:13,d} {m['anon']:11,d} {m['file']:11,d} "
                  f"{m['seconds']:8.1f}  {ok}", flush=True)
    if len(sizes) >= 2:
        small, large = sizes[-2], sizes[-1]
        print(f"\nratios {large:,} / {small:,} rows (target for peak RSS: <= 1.2)")
        for name, _ in sides:
            a, b = figures[name, small], figures[name, large]
            print(f"  {name:20s} peak RSS x{b['rss'] / a['rss']:.2f}   before the write x"
                  f"{b['before_write'] / a['before_write']:.2f}   RssAnon x{b['anon'] / a['anon']:.2f}   "
                  f"RssFile x{b['file'] / max(a['file'], 1):.2f}")
        if len(sides) == 2:
            for n in sizes:
                print(f"  {n:9,d} rows: streamed peak RSS = {figures['streamed', n]['rss'] / figures[sides[1][0], n]['rss']:.2f} "
                      "of the baseline's")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
