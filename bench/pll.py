"""Benchmark: the fast PLLScorer against a naive PLL and against minicons, same weights, same texts.

Run: ``.venv/bin/python bench/pll.py [--configs tiny base] [--texts 300] [--base-texts 40] [--threads N]
[--repeats 3] [--skip-naive] [--cpu-time]`` (``--cpu-time``, with ``--threads 1``: CPU seconds instead of wall
seconds, steadier on a shared machine; minicons, a subprocess, still reports wall seconds).

- naive: the deliberately simple reference (one masked copy per forward pass, full model, full-vocabulary
  log-softmax at every position), as in tests/test_quality.py;
- minicons 0.3.39 ``scorer.MaskedLMScorer`` (``sequence_score``, batches of 8 texts), run as a subprocess from
  its own virtualenv under bench/_work/ (minicons fails under transformers 5), on the same saved weights, with
  the tokenizer re-saved from ``tokenizer.json`` as a plain ``PreTrainedTokenizerFast``;
- fast: ``cerbero_hf.stages.quality.pll.PLLScorer``.

Prints tokens/s (scored tokens / wall seconds of scoring, model loading excluded), the ratios and the largest
score difference. Models: the tiny BERT (window 64) and a BERT-base-sized config (hidden 768, 12 layers,
32k vocabulary, random weights).

Then the fast scorer's utilisation: its FLOPs (``cerbero_hf.stages.quality.flops``; per scored token, a masked
copy of ``L`` positions: ``L * layers * (2 * (4 h^2 + 2 h f) + 2 * 2 * L * h)`` for the encoder's projections
and attention, plus ``2 h^2 + 2 h V`` for the LM head at the masked position; embeddings, LayerNorm, GELU and
softmax left out, under 1 %) over its best time of ``--repeats`` runs, as a share of the float32 GEMM rate
measured in the same run at the same thread count (best of its runs before and after each scoring run:
``torch.matmul`` of ``[batch_tokens x h] @ [h x f]``, the encoder's largest product). The *nominal* FLOPs are
the model's own forward pass over every copy; *executed* leaves out what the scorer skips (the last layer's
query, attention, output and feed-forward work away from the masked position, 7 % for BERT-base).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work"
VENV = WORK / "minicons-venv"
sys.path.insert(0, str(ROOT))

MINICONS = r'''
import json, sys, time
import torch
from minicons import scorer
from transformers import PreTrainedTokenizerFast
model_dir, tok_dir, texts_file, out_file = sys.argv[1:5]
specials = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
PreTrainedTokenizerFast(tokenizer_file=f"{model_dir}/tokenizer.json", **specials).save_pretrained(tok_dir)
tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
s = scorer.MaskedLMScorer(model_dir, "cpu", tokenizer=tok)
texts = json.load(open(texts_file))
t0 = time.perf_counter()
out = []
for i in range(0, len(texts), 8):
    out += s.sequence_score(texts[i:i + 8], reduction=lambda x: -x.mean(0).item())
secs = time.perf_counter() - t0
json.dump({"nll": out, "seconds": secs, "threads": torch.get_num_threads()}, open(out_file, "w"))
'''


def texts_for_bench(n: int, seed: int = 0) -> list[str]:
    """Italian chat-like messages: 1 to 4 sentences each (about 10 to 60 tokens)."""
    from cerbero_hf.tiny_models import italian_sentences

    pool, rng = italian_sentences(300, seed=seed), random.Random(seed)
    return [" ".join(rng.sample(pool, rng.choice([1, 1, 2, 2, 3, 4]))) for _ in range(n)]


def build(name: str) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from cerbero_hf.tiny_models import build_tiny_mlm

    tiny = WORK / "pll-tiny"
    if not (tiny / "model.safetensors").exists():
        build_tiny_mlm(tiny)
    if name == "tiny":
        return tiny
    base = WORK / "pll-base"
    if not (base / "model.safetensors").exists():
        import torch

        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(tiny)
        cfg = BertConfig(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
        BertForMaskedLM(cfg).eval().save_pretrained(base)
        tok.model_max_length = 512
        tok.save_pretrained(base)
    return base


def naive(model_dir: Path, texts: list[str]) -> list[float]:
    """One masked copy per forward pass, full model, full-vocabulary log-softmax (texts fit the window)."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    out = []
    for text in texts:
        ids = tok(text)["input_ids"]
        nll = []
        for i in range(1, len(ids) - 1):
            masked = list(ids)
            masked[i] = tok.mask_token_id
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([masked])).logits[0].log_softmax(-1)
            nll.append(-logp[i, ids[i]].item())
        out.append(sum(nll) / len(nll))
    return out


def run_minicons(model_dir: Path, texts: list[str], name: str, threads: int) -> dict | None:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"minicons venv missing: python3 -m venv {VENV} && {VENV}/bin/pip install torch==2.13.0 "
              "'transformers<5' minicons==0.3.39")
        return None
    (WORK / "minicons_run.py").write_text(MINICONS)
    (WORK / f"texts-{name}.json").write_text(json.dumps(texts, ensure_ascii=False))
    out = WORK / f"minicons-{name}.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    res = subprocess.run([str(py), str(WORK / "minicons_run.py"), str(model_dir), str(WORK / f"minicons-tok-{name}"),
                          str(WORK / f"texts-{name}.json"), str(out)], capture_output=True, text=True, env=env)
    if res.returncode:
        print(f"minicons failed: {res.stderr[-1500:]}")
        return None
    return json.loads(out.read_text())


CLOCK = time.perf_counter  # --cpu-time: time.process_time


def timed(fn, *args):
    t0 = CLOCK()
    out = fn(*args)
    return out, CLOCK() - t0


def gemm_rate(rows: int, hidden: int, inner: int, seconds: float = 0.5) -> float:
    """Best float32 ``torch.matmul`` rate (GFLOP/s) of ``[rows x hidden] @ [hidden x inner]`` over ``seconds``."""
    import torch

    a, b = torch.randn(rows, hidden), torch.randn(hidden, inner)
    torch.matmul(a, b)
    best, stop = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t0 = CLOCK()
        torch.matmul(a, b)
        best = min(best, CLOCK() - t0)
    return 2 * rows * hidden * inner / best / 1e9


def utilisation(scorer, texts: list[str], repeats: int) -> tuple[list, float]:
    """Score ``texts`` ``repeats`` times between GEMM measurements; print the FLOP accounting and the shares."""
    import torch

    from cerbero_hf.stages.quality.flops import EncoderShape, pll_flops

    shape = EncoderShape.of(scorer._model.config)
    lengths = [len(c[1]) for c in scorer._copies(texts)]
    nominal, executed = pll_flops(lengths, shape), pll_flops(lengths, shape, executed=True)
    gemm, secs = [], []
    for _ in range(repeats):
        gemm.append(gemm_rate(scorer._batch_tokens, shape.hidden, shape.intermediate))
        fast, t = timed(scorer.score, texts)
        secs.append(t)
        gemm.append(gemm_rate(scorer._batch_tokens, shape.hidden, shape.intermediate))
    best, peak = min(secs), max(gemm)
    print(f"\nFLOPs ({shape}): {len(lengths)} scored tokens, mean {sum(lengths) / len(lengths):.1f} positions per copy, "
          f"{nominal / len(lengths) / 1e9:.3f} GFLOP per scored token nominal ({executed / len(lengths) / 1e9:.3f} "
          "executed)")
    print(f"fast scorer: {len(lengths) / best:.1f} tokens/s (best of {repeats}: "
          f"{', '.join(f'{len(lengths) / t:.1f}' for t in secs)}), {nominal / best / 1e9:.1f} GFLOP/s nominal "
          f"({executed / best / 1e9:.1f} executed)")
    print(f"GEMM float32 [{scorer._batch_tokens} x {shape.hidden}] @ [{shape.hidden} x {shape.intermediate}], "
          f"{torch.get_num_threads()} threads: {peak:.1f} GFLOP/s (best; runs "
          f"{', '.join(f'{g:.0f}' for g in gemm)})")
    print(f"share of the GEMM rate: {100 * nominal / best / 1e9 / peak:.1f} % nominal, "
          f"{100 * executed / best / 1e9 / peak:.1f} % executed; load average {os.getloadavg()[0]:.1f}")
    return fast, best


def bench(name: str, texts: list[str], threads: int, skip_naive: bool, repeats: int = 1) -> None:
    from cerbero_hf.stages.quality.pll import PLLScorer

    model_dir = build(name)
    scorer = PLLScorer(model_dir, device="cpu")
    scorer.score(texts[:2])  # load + warm up
    fast, t_fast = utilisation(scorer, texts, repeats)
    tokens = sum(s.n_tokens for s in fast)
    rows = [("fast (PLLScorer)", t_fast, [s.nll for s in fast])]
    if not skip_naive:
        ref, t_ref = timed(naive, model_dir, texts)
        rows.append(("naive reference", t_ref, ref))
    mc = run_minicons(model_dir, texts, name, threads)
    if mc:
        rows.append((f"minicons 0.3.39 ({mc['threads']} thr)", mc["seconds"], mc["nll"]))
    print(f"\n== {name}: {len(texts)} texts, {tokens} scored tokens, torch threads {threads} ==")
    print(f"{'method':30s} {'seconds':>9s} {'tokens/s':>10s} {'fast is x faster':>17s} {'max |Δ nll|':>12s}")
    for label, secs, nll in rows:
        diff = max(abs(a.nll - b) for a, b in zip(fast, nll))
        print(f"{label:30s} {secs:9.2f} {tokens / secs:10.1f} {secs / t_fast:17.2f} {diff:12.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    ap.add_argument("--texts", type=int, default=300, help="texts for the tiny model")
    ap.add_argument("--base-texts", type=int, default=40, help="texts for the BERT-base config (naive is slow)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the fast scorer (the best one counts)")
    ap.add_argument("--cpu-time", action="store_true", help="time by the process's CPU seconds, not wall seconds "
                    "(needs --threads 1): steadier on a busy machine, where other jobs take turns on the cores")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1 (idle threads spinning would count as work)")
        global CLOCK
        CLOCK = time.process_time
    threads = torch.get_num_threads()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {os.cpu_count()} cores (shared machine: other jobs run; figures are noisy), load average "
          f"{os.getloadavg()[0]:.1f}")
    for name in args.configs:
        n = args.texts if name == "tiny" else args.base_texts
        bench(name, texts_for_bench(n), threads, args.skip_naive, args.repeats)


if __name__ == "__main__":
    main()
