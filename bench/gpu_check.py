"""GPU check: the recipe's GPU paths (training, PLL scoring, embedding + diversity store, evaluation) in one run.

Builds its models offline (random weights; tokenizers trained on the bundled Italian text by
``cerbero_hf.tiny_models``): on CUDA a Mistral-shaped causal LM of about 280M parameters and a BERT-base-shaped
masked LM with a 32k vocabulary; with ``--tiny`` the tiny test models. Then runs these checks, each on its own
(a failing check records its error line and the others still run):

- ``matmul``: the device's measured matrix-multiply rate (bf16 and float32 on CUDA, float32 on CPU);
- ``train_full`` / ``train_lora``: a few SFT steps through the train stage (``cerbero_hf.stages.train``): bf16,
  SDPA, gradient checkpointing, packing; full fine-tuning and LoRA. Loss finite and decreasing, tokens/s, peak
  memory. ``train_flash`` (flash_attn importable), ``train_qlora`` and ``train_adam8bit`` (bitsandbytes
  importable) run only when their package imports, else they are "not run" with the reason;
- ``pll``: ``PLLScorer`` in float32 against bf16 / fp16 autocast and bf16 weights: per-text NLL agreement (max
  |diff|, NLL < 2 decisions and decisions at the float32 median on a labelled set), tokens/s, and the useful
  FLOPs (scored tokens x (positions x encoder FLOPs per position + head at the masked position)) as a share of
  the same run's matmul rate;
- ``embed_store``: ``Embedder`` texts/s on the device; exact search on the device (torch) at two store sizes,
  its verdicts on a fixed sequence against the CPU ``EmbeddingStore``;
- ``evaluate``: one evaluation pass (batched greedy generation) through ``cerbero_hf.stages.evaluate``.

Writes ``gpu_check.json`` under ``$OUT`` when set (else ``--out``) and a table on stdout; exits 1 when a check
that ran failed. On CPU, ``--device cpu --tiny`` runs the same code on tiny models in seconds (bf16 training and
fp16 are skipped there and reported as such). See docs/gpu.md.

    .venv/bin/python bench/gpu_check.py --device cpu --tiny
    python3 bench/gpu_check.py --device cuda        # on the GPU machine (bench/gpu_wheels.sh says how)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from gpu_checks import (
    NotRun,
    check_adam8bit,
    check_embed_store,
    check_evaluate,
    check_flash,
    check_fsdp,
    check_pll,
    check_qlora,
    sync,
    train_run,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = {  # per mode: model shapes and workload sizes
    "gpu": dict(
        lm=dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4,
                intermediate_size=3584, vocab_size=32000, tie_word_embeddings=False), lm_positions=4096,
        mlm=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=32000),
        mlm_positions=512, tok_vocab=32000, rows=400, steps=8, max_length=2048, batch=8, lr=3e-4, lora_lr=2e-3,
        pll_texts=1000, pll_batch_tokens=65536, pll_batch_sweep=(16384, 262144), embed_texts=4096, embed_batch=256,
        store_sizes=(100_000, 1_000_000), verdict_store=100_000, verdict_seq=2000, query_batch=1024,
        eval_limit=None, eval_new_tokens=None, eval_batch=64, matmul=8192),
    "tiny": dict(
        lm=None, lm_positions=1024, mlm=None, mlm_positions=64, tok_vocab=800, rows=24, steps=4, max_length=128,
        batch=2, lr=3e-3, lora_lr=1e-2, pll_texts=12, pll_batch_tokens=None, pll_batch_sweep=(), embed_texts=64,
        embed_batch=32, store_sizes=(2000, 10000), verdict_store=2000, verdict_seq=300, query_batch=256,
        eval_limit=1, eval_new_tokens=4, eval_batch=4, matmul=512),
}


def once(fn):
    """Build on first use, remember the result or the error (a failed build fails every check that needs it)."""
    memo = {}

    def get(*args):
        if "v" not in memo:
            try:
                memo["v"] = fn(*args)
            except Exception as err:  # noqa: BLE001 - each check reports it
                memo["v"] = err
        if isinstance(memo["v"], Exception):
            raise memo["v"]
        return memo["v"]
    return get


def bundled_text() -> list[str]:
    """The template sentences of tiny_models plus the bundled OASST Italian sample's messages."""
    from cerbero_hf.tiny_models import italian_sentences

    rows = (ROOT / "cerbero_hf" / "data" / "oasst_sample_it.jsonl").read_text(encoding="utf-8").splitlines()
    return italian_sentences(300) + [json.loads(r)["text"] for r in rows if r.strip()]


@contextlib.contextmanager
def quiet_stdout():
    """Silence file descriptor 1 (the tokenizers trainers' progress lines are written there by Rust code)."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def reshape(folder: Path, auto: str, shape: dict | None, positions: int) -> tuple[Path, int | None]:
    """Replace the tiny model in ``folder`` by a random one of ``shape`` (the tokenizer stays); also returns its
    parameter count."""
    if shape:
        import torch
        import transformers

        cfg = transformers.AutoConfig.from_pretrained(folder)
        for k, v in {**shape, "max_position_embeddings": positions}.items():
            setattr(cfg, k, v)
        torch.manual_seed(0)
        model = getattr(transformers, auto).from_config(cfg)
        model.save_pretrained(folder)
        return folder, sum(p.numel() for p in model.parameters())
    return folder, None


def build_lm(C):
    from cerbero_hf.tiny_models import build_tiny_chat_lm

    with quiet_stdout():
        out = build_tiny_chat_lm(C.work / "lm", vocab=C.s.tok_vocab, max_positions=C.s.lm_positions, sentences=C.text)
    out, C.params["causal_lm"] = reshape(out, "AutoModelForCausalLM", C.s.lm, C.s.lm_positions)
    return out


def build_mlm(C):
    from cerbero_hf.tiny_models import build_tiny_mlm

    with quiet_stdout():
        out = build_tiny_mlm(C.work / "mlm", vocab=C.s.tok_vocab, max_positions=C.s.mlm_positions, train_steps=0,
                             sentences=C.text)
    out, C.params["masked_lm"] = reshape(out, "AutoModelForMaskedLM", C.s.mlm, C.s.mlm_positions)
    return out


def build_corpus(C):
    """Chat rows in our schema (4 exchanges of bundled sentences each) as a Hub-layout folder."""
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    s = C.text[:300]
    rows = [make_row(f"c-{i}", [m for k in range(4) for m in (
        {"role": "user", "content": " ".join(s[(i + k + j) % len(s)] for j in range(3))},
        {"role": "assistant", "content": " ".join(s[(i * 7 + k + j) % len(s)] for j in range(5))})],
        source="generated") for i in range(C.s.rows)]
    return save_hub_folder(C.work / "corpus", {"default": Dataset.from_list(rows, features=features())})


def check_matmul(C):
    import torch

    n, out = C.s.matmul, {}
    for name, dtype in ([("bfloat16", torch.bfloat16)] if C.cuda else []) + [("float32", torch.float32)]:
        a, b = (torch.randn(n, n, device=C.device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        reps = 10 if C.cuda else 3
        sync(C)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(C)
        out[f"{name}_tflops"] = C.rates[name] = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12
    return {"n": n, **out}


CHECKS = {"matmul": check_matmul, "train_full": lambda C: train_run(C, "train-full"),
          "train_lora": lambda C: train_run(C, "train-lora", lora=True, learning_rate=C.s.lora_lr),
          "train_flash": check_flash, "train_qlora": check_qlora, "train_adam8bit": check_adam8bit,
          "train_fsdp": check_fsdp, "pll": check_pll, "embed_store": check_embed_store, "evaluate": check_evaluate}


def summary(name: str, r: dict) -> str:
    """One table cell of figures per check."""
    if r["status"] == "not run":
        return r["reason"]
    if r["status"] == "failed":
        return r["error"]
    f = lambda x, spec=",.0f": "-" if x is None else format(x, spec)  # noqa: E731
    if name == "matmul":
        return ", ".join(f"{k[:-7]} {v:.3g} TFLOP/s" for k, v in r.items() if k.endswith("_tflops"))
    if name.startswith("train"):
        return (f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}, {f(r['tokens_per_s'])} tok/s "
                f"({f(r['tokens_per_s_after_first_step'])} after step 1), peak {f(r['peak_memory_gib'], '.1f')} GiB, "
                f"bf16 {r['bf16']}, ckpt {r['gradient_checkpointing']}")
    if name == "pll":
        return "; ".join(f"{k}: {f(v['tokens_per_s'])} tok/s, {f(v['share_of_matmul'], '.0%')} of {v['matmul_dtype']} "
                         f"matmul, max|dNLL| {v['max_abs_diff']:.1e}, agree {v['decisions_agree']}"
                         for k, v in r["runs"].items())
    if name == "embed_store":
        rates = ", ".join(f"{int(k):,} stored: {f(v['batch_vectors_per_s'])} vec/s" for k, v in r["rates"].items())
        return (f"embed {f(r['embed_texts_per_s'])} texts/s; verdicts equal {r['verdicts_equal']} "
                f"({r['rejected']}/{r['verdict_sequence']} rejected); {rates}")
    if name == "evaluate":
        return f"{r['examples']} examples, {f(r['examples_per_s'], ',.2f')} examples/s (batch {r['batch_size']})"
    return ""


def clean(x):
    """JSON-safe: non-finite floats become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    return [clean(v) for v in x] if isinstance(x, (list, tuple)) else x


def environment(C) -> dict:
    import importlib.metadata as md

    import torch

    env = {"python": sys.version.split()[0], "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count()}
    for dist in ("torch", "transformers", "tokenizers", "huggingface_hub", "trl", "peft", "accelerate", "datasets",
                 "sentence-transformers", "numpy", "bitsandbytes", "flash-attn"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            env[dist] = None
    if C.cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2 ** 30,
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    ap.add_argument("--tiny", action="store_true", help="tiny models and workloads (the CPU smoke run)")
    ap.add_argument("--only", nargs="+", choices=list(CHECKS), help="run only these checks")
    ap.add_argument("--out", default=None, help="JSON file when $OUT is unset (default bench/_work/gpu_check.json)")
    ap.add_argument("--work", default=None, help="folder for models and runs (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --tiny)")
    a = ap.parse_args(argv)
    for key, value in {"HF_HUB_OFFLINE": "1",  # every model is a local folder; nothing is fetched
                       "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}.items():
        os.environ.setdefault(key, value)
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_float32_matmul_precision("highest")  # float32 means float32 (no TF32) for the reference runs
    if a.threads or a.tiny:
        torch.set_num_threads(a.threads or 1)
    out_path = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else \
        Path(a.out or ROOT / "bench" / "_work" / "gpu_check.json")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        C = SimpleNamespace(device=device, cuda=device == "cuda", device_type="cuda" if device == "cuda" else "cpu",
                            s=SimpleNamespace(**SIZES["tiny" if a.tiny else "gpu"]), work=Path(a.work or tmp),
                            rates={}, params={}, root=ROOT, text=bundled_text())
        C.lm, C.mlm, C.corpus = once(lambda: build_lm(C)), once(lambda: build_mlm(C)), once(lambda: build_corpus(C))
        report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "device": device, "tiny": a.tiny, "env": environment(C), "checks": {}}
        print(f"gpu_check: device {device}{' (tiny)' if a.tiny else ''}, "
              f"{report['env'].get('gpu') or f'{os.cpu_count()} CPUs'}, torch {report['env']['torch']}", flush=True)
        for name in a.only or CHECKS:
            t0 = time.perf_counter()
            try:
                res = CHECKS[name](C)
                res.setdefault("status", "ok")
            except NotRun as why:
                res = {"status": "not run", "reason": str(why)}
            except Exception as err:  # noqa: BLE001 - recorded; the other checks still run
                line = (str(err).strip().splitlines() or [""])[0][:300]
                res = {"status": "failed", "error": f"{type(err).__name__}: {line}"}
            res["check_seconds"] = time.perf_counter() - t0
            report["checks"][name] = res
            print(f"  {name:15} {res['status']:8} {res['check_seconds']:7.1f} s  {summary(name, res)}", flush=True)
            if C.cuda:
                torch.cuda.empty_cache()
        report["model_parameters"] = C.params  # the GPU shapes' counts (None: the tiny models as built)
    report["seconds"] = time.perf_counter() - start
    report["failed"] = [k for k, r in report["checks"].items() if r["status"] == "failed"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(clean(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(f"{len(report['checks'])} checks in {report['seconds']:.1f} s; failed: {', '.join(report['failed']) or 'none'}; "
          f"wrote {out_path}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
