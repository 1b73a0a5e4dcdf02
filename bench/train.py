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
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import shutil
import statistics
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "train"


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


def run_plain(lm, corpus, out, steps, max_length, packing) -> tuple[int, float]:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    ds = load_dataset(str(corpus), split="train").select_columns(["messages"]).shuffle(seed=42)
    tok = AutoTokenizer.from_pretrained(lm)
    model = AutoModelForCausalLM.from_pretrained(lm)
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, gradient_accumulation_steps=1,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=4, help="runs per side and packing mode (even: ABBA)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--packing", choices=["both", "on", "off"], default="both")
    a = ap.parse_args()
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
