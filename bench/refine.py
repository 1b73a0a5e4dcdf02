"""Benchmark: the whole Fauno refinement (paper §3.1) on a synthetic 160,000-conversation corpus.

    .venv/bin/python bench/refine.py [--n 160000] [--num-proc 2] [--sample 20000]

1. Builds a Fauno-shaped corpus with the paper's defect rates (dataset_scripts/fauno_sample/build.py,
   ``bench_counts``) into bench/_work/ (reused when present), and checks the refinement finds exactly the
   injected defects.
2. End to end (the target: <= 3 minutes on our 2-core machine): load the jsonl, every rule including
   the language check, dedup, write the Hub-layout folder (the stage's streamed path, ``Refiner.refine_to``);
   conversations/s. Peak memory against the corpus size: bench/refine_memory.py.
3. Per rule: conversations/s of each rule on the first ``--sample`` conversations, in one process.
4. Baseline: Lingua on every sentence (the straightforward design) vs our function-word first pass that
   sends only uncertain sentences to Lingua, on the same messages; prints the ratio.

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dataset_scripts" / "fauno_sample"))


def corpus(n: int, work: Path) -> tuple[Path, dict]:
    import build

    path, exp_path = work / f"fauno_{n}.jsonl", work / f"fauno_{n}_expected.json"
    if not path.exists() or not exp_path.exists():
        t = time.perf_counter()
        rows, expected = build.build(build.bench_counts(n), seed=1)
        with path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        exp_path.write_text(json.dumps(expected, indent=2), encoding="utf-8")
        print(f"built {n} conversations in {time.perf_counter() - t:.1f} s -> {path}")
    return path, json.loads(exp_path.read_text(encoding="utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160_000, help="conversations in the corpus")
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--sample", type=int, default=20_000, help="conversations for the per-rule timings")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(args.work / "hf_home"))
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language
    from cerbero_hf.stages.refine.langid import LanguageChecker, lingua_detect, prose_lines, split_sentences
    from cerbero_hf.stages.refine.reader import Part
    from cerbero_hf.stages.refine.refiner import Refiner

    path, expected = corpus(args.n, args.work)
    print(f"machine: {os.cpu_count()} CPUs, load average before the run {os.getloadavg()[0]:.2f}")

    # 2. end to end
    t0 = time.perf_counter()
    ds = load_table(path)
    t_load = time.perf_counter() - t0
    refiner = Refiner("it", num_proc=args.num_proc, batch_size=1000, source="bench")
    streamed = {}  # the rules end when the final write starts
    out = args.work / f"refined_{args.n}"
    shutil.rmtree(out, ignore_errors=True)
    report = refiner.refine_to([Part(ds, "bench", str(path))], out,
                               on_event=lambda *_: streamed.setdefault("t", time.perf_counter()))
    t_run = streamed["t"] - t0 - t_load
    total = time.perf_counter() - t0
    removed = {k: v for k, v in expected["removed"].items() if v}
    ok = report.removed == removed and report.changed == expected["changed"]
    print(f"\nend to end, {args.n} conversations, num_proc={args.num_proc}: {total:.1f} s "
          f"(load {t_load:.1f} s, rules {t_run:.1f} s, write {total - t_load - t_run:.1f} s) = "
          f"{args.n / total:,.0f} conversations/s; target 180 s -> ratio {total / 180:.2f} of the budget")
    print(f"report matches the injected defects: {ok}  removed={report.removed} changed={report.changed}")
    print(f"load average after the run {os.getloadavg()[0]:.2f}")

    # 3. per rule, one process
    sample = ds.select(range(min(args.sample, len(ds))))
    one = Refiner("it", batch_size=1000, source="bench")
    one.run(sample)
    n = len(sample)
    print(f"\nper rule, one process, {n} conversations:")
    print(f"{'rule':28s} {'seconds':>8s} {'conversations/s':>16s}")
    for rule, sec in one.timings.items():
        print(f"{rule:28s} {sec:8.2f} {n / sec if sec else float('inf'):16,.0f}")
    print(f"{'all rules':28s} {sum(one.timings.values()):8.2f} {n / sum(one.timings.values()):16,.0f}")

    # 4. baseline: Lingua on every sentence vs first pass + Lingua on the uncertain ones
    from cerbero_hf.transcript import parse_fauno

    pack = load_language("it")
    texts = [m["content"] for r in sample.select(range(min(5000, n))) if r["input"]
             for m in parse_fauno(r["input"], pack)[0] if m["role"] != "system" and m["content"]]
    t = time.perf_counter()
    verdicts = LanguageChecker(pack).check(texts)
    t_ours = time.perf_counter() - t
    sentences = [s for x in texts for s in split_sentences(prose_lines(x))]
    t = time.perf_counter()
    lingua_detect(sentences, pack)
    t_base = time.perf_counter() - t
    asked = sum(v.lingua_sentences for v in verdicts)
    print(f"\nlanguage check on {len(texts)} messages ({len(sentences)} sentences):")
    print(f"  baseline, Lingua on every sentence: {t_base:.2f} s ({len(sentences) / t_base:,.0f} sentences/s)")
    print(f"  first pass + Lingua on {asked} uncertain sentences: {t_ours:.2f} s "
          f"({len(sentences) / t_ours:,.0f} sentences/s); speed-up x{t_base / t_ours:.1f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
