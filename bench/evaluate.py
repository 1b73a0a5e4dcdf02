"""Benchmark: the local evaluation runner, batched greedy generation against one example at a time.

The same few-shot prompts (every fixture task: SQuAD-it 3-shot, SENTIPOLC / IronITA / AMI 2020 5-shot,
the Cerbero chat template, the tasks' own generation lengths: 100 new tokens for SQuAD-it, 16 for EVALITA)
go through :class:`cerbero_hf.stages.evaluate.generators.LocalGenerator` with ``batch_size=16`` and with
``batch_size=1``, on the tiny chat model (built under ``bench/_work/``). The tiny model has random weights
and never stops early, so every prompt generates its full length in both modes; the batched run also pays
for left padding. Both runs must give identical answers (checked). Target: >= 4x examples/s at batch 16.

Prints examples/s for each mode and the ratio, each the best of ``--repeats`` runs (the machine is
shared with other jobs and noisy; the best run is the least disturbed one).

Usage:
    .venv/bin/python bench/evaluate.py [--threads 1] [--batch 16] [--repeats 3] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "evaluate"
FIX = ROOT / "cerbero_hf" / "data" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="examples per task (default: all)")
    args = parser.parse_args()

    import datasets
    import torch

    datasets.disable_progress_bars()
    if args.threads:
        torch.set_num_threads(args.threads)
    from cerbero_hf.stages.evaluate import TASKS, evaluation_settings, load_examples, prompt_format, task_configs
    from cerbero_hf.stages.evaluate.generators import LocalGenerator
    from cerbero_hf.stages.evaluate.runner import build_chats
    from cerbero_hf.tiny_models import build_tiny_chat_lm

    model_dir = WORK / "tiny-chat-lm"
    if not (model_dir / "config.json").exists():
        build_tiny_chat_lm(model_dir)
    settings = evaluation_settings("it")
    fmt = prompt_format("chat", "it", settings)
    groups = []  # (task, chats): each task keeps its own max_new_tokens, as in a real run
    for task in task_configs(TASKS, settings, data_dir=FIX):
        queries = load_examples(task, task.eval_split)[0][:args.limit]
        chats = build_chats(task, queries, load_examples(task, task.shot_split)[0], seed=42)[0]
        groups.append((task, chats))
    n = sum(len(c) for _, c in groups)

    def run(batch_size: int) -> tuple[float, list[str]]:
        gen = LocalGenerator(str(model_dir), device="cpu", batch_size=batch_size)
        gen.generate(groups[1][1][:2], fmt, max_new_tokens=4)  # warm-up
        best, answers = float("inf"), []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            answers = [o["raw"] for task, chats in groups
                       for o in gen.generate(chats, fmt, max_new_tokens=task.max_new_tokens, stop=fmt.stop)]
            best = min(best, time.perf_counter() - t0)
        return best, answers

    print(f"cpu threads: {torch.get_num_threads()}  (os.cpu_count {os.cpu_count()}, load avg "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    print(f"examples: {n} ({', '.join(f'{t.name} {len(c)}' for t, c in groups)}), format chat, greedy")
    t_batch, a_batch = run(args.batch)
    t_one, a_one = run(1)
    same = a_batch == a_one
    print(f"{'mode':<22}{'seconds':>10}{'examples/s':>14}")
    print(f"{'batch ' + str(args.batch):<22}{t_batch:>10.2f}{n / t_batch:>14.2f}")
    print(f"{'one at a time':<22}{t_one:>10.2f}{n / t_one:>14.2f}")
    print(f"ratio (batched / one at a time): {t_one / t_batch:.2f}x  (target >= 4x)   identical answers: {same}")
    print(f"load avg after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}  (shared, noisy machine)")


if __name__ == "__main__":
    main()
