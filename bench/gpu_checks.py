"""The checks of bench/gpu_check.py that exercise the recipe's code: training, PLL scoring, embedding + diversity
store, evaluation (the runner, the models and the report are in gpu_check.py; docs/gpu.md says what each figure
means).

Each ``check_*`` / :func:`train_run` takes the run's context ``C`` (device, sizes ``C.s``, model builders
``C.lm()`` / ``C.mlm()`` / ``C.corpus()``, measured matmul rates ``C.rates``) and returns a dict of figures with
an optional ``status``/``error``; it raises :class:`NotRun` when it cannot run here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import time
from pathlib import Path

THRESHOLD = 2.0  # the paper's NLL < 2 filter


class NotRun(Exception):
    """A check that cannot run here (missing package, no CUDA): recorded as "not run" with the reason."""


def sync(C):
    if C.cuda:
        import torch

        torch.cuda.synchronize()


def train_run(C, name, **over):
    import torch

    model, corpus = C.lm(), C.corpus()  # before TRL's import: a failed build fails fast
    from cerbero_hf.stages.train.trainer import TrainConfig, event_callback, train

    losses, stamps = [], []

    def on_event(event, stats):
        if event == "log" and stats.get("loss") is not None:
            losses.append(float(stats["loss"]))
        elif event == "step":
            stamps.append(time.perf_counter())
    settings = dict(model=str(model), corpora=[f"generated={corpus}"], output_dir=str(C.work / name),
                    max_steps=C.s.steps, max_length=C.s.max_length, per_device_train_batch_size=C.s.batch,
                    gradient_accumulation_steps=1, learning_rate=C.s.lr, lr_scheduler_type="constant",
                    warmup_steps=0, logging_steps=1, save_steps=10 ** 6, eval_fraction=0.0, resume=False,
                    use_cpu=not C.cuda, attn_implementation="sdpa", packing=True, optim="adamw_torch", seed=0)
    cfg = TrainConfig(**{**settings, **over})
    if C.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    res = train(cfg, callbacks=[event_callback(on_event)])
    ok = len(losses) >= 2 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    steady = res.tokens * (len(stamps) - 1) / len(stamps) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    out = {"status": "ok" if ok else "failed", "losses": losses, "loss_decreasing": ok, "steps": res.steps,
           "tokens": res.tokens, "seconds": res.seconds, "tokens_per_s": res.tokens / res.seconds,
           "tokens_per_s_after_first_step": steady, "bf16": cfg.bf16, "attn": cfg.attn_implementation,
           "gradient_checkpointing": cfg.activation_checkpointing, "packing": cfg.packing, "lora": cfg.lora,
           "load_in_4bit": cfg.load_in_4bit, "optim": str(getattr(cfg.optim, "value", cfg.optim)),
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if C.cuda else None}
    if not ok:
        out["error"] = f"loss not finite and decreasing: {losses}"
    if not C.cuda:
        out["note"] = "CPU: float32, no gradient checkpointing (the train stage's CPU flags)"
    return out


def check_fsdp(C):
    """FSDP2 full shard through ``configs/accelerate/fsdp.yaml`` on every GPU of the machine, as a user launches it
    (``accelerate launch ... -m cerbero_hf train``). The CPU cannot run it: accelerate sets FSDP up only on GPUs,
    and the train stage refuses a launch whose FSDP was not set up (tests/stages/train/test_distributed.py)."""
    needs(C)
    import socket
    import subprocess
    import sys

    import torch

    model, corpus = C.lm(), C.corpus()
    gpus = torch.cuda.device_count()
    out = C.work / "train-fsdp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(root / "configs/accelerate/fsdp.yaml"),
           "--num_processes", str(gpus), "--main_process_port", str(port), "-m", "cerbero_hf", "train",
           f"generated={corpus}", str(out), "--model", str(model), "--max-steps", str(C.s.steps),
           "--max-length", str(C.s.max_length), "--per-device-train-batch-size", str(C.s.batch),
           "--gradient-accumulation-steps", "1", "--learning-rate", str(C.s.lr), "--lr-scheduler-type", "constant",
           "--warmup-steps", "0", "--logging-steps", "1", "--save-steps", str(10 ** 6), "--eval-fraction", "0",
           "--resume", "false", "--overwrite", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")] or proc.stderr.splitlines()
        return {"status": "failed", "error": (errors or ["no output"])[-1][:500], "gpus": gpus}
    report = json.loads((out / "cerbero_train.json").read_text(encoding="utf-8"))
    setup, result = report["data"]["distributed"], report["result"]
    ok = setup["distributed_type"] == "FSDP" and math.isfinite(result["train_loss"] or math.nan)
    res = {"status": "ok" if ok else "failed", "gpus": gpus, "distributed_type": setup["distributed_type"],
           "ranks": setup.get("ranks"), "steps": result["steps"], "train_loss": result["train_loss"],
           "tokens_per_s": result["tokens"] / result["seconds"] if result["seconds"] else None}
    if not ok:
        res["error"] = f"distributed type {setup['distributed_type']}, train loss {result['train_loss']}"
    return res


def needs(C, package=None, cuda=True):
    if cuda and not C.cuda:
        raise NotRun("needs CUDA")
    if package:
        try:
            importlib.import_module(package)
        except Exception as err:  # noqa: BLE001 - any import failure means it cannot run
            raise NotRun(f"{package} does not import: {str(err).splitlines()[0] if str(err) else type(err).__name__}")


def check_flash(C):
    needs(C, "flash_attn")
    return train_run(C, "train-flash", attn_implementation="flash_attention_2")


def check_qlora(C):
    needs(C, "bitsandbytes")
    return train_run(C, "train-qlora", lora=True, load_in_4bit=True, learning_rate=C.s.lora_lr)


def check_adam8bit(C):
    needs(C, "bitsandbytes")
    return train_run(C, "train-adam8bit", optim="adamw_bnb_8bit")


def labelled_texts(n: int) -> tuple[list[str], list[bool]]:
    """Half well-formed Italian (1-4 bundled sentences, label True = keep), half the same with every word's
    letters shuffled (label False = drop)."""
    import random

    from cerbero_hf.tiny_models import italian_sentences

    pool, rng = italian_sentences(300), random.Random(0)
    good = [" ".join(rng.sample(pool, rng.choice([1, 1, 2, 2, 3, 4]))) for _ in range((n + 1) // 2)]
    bad = [" ".join("".join(rng.sample(w, len(w))) for w in t.split()) for t in good[: n // 2]]
    return good + bad, [True] * len(good) + [False] * len(bad)


def pll_flops(scorer, texts) -> tuple[float, int]:
    """Nominal FLOPs of the scored copies (``cerbero_hf.stages.quality.flops``: per scored token, positions of its
    window x encoder FLOPs per position, plus the LM head at the masked position) and the tokens they score. The
    copies are the scorer's own (its window plan and variant)."""
    from cerbero_hf.stages.quality.flops import EncoderShape
    from cerbero_hf.stages.quality.flops import pll_flops as count

    lengths = [len(c[1]) for c in scorer._copies(texts)]
    return float(count(lengths, EncoderShape.of(scorer._model.config))), len(lengths)


def check_pll(C):
    import statistics

    import torch

    from cerbero_hf.stages.quality.pll import PLLScorer

    texts, labels = labelled_texts(C.s.pll_texts)
    kw = dict(device=C.device, batch_tokens=C.s.pll_batch_tokens)
    fp32 = PLLScorer(C.mlm(), dtype="float32", **kw)
    bf16w = PLLScorer(C.mlm(), dtype="bfloat16", **kw)
    runs = [("float32", fp32, None), ("bf16 autocast", fp32, torch.bfloat16)]
    runs += [("bf16 weights", bf16w, None), ("fp16 autocast", fp32, torch.float16)] if C.cuda else []
    out, ref = {"texts": len(texts), "batch_tokens": fp32.batch_tokens, "runs": {}}, None
    for name, scorer, autocast in runs:
        with torch.autocast(C.device_type, dtype=autocast) if autocast else contextlib.nullcontext():
            scorer.score(texts[:8])  # load, warm up
            sync(C)
            t0 = time.perf_counter()
            scores = scorer.score(texts)
            sync(C)
            secs = time.perf_counter() - t0
        nll = [s.nll for s in scores]
        if ref is None:
            (flops, accounted), ref, median = pll_flops(fp32, texts), nll, statistics.median(nll)
            out.update(scored_tokens=sum(s.n_tokens for s in scores), flops_total=flops, flop_tokens=accounted,
                       gflop_per_scored_token=flops / sum(s.n_tokens for s in scores) / 1e9, median_threshold=median,
                       label_accuracy_fp32=sum((x < THRESHOLD) == y for x, y in zip(nll, labels)) / len(nll),
                       batch_tokens_used=getattr(fp32, "_batch_tokens", None))
        rate_name = "float32" if name == "float32" or not C.cuda else "bfloat16"
        matmul = C.rates.get(rate_name)
        out["runs"][name] = r = {
            "seconds": secs, "tokens_per_s": out["scored_tokens"] / secs, "tflops": flops / secs / 1e12,
            "share_of_matmul": flops / secs / 1e12 / matmul if matmul else None, "matmul_dtype": rate_name,
            "max_abs_diff": max(abs(a - b) if math.isfinite(a - b) else math.inf for a, b in zip(nll, ref)),
            "decisions_disagree_at_2": sum((a < THRESHOLD) != (b < THRESHOLD) for a, b in zip(nll, ref)),
            "decisions_disagree_at_median": sum((a < median) != (b < median) for a, b in zip(nll, ref))}
        r["decisions_agree"] = r["decisions_disagree_at_2"] == 0 and r["decisions_disagree_at_median"] == 0
    out["decisions_agree"] = all(r["decisions_agree"] for r in out["runs"].values())
    out["batch_sweep_bf16_tokens_per_s"] = {}
    for batch_tokens in C.s.pll_batch_sweep:  # bf16 weights at other batch sizes: is the GPU batch well chosen?
        scorer = PLLScorer(C.mlm(), dtype="bfloat16", device=C.device, batch_tokens=batch_tokens)
        scorer.score(texts[:8])
        sync(C)
        t0 = time.perf_counter()
        scorer.score(texts)
        sync(C)
        out["batch_sweep_bf16_tokens_per_s"][str(batch_tokens)] = out["scored_tokens"] / (time.perf_counter() - t0)
    bad = [name for name, r in out["runs"].items() if not math.isfinite(r["max_abs_diff"])]
    if bad:
        out.update(status="failed", error=f"non-finite NLLs in {', '.join(bad)}")
    out["note"] = ("random weights: NLLs sit near ln(vocabulary), all above 2, so the median threshold is the "
                   "informative decision check; label accuracy is meaningless here")
    if not C.cuda:
        out["note"] += "; CPU: bf16 autocast on the CPU only (bf16 weights and fp16 autocast run on CUDA)"
    return out


def planted_sequence(base, n: int, seed: int = 0):
    """``n`` candidates: a third random, the rest at set cosines (0.85 ... 0.95, both sides of 0.9) to a stored
    vector or to an earlier candidate."""
    import numpy as np

    from cerbero_hf.stages.generate.store import normalise

    rng, out = np.random.default_rng(seed), []
    for k in range(n):
        if k % 3 == 0 or not out:
            out.append(normalise(rng.standard_normal(base.shape[1]))[0])
            continue
        u = base[rng.integers(len(base))] if k % 3 == 1 else out[rng.integers(len(out))]
        w = normalise(rng.standard_normal(base.shape[1]))[0]
        w = normalise(w - (w @ u) * u)[0]
        c = [0.85, 0.895, 0.8999, 0.9001, 0.905, 0.95][rng.integers(6)]
        out.append(normalise(c * u + math.sqrt(1 - c * c) * w)[0])
    return np.stack(out)


def best_of(q, stored, chunk: int = 131072):
    """Exact search on the device: each query's largest inner product with the stored rows (chunked products)."""
    import torch

    return torch.stack([(q @ stored[i:i + chunk].T).amax(1) for i in range(0, len(stored), chunk)], 1).amax(1)


def check_embed_store(C):
    import numpy as np
    import torch

    from cerbero_hf.stages.generate.embedder import Embedder
    from cerbero_hf.stages.generate.store import FLOAT_TOLERANCE, EmbeddingStore, normalise
    from cerbero_hf.tiny_models import build_tiny_embedder

    folder = build_tiny_embedder(C.work / "embedder", C.mlm())
    texts = (labelled_texts(C.s.embed_texts)[0])
    emb = Embedder(str(folder), device=C.device, batch_size=C.s.embed_batch)
    emb.encode(texts[:16])
    sync(C)
    t0 = time.perf_counter()
    vecs = emb.encode(texts)
    sync(C)
    out = {"embed_texts": len(texts), "embed_texts_per_s": len(texts) / (time.perf_counter() - t0), "dim": vecs.shape[1]}
    if C.cuda:
        cpu_vecs = Embedder(str(folder), device="cpu").encode(texts[:32])
        out["embed_cpu_max_abs_diff"] = float(np.abs(cpu_vecs - vecs[:32]).max())
    dim, rng = vecs.shape[1], np.random.default_rng(1)
    base = normalise(rng.standard_normal((C.s.verdict_store, dim)))
    seq = np.concatenate([vecs[:200], planted_sequence(base, C.s.verdict_seq)])
    cpu = EmbeddingStore(dim, capacity=len(base) + len(seq))
    cpu.add(base)
    cpu_ok, cpu_sims = cpu.accept_batch(seq)
    store = torch.empty((len(base) + len(seq), dim), device=C.device)  # the device path: try_add on each in turn
    store[: len(base)] = torch.from_numpy(base)
    n, dev_ok, dev_sims, cut = len(base), [], [], cpu.threshold + FLOAT_TOLERANCE
    t0 = time.perf_counter()
    for v in torch.from_numpy(seq).to(C.device):
        m = float((store[:n] @ v).max())
        dev_ok.append(m <= cut)
        dev_sims.append(m)
        if m <= cut:
            store[n], n = v, n + 1
    out.update(verdict_sequence=len(seq), verdict_store=len(base), rejected=int((~cpu_ok).sum()),
               verdicts_equal=bool((np.array(dev_ok) == cpu_ok).all()),
               verdicts_differ=int((np.array(dev_ok) != cpu_ok).sum()),
               max_sim_abs_diff=float(np.abs(np.array(dev_sims) - cpu_sims).max()),
               one_at_a_time_per_s=len(seq) / (time.perf_counter() - t0), rates={})
    del store
    gen = torch.Generator(device=C.device).manual_seed(0)
    for size in C.s.store_sizes:
        stored = torch.nn.functional.normalize(torch.randn(size, dim, device=C.device, generator=gen), dim=1)
        q = torch.nn.functional.normalize(torch.randn(C.s.query_batch, dim, device=C.device, generator=gen), dim=1)
        best_of(q, stored)
        sync(C)
        reps, t0 = 5, time.perf_counter()
        for _ in range(reps):
            best_of(q, stored)
        sync(C)
        out["rates"][str(size)] = {"batch_vectors_per_s": reps * len(q) / (time.perf_counter() - t0)}
        if size == C.s.store_sizes[0]:
            cpu = EmbeddingStore(dim, capacity=size)
            cpu.add(stored.cpu().numpy())
            t0 = time.perf_counter()
            cpu.max_similarity(q.cpu().numpy())
            out["rates"][str(size)]["cpu_store_batch_vectors_per_s"] = len(q) / (time.perf_counter() - t0)
        del stored
    if not out["verdicts_equal"]:
        out.update(status="failed", error=f"{out['verdicts_differ']} verdicts differ from the CPU EmbeddingStore")
    return out


def check_evaluate(C):
    from cerbero_hf.stages.evaluate.stage import EvaluateConfig, evaluate_model

    cfg = EvaluateConfig(data_dir=str(C.root / "cerbero_hf" / "data" / "eval"), limit=C.s.eval_limit, device=C.device,
                         batch_size=C.s.eval_batch, max_new_tokens=C.s.eval_new_tokens, update_card=False)
    started = []
    t0 = time.perf_counter()
    res = evaluate_model(cfg, str(C.lm()), C.work / "eval" / "results.json",
                         on_task=lambda name, n: started.append(time.perf_counter()))
    end = time.perf_counter()
    doc = json.loads(Path(res.results).read_text(encoding="utf-8"))
    failed = sum(b["failed"] for b in doc["tasks"].values())
    out = {"examples": res.examples, "seconds": end - t0, "generation_seconds": end - started[0],
           "examples_per_s": res.examples / (end - started[0]), "failed": failed, "batch_size": cfg.batch_size,
           "dtype": doc["generator"].get("dtype"), "tasks": {t: b["n"] for t, b in doc["tasks"].items()}}
    if failed or not res.examples:
        out.update(status="failed", error=f"{failed} failed examples of {res.examples}")
    return out
