"""Benchmark: ``cerbero-hf train`` against a plain TRL ``SFTTrainer`` script, tokens per second.

Both sides train the same small Mistral (built offline) on the same corpus with the same SFT settings
(Table 1 schedule, CPU flags), in this one process, with and without packing. "Ours" is the real
command (``cerbero_hf.cli.main(["train", ...])``: data mix, template, trainer, save, model card,
manifest); "plain" is the script a TRL user would write (load_dataset, SFTTrainer, train, save_model).
Runs follow an ABBA order (ours, plain, plain, ours, ...) so that neither side always runs first
and a slow drift of the process (allocator growth, machine load) hits both sides alike; each packing
mode starts with one unmeasured run per side (its own shapes: the first run at new shapes pays the
allocator's growth), and ``gc.collect()`` runs before each run; malloc's thresholds are pinned (see ``steady_allocator``). The
figures are medians.
Profiling one run of each side (cProfile) shows the same operations, call for call, in the step:
the two sides do the same work per token, so the ratio measures our fixed costs plus noise.

tokens/s = tokens trained (TRL's count) / seconds of the whole call, both as wall time and as this
process's CPU time (torch runs on one thread, so CPU seconds are the work done and are much less
disturbed than wall seconds when other jobs share the machine); "loop" divides by the wall seconds
inside ``trainer.train()`` only. Both sides save a final checkpoint and the model (TRL's default
``save_strategy="steps"``). Target: ratio ours/plain >= 0.97. Fixed per-run costs of ours (CLI parsing,
data mix, model card, manifest: about 0.7 s here) weigh less as ``--steps`` grows.

    .venv/bin/python bench/train.py [--steps 100] [--repeats 4] [--max-length 256]

``--nproc N`` (N = 2 here) measures training under a launcher instead, every run a subprocess of the real
command (``python -m cerbero_hf train``; ``torchrun --nproc_per_node N`` with a free ``--master_port`` each)
at the same global batch (per-device 4 // N with N processes, 4 with one), malloc thresholds pinned through
``MALLOC_*_`` variables:

1. trainer-loop tokens/s (``result.tokens`` / ``result.seconds`` of ``cerbero_train.json``) and whole-command
   wall time of N processes x 1 thread against 1 process x N threads and 1 process x 1 thread;
2. the share of a step spent in DDP's gradient all-reduce (gloo): N ranks of this file (``--worker
   allreduce``) train the same model wrapped in ``DistributedDataParallel`` on random tokens of the same shape
   under ``torch.profiler``; it prints the matched events (name containing "allreduce" / "all_reduce"), their
   self CPU time and their time in flight over the step time, and the exposed cost (step time against
   steps under ``no_sync()``, which skip the all-reduce);
3. ours against the plain TRL script (``run_plain``, ``--worker plain``) under the same ``torchrun``.

Runs 1 and 3 share one schedule, ABCD DCBA (ours N procs, plain N procs, 1 x N threads, 1 x 1 thread), after
one unmeasured short run per torchrun side (dataset caches); medians over ``--repeats`` rounds (defaults with
``--nproc``: 4 rounds of 50 steps, packing on; about 7 minutes here).

    .venv/bin/python bench/train.py --nproc 2 [--steps 50] [--repeats 4] [--packing on|off|both]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "train"


def setup(rows: int) -> tuple[Path, Path]:
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row
    from cerbero_hf.tiny_models import build_tiny_chat_lm, italian_sentences

    lm = WORK / "lm"
    if not (lm / "model.safetensors").exists():
        build_tiny_chat_lm(lm, hidden=128, layers=2, vocab=800)
    s = italian_sentences(400, seed=1)
    data = [make_row(f"c-{i}", [m for k in range(4) for m in (
        {"role": "user", "content": " ".join(s[(i + k + j) % len(s)] for j in range(3))},
        {"role": "assistant", "content": " ".join(s[(i * 7 + k + j) % len(s)] for j in range(5))})], source="generated")
        for i in range(rows)]
    corpus = save_hub_folder(WORK / "generated", {"default": Dataset.from_list(data, features=features())})
    return lm, corpus


def run_ours(lm, corpus, out, steps, max_length, packing) -> tuple[int, float]:
    from cerbero_hf.cli import main

    main(["train", f"generated={corpus}", str(out), "--model", str(lm), "--max-steps", str(steps),
          "--max-length", str(max_length), "--gradient-accumulation-steps", "1",
          "--packing" if packing else "--no-packing", "--save-steps", str(10 * steps), "--eval-fraction", "0",
          "--no-resume"])
    result = json.loads((Path(out) / "cerbero_train.json").read_text())["result"]
    return result["tokens"], result["seconds"]


def run_plain(lm, corpus, out, steps, max_length, packing, batch=4) -> tuple[int, float]:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    ds = load_dataset(str(corpus), split="train").select_columns(["messages"]).shuffle(seed=42)
    tok = AutoTokenizer.from_pretrained(lm)
    model = AutoModelForCausalLM.from_pretrained(lm)
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                     learning_rate=5e-6, lr_scheduler_type="cosine", warmup_steps=10, weight_decay=0.0,
                     max_length=max_length, packing=packing, use_cpu=True, bf16=False, activation_checkpointing=False,
                     optim="adamw_torch", report_to="none", save_steps=10 * steps, logging_steps=10, disable_tqdm=True,
                     seed=42, data_seed=42)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    start = time.perf_counter()
    trainer.train()
    loop = time.perf_counter() - start
    trainer.save_model(str(out))
    return int(trainer._total_train_tokens), loop


def steady_allocator() -> bool:
    """Pin glibc malloc's mmap and trim thresholds (``mallopt``) for the whole process.

    By default glibc moves its mmap threshold as blocks are freed, so whether a step's activation
    buffers come from the heap or from fresh, page-faulted mmaps depends on everything the process did
    before: the same run measured 234k-696k page faults and 0.7-2.7 s of kernel time here, a +-15 %
    swing that fell on either side at random. Pinned, both sides see ~205k faults and the same
    allocator. (For real CPU training the same holds: jemalloc/tcmalloc or these settings help.)
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


# --- --nproc N: several processes under torchrun ------------------------------------------------------------------

PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}  # as steady_allocator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(threads: int) -> dict:
    """The environment of every measured subprocess: ``threads`` torch threads, pinned malloc, quiet libraries."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1", **PINNED_MALLOC)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("CERBERO_HF_DEBUG", None)
    return env


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(free_port())]


def command(cmd: list[str], threads: int, timeout: float = 900) -> tuple[float, float]:
    """Run ``cmd``; ``(wall seconds, CPU seconds of it and its children)``. A failure raises with its output."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=child_env(threads), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - wall
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return wall, (now.ru_utime - cpu.ru_utime) + (now.ru_stime - cpu.ru_stime)


def run_side(side: str, lm, corpus, out, steps, max_length, packing, nproc, threads, batch) -> dict:
    """One measured subprocess run: ``ours`` (``python -m cerbero_hf train``, under torchrun when ``nproc > 1``)
    or ``plain`` (``run_plain`` in each rank of a torchrun, through ``--worker plain``)."""
    launch = torchrun(nproc) if nproc > 1 else [sys.executable]
    if side == "ours":
        cmd = launch + ["-m", "cerbero_hf", "train", f"generated={corpus}", str(out), "--model", str(lm),
                        "--max-steps", str(steps), "--max-length", str(max_length),
                        "--per-device-train-batch-size", str(batch), "--gradient-accumulation-steps", "1",
                        "--packing" if packing else "--no-packing", "--save-steps", str(10 * steps),
                        "--eval-fraction", "0", "--no-resume"]
    else:
        cmd = launch + [str(Path(__file__).resolve()), "--worker", "plain", "--lm", str(lm), "--corpus", str(corpus),
                        "--out", str(out), "--steps", str(steps), "--max-length", str(max_length),
                        "--packing", "on" if packing else "off", "--batch", str(batch)]
    wall, cpu = command(cmd, threads)
    if side == "ours":
        report = json.loads((Path(out) / "cerbero_train.json").read_text())
        result, setup = report["result"], report["data"]["distributed"]
        ranks = setup.get("ranks", [])
        if setup["world_size"] != nproc or any(r["steps"] != steps for r in ranks):
            raise RuntimeError(f"{out}: expected {nproc} ranks of {steps} steps, got {setup}")
        tokens, loop = result["tokens"], result["seconds"]
    else:
        result = json.loads((Path(out) / "plain_result.json").read_text())
        tokens, loop = result["tokens"], result["seconds"]
    return {"tokens": tokens, "loop": loop, "wall": wall, "cpu": cpu}


def worker_plain(a) -> None:
    """``run_plain`` in one rank of a torchrun; the main rank writes ``plain_result.json``."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tokens, loop = run_plain(Path(a.lm), Path(a.corpus), Path(a.out), a.steps, a.max_length, a.packing == "on",
                             batch=a.batch)
    if os.environ.get("RANK", "0") == "0":
        (Path(a.out) / "plain_result.json").write_text(json.dumps({"tokens": tokens, "seconds": loop}))


def worker_allreduce(a) -> None:
    """One rank of the all-reduce probe: the benchmark's model in DDP (gloo), random tokens of shape
    ``[batch, max_length]``, AdamW. Profiles ``--steps`` steps, then times blocks of steps with and without the
    all-reduce (``no_sync``), alternated; the main rank writes the figures to ``--out``."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(dist.get_rank())
    model = DistributedDataParallel(AutoModelForCausalLM.from_pretrained(a.lm))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-6)
    x = torch.randint(0, model.module.config.vocab_size, (a.batch, a.max_length))

    def step(sync: bool = True) -> None:
        with contextlib.nullcontext() if sync else model.no_sync():
            model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    dist.barrier()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(a.steps):
            step()
        profiled = time.perf_counter() - start
    events = [{"name": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3, "total_ms": e.cpu_time_total / 1e3}
              for e in prof.key_averages()]
    times: dict[bool, list[float]] = {True: [], False: []}
    for block in range(12):  # sync, no_sync, no_sync, sync, ... (ABBA), 5 steps a block; medians of the blocks
        sync = block % 4 in (0, 3)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(5):
            step(sync)
        times[sync].append((time.perf_counter() - start) / 5)
    figures = {"rank": dist.get_rank(), "steps": a.steps, "profiled_s": profiled, "events": events,
               "sync_step_s": statistics.median(times[True]), "no_sync_step_s": statistics.median(times[False])}
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, figures)
    if dist.get_rank() == 0:
        Path(a.out).write_text(json.dumps(every))
    dist.destroy_process_group()


def allreduce_share(lm, nproc, batch, max_length, steps=20) -> None:
    out = WORK / "allreduce.json"
    out.unlink(missing_ok=True)
    wall, _ = command(torchrun(nproc) + [str(Path(__file__).resolve()), "--worker", "allreduce", "--lm", str(lm),
                                         "--out", str(out), "--steps", str(steps), "--max-length", str(max_length),
                                         "--batch", str(batch)], threads=1)
    ranks = json.loads(out.read_text())
    print(f"\n2. gradient all-reduce (DDP, gloo), {nproc} processes x 1 thread, the same model on random tokens "
          f"[{batch} x {max_length}] per rank, {steps} steps under torch.profiler (whole probe {wall:.0f} s):")
    for r in ranks:
        step = r["profiled_s"] / r["steps"]
        matched = [e for e in r["events"] if "allreduce" in e["name"].lower().replace("_", "")]
        own = sum(e["self_ms"] for e in matched) / 1e3 / r["profiled_s"]
        flight = sum(e["total_ms"] for e in matched if e["name"].startswith("gloo:")) / 1e3 / r["profiled_s"]
        names = ", ".join(f"{e['name']} ({e['calls']} calls, self {e['self_ms']:.1f} ms, total {e['total_ms']:.1f} ms)"
                          for e in matched) or "none"
        exposed = (r["sync_step_s"] - r["no_sync_step_s"]) / r["sync_step_s"]
        print(f"   rank {r['rank']}: profiled step {step * 1e3:.1f} ms; matched events: {names}")
        print(f"   rank {r['rank']}: self CPU of matched events / step time {own:.1%}; their time in flight "
              f"(async, overlapping backward) / step time {flight:.1%}; exposed: step {r['sync_step_s'] * 1e3:.1f} ms "
              f"against {r['no_sync_step_s'] * 1e3:.1f} ms under no_sync() (no all-reduce) = {exposed:.1%} of the step")
    sync, alone = max(r["sync_step_s"] for r in ranks), max(r["no_sync_step_s"] for r in ranks)
    print(f"   all ranks: step {sync * 1e3:.1f} ms against the slowest rank's step without the all-reduce "
          f"{alone * 1e3:.1f} ms: the all-reduce adds {(sync - alone) / sync:.1%} of the step (a rank that computes "
          "faster waits for the other inside it; DDP still broadcasts buffers at each forward under no_sync)")


def nproc_mode(a, lm, corpus) -> None:
    n = a.nproc
    per_device = max(1, 4 // n)
    glob = per_device * n
    configs = {  # name: (side, processes, threads per process, per-device batch)
        f"ours {n}x1": ("ours", n, 1, per_device), f"plain {n}x1": ("plain", n, 1, per_device),
        f"ours 1x{n}": ("ours", 1, n, glob), "ours 1x1": ("ours", 1, 1, glob)}
    print(f"--nproc {n}: every run a subprocess; global batch {glob} (per-device {per_device} x {n} processes, or "
          f"{glob} x 1), {a.steps} steps x max_length {a.max_length}, packing {a.packing}, {a.repeats} rounds ABCD DCBA, "
          f"malloc thresholds pinned; load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    k = 0

    def once(name, packing, steps=None):
        nonlocal k
        k += 1
        side, procs, threads, batch = configs[name]
        out = WORK / f"nproc-run-{k}"
        shutil.rmtree(out, ignore_errors=True)
        try:
            return run_side(side, lm, corpus, out, steps or a.steps, a.max_length, packing, procs, threads, batch)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    for packing in {"both": (True, False), "on": (True,), "off": (False,)}[a.packing]:
        for name in configs:
            if configs[name][1] > 1:  # unmeasured: the torchrun sides' dataset caches, the page cache
                once(name, packing, steps=2)
        res: dict[str, list[dict]] = {name: [] for name in configs}
        names = list(configs)
        for rep in range(a.repeats):
            for name in (names if rep % 2 == 0 else names[::-1]):
                res[name].append(once(name, packing))
        med = {name: {key: statistics.median(r[key] for r in runs) for key in ("loop", "wall", "cpu")}
               for name, runs in res.items()}
        rate = {name: statistics.median(r["tokens"] / r["loop"] for r in runs) for name, runs in res.items()}
        wall_rate = {name: statistics.median(r["tokens"] / r["wall"] for r in runs) for name, runs in res.items()}
        print(f"\npacking {'on' if packing else 'off'}")
        print(f"   {'run (procs x threads)':22} {'tokens':>7} {'loop s':>7} {'tok/s loop':>11} {'wall s':>7} "
              f"{'tok/s wall':>11} {'CPU s':>6}  runs (tok/s loop)")
        for name, runs in res.items():
            print(f"   {name:22} {runs[0]['tokens']:>7} {med[name]['loop']:>7.2f} {rate[name]:>11,.0f} "
                  f"{med[name]['wall']:>7.1f} {wall_rate[name]:>11,.0f} {med[name]['cpu']:>6.1f}  "
                  + " ".join(f"{r['tokens'] / r['loop']:,.0f}" for r in runs))
        ours_n = f"ours {n}x1"
        print(f"1. {n} processes x 1 thread (torchrun) against 1 process, medians:")
        for base in (f"ours 1x{n}", "ours 1x1"):
            print(f"   {ours_n} / {base}: loop {rate[ours_n]:,.0f} / {rate[base]:,.0f} tok/s = "
                  f"{rate[ours_n] / rate[base]:.3f}; whole command {med[ours_n]['wall']:.1f} s against "
                  f"{med[base]['wall']:.1f} s, speed ratio {med[base]['wall'] / med[ours_n]['wall']:.3f}")
        plain_n = f"plain {n}x1"
        print(f"3. ours / plain TRL, both under torchrun {n}x1, medians: loop {rate[ours_n]:,.0f} / {rate[plain_n]:,.0f} "
              f"tok/s = {rate[ours_n] / rate[plain_n]:.3f} (target >= 0.97); whole command {med[ours_n]['wall']:.1f} s "
              f"against {med[plain_n]['wall']:.1f} s, speed ratio {med[plain_n]['wall'] / med[ours_n]['wall']:.3f}")
    allreduce_share(lm, n, per_device, a.max_length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="default 100; 50 with --nproc")
    ap.add_argument("--repeats", type=int, default=4, help="runs per side and packing mode (even: ABBA)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--packing", choices=["both", "on", "off"], default=None, help="default both; on with --nproc")
    ap.add_argument("--nproc", type=int, default=None,
                    help="measure N processes under torchrun against one process (see the module's docstring)")
    ap.add_argument("--worker", choices=["plain", "allreduce"], help=argparse.SUPPRESS)  # a torchrun rank
    for flag in ("--lm", "--corpus", "--out"):
        ap.add_argument(flag, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        {"plain": worker_plain, "allreduce": worker_allreduce}[a.worker](a)
        return
    if a.nproc is not None and a.nproc < 2:
        ap.error("--nproc takes 2 or more processes")
    several = a.nproc is not None
    a.steps = a.steps or (50 if several else 100)
    a.packing = a.packing or ("on" if several else "both")
    import logging

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("cerbero_hf").setLevel(logging.ERROR)
    pinned = steady_allocator()
    lm, corpus = setup(a.rows)
    if several:
        nproc_mode(a, lm, corpus)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {lm}, {a.rows} rows, "
          f"{a.steps} steps x batch 4 x max_length {a.max_length}, malloc thresholds "
          f"{'pinned' if pinned else 'glibc default'}")
    runners = {"ours": run_ours, "plain": run_plain}
    n = 0

    def once(name, packing):
        nonlocal n
        n += 1
        out = WORK / f"run-{n}"
        shutil.rmtree(out, ignore_errors=True)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):  # both sides print the Trainer's log lines
            tokens, loop = runners[name](lm, corpus, out, a.steps, a.max_length, packing)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        shutil.rmtree(out, ignore_errors=True)
        return tokens / wall, tokens / cpu, tokens / loop, tokens

    print(f"{'packing':8} {'side':6} {'tokens':>8} {'tok/s wall':>11} {'tok/CPU-s':>10} {'tok/s loop':>11}  runs (wall)")
    for packing in {"both": (True, False), "on": (True,), "off": (False,)}[a.packing]:
        once("ours", packing), once("plain", packing)  # unmeasured: imports, caches, this mode's shapes
        res = {"ours": [], "plain": []}
        for rep in range(a.repeats):
            for name in (("ours", "plain") if rep % 2 == 0 else ("plain", "ours")):
                res[name].append(once(name, packing))
        med = {k: [statistics.median(r[j] for r in v) for j in range(3)] for k, v in res.items()}
        for name, runs in res.items():
            print(f"{str(packing):8} {name:6} {runs[0][3]:>8} {med[name][0]:>11,.0f} {med[name][1]:>10,.0f} "
                  f"{med[name][2]:>11,.0f}  " + " ".join(f"{r[0]:,.0f}" for r in runs))
        ratio = [med["ours"][j] / med["plain"][j] for j in range(3)]
        print(f"{str(packing):8} ratio ours/plain (medians): wall {ratio[0]:.3f}, CPU {ratio[1]:.3f}, "
              f"loop {ratio[2]:.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
