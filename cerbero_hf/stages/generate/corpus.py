"""``generate_corpus``: seeds -> SelfChat over ``Dataset.map`` -> a Hub-layout folder (paper §3.3).

The work behind the ``generate`` stage (:func:`cerbero_hf.stages.generate.stage.run_generate`, called by
``cerbero-hf generate`` and the recipe). Output folder:

* ``default`` config (``data/``): conversations with status ``complete`` or ``short``;
* ``rejected`` config (written when any conversation failed): conversations with status ``failed``, with
  ``rule="selfchat"`` and ``reason`` = the error, so ``len(default) + len(rejected)`` is the number of
  planned conversations;
* ``README.md``: a dataset card with the run's parameters and counts (never an API key).

Fail fast: when the first requests (3, or every planned conversation when fewer) all fail the same
non-transient way, the run stops with an input error instead of writing a corpus of failed rows (see
:class:`~cerbero_hf.stages.generate.selfchat.SelfChat`).

Resume: the request cache lives beside the output (``<out>.cache.sqlite`` by default); re-running
with the same arguments replays finished requests and writes every conversation exactly once.

The pieces, shared with the Ray run (:mod:`cerbero_hf.stages.generate.ray_generate`): :func:`plan_conversations`
(what to generate), :func:`open_cache` / :func:`make_selfchat` (the cache and the row transform), and
:func:`write_corpus` (rows in plan order -> the folder, the card and the summary).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.schema import get_meta


def plan_conversations(seeds, max_conversations: int | None = None, seed: int = 42):
    """Draw seeds without replacement, refilling the pool after each full pass, up to ``max_conversations``.

    Returns a Dataset of seed rows in draw order; pass ``k`` > 0 gets the id ``<seed id>#<k>`` and every
    row records ``meta.seed_id``. Default: one pass over the seeds.
    """
    n = len(seeds)
    total = n if max_conversations is None else max_conversations
    rng = random.Random(seed)
    order: list[int] = []  # the seed row of each conversation
    ids: list[int] = []  # its pass over the seeds (k)
    k = 0
    while len(order) < total:
        perm = list(range(n))
        rng.shuffle(perm)
        for i in perm[: total - len(order)]:
            order.append(i)
            ids.append(k)
        k += 1
    picked = seeds.select(order)

    def rename(row, idx):
        meta = get_meta(row)
        meta["seed_id"] = row["id"]
        suffix = f"#{ids[idx]}" if ids[idx] else ""
        return {"id": f"{row['id']}{suffix}", "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)}

    return picked.map(rename, with_indices=True, keep_in_memory=True, load_from_cache_file=False)


def default_cache_path(out_dir: str | Path) -> Path:
    """The replay cache beside the output folder: ``<out_dir>.cache.sqlite``."""
    out_dir = Path(out_dir)
    return out_dir.parent / (out_dir.name + ".cache.sqlite")


def seed_messages(seeds) -> list[str]:
    """Every distinct message text of the seed conversations (the diversity store starts with them).

    Examples:
        >>> from cerbero_hf import seed_messages
        >>> seed_messages({"messages": [[{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Ciao!"}],
        ...                             [{"role": "user", "content": "Ciao?"}]]})
        ['Ciao?', 'Ciao!']
    """
    return list(dict.fromkeys(m["content"] for row in seeds["messages"] for m in row))


def open_cache(cache_path, out_dir):
    """The replay cache at ``cache_path`` (``"auto"``: :func:`default_cache_path`), or None (no resume)."""
    from cerbero_hf.stages.generate.cache import RequestCache

    if cache_path == "auto":
        cache_path = default_cache_path(out_dir)
    return RequestCache(cache_path) if cache_path else None


def make_selfchat(seeds, backend, embedder, *, conversations: int, threshold: float = 0.9, seed: int = 42, cache=None,
                  language: str = "it", fail_fast: int = 3, **selfchat_kwargs):
    """The :class:`SelfChat` row transform of a run over ``seeds`` (``conversations`` planned rows)."""
    from cerbero_hf.stages.generate.selfchat import SelfChat

    return SelfChat(backend, embedder, language=language, seed_texts=seed_messages(seeds), threshold=threshold,
                    seed=seed, cache=cache, fail_fast=min(fail_fast, conversations), **selfchat_kwargs)


def generate_corpus(seeds, backend, embedder, out_dir, *, max_conversations: int | None = None, seed: int = 42,
                    threshold: float = 0.9, cache_path: str | Path | None = "auto", language: str = "it",
                    on_event=None, map_progress: bool = True, command: str | None = None, fail_fast: int = 3,
                    **selfchat_kwargs) -> dict:
    """Grow ``seeds`` with SelfChat and write the corpus folder ``out_dir``; returns the run summary.

    Args:
        seeds: a Dataset of seed conversations (corpus schema).
        backend: an ``EndpointBackend`` / ``LocalBackend``.
        embedder: an ``Embedder`` or model path.
        out_dir: the Hub-layout output folder.
        max_conversations: conversations to generate (default: one per seed).
        seed: global RNG seed. threshold: reject a message whose cosine to a stored one is above it.
        cache_path: the sqlite replay cache; ``"auto"`` = ``<out_dir>.cache.sqlite``; None disables resume.
        on_event: optional ``callback(event, stats)`` for progress displays: ``("planned",
            {"conversations": n})`` once, then SelfChat's events (``conversations`` per finished row) with
            its running counts, ``request_retries`` included.
        command: the command line to print in the card's "reproduce" section.
        fail_fast: stop when the first ``min(fail_fast, conversations)`` requests all fail the same
            non-transient way (0: never).
        **selfchat_kwargs: the other :class:`SelfChat` settings.
    """
    import asyncio

    from cerbero_hf.schema import features

    out_dir = Path(out_dir)
    cache = open_cache(cache_path, out_dir)
    plan = plan_conversations(seeds, max_conversations, seed)
    chat = make_selfchat(seeds, backend, embedder, conversations=len(plan), threshold=threshold, seed=seed,
                         cache=cache, language=language, fail_fast=fail_fast, **selfchat_kwargs)
    if on_event is not None:
        on_event("planned", {"conversations": len(plan)})
        chat.on_event = on_event
    chat.prepare()
    try:
        done = plan.map(chat, features=features(), keep_in_memory=True, load_from_cache_file=False,
                        desc="self-chat" if map_progress else None)
    finally:
        chat.close()  # after an interruption: no batch worker left pending on the map's loop
        try:
            asyncio.run(backend.aclose())
        except RuntimeError:
            pass
    result = write_corpus(out_dir, list(done), chat, chat.stats, seed_conversations=len(seeds), command=command)
    if cache is not None:
        cache.close()
    return result


def write_corpus(out_dir, rows: list[dict], chat, stats, *, seed_conversations: int, command: str | None = None,
                 store_size: int | None = None, final_pass=None) -> dict:
    """Write the folder ``out_dir`` from the finished ``rows`` (plan order); returns ``{"params", "summary"}``.

    Args:
        rows: SelfChat's output rows (corpus schema), one per planned conversation, in plan order.
        chat: the run's :class:`SelfChat` (its settings, pack, embedder and store go into the card).
        stats: SelfChat's counters (``chat.stats``, or the sum of every worker's).
        store_size: vectors in the diversity store at the end (default: ``len(chat.store)``).
        final_pass: optional ``final_pass(kept rows) -> (kept rows, rejected rows with rule and reason)``: the
            order-aware near-duplicate check; its rejected rows join the ``rejected`` config (in plan order) and
            their number is the summary's ``near_duplicates``.
    """
    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, rejected_features, update_meta
    from cerbero_hf.stages.generate.selfchat import REJECT_REASONS
    from cerbero_hf.stages.refine.rules import LanguageCheck

    kept, failed = [], []
    # annotate every message with the language check of the refine stage (flag only, nothing removed); a
    # message over max_chars (only in a rejected seed conversation) is not checked: it would cost minutes.
    foreign = LanguageCheck(chat.pack, action="flag").verdicts(
        [[m if len(m["content"]) <= chat.max_chars else {**m, "content": ""} for m in r["messages"]] for r in rows])
    for row, flags in zip(rows, foreign):
        row["meta"] = update_meta(row, foreign_language=flags)
        meta = get_meta(row)
        if meta["status"] == "failed":
            failed.append({**row, "rule": "selfchat", "reason": meta.get("error") or "failed"})
        else:
            kept.append(row)
    dropped = []
    if final_pass is not None:
        kept, dropped = final_pass(kept)
        rank = {row["id"]: i for i, row in enumerate(rows)}
        failed = sorted(failed + list(dropped), key=lambda r: rank[r["id"]])
    stats = dict(stats)
    summary = {  # flat counts: the fields of GenerateResult
        "conversations": len(rows), "complete": stats.get("complete", 0), "short": stats.get("short", 0),
        "failed": len(failed) - len(dropped), "accepted_messages": stats.get("accepted", 0),
        "rejected_messages": stats.get("rejected", 0),
        **{f"rejected_{reason}": stats.get(f"rejected_{reason}", 0) for reason in REJECT_REASONS},
        "seeds_too_long": stats.get("seeds_too_long", 0),
        "requests_sent": stats.get("requests_sent", 0), "requests_replayed": stats.get("requests_replayed", 0),
        "request_retries": stats.get("request_retries", 0), "failed_requests": stats.get("request_failures", 0),
        "tokens_in": stats.get("tokens_in", 0), "tokens_out": stats.get("tokens_out", 0),
        "store_size": len(chat.store) if store_size is None else store_size,
    }
    if final_pass is not None:
        summary["near_duplicates"] = len(dropped)
    params = {"generator": chat.backend.describe(), "embedder": chat.embedder.model_id, "threshold": chat.threshold,
              "index": chat.store.index,
              "seed": chat.seed, "language": chat.pack.code, "lengths": list(chat.lengths),
              "max_attempts": chat.max_attempts, "max_chars": chat.max_chars,
              "reject_truncated": chat.reject_truncated, **chat.sampling,
              "max_conversations": len(rows), "seed_conversations": seed_conversations}
    configs = {"default": _table(kept, features())}
    if failed:  # an empty config would not load (datasets: "corresponds to no data")
        configs["rejected"] = _table(failed, rejected_features())
    save_hub_folder(out_dir, configs,
                    card_data={"language": [chat.pack.code], "tags": ["cerbero-hf", "synthetic", "self-chat"],
                               "task_categories": ["text-generation"]},
                    body=card_body(params, summary, command), pretty_name="Self-chat corpus (cerbero-hf)")
    return {"params": params, "summary": summary}


def _table(rows: list[dict], feats):
    from datasets import Dataset

    if not rows:
        return Dataset.from_dict({k: [] for k in feats}, features=feats)
    return Dataset.from_list(rows, features=feats)


def card_body(params: dict, summary: dict, command: str | None) -> str:
    """The card's Markdown: what was run, with which parameters, and what came out."""
    from cerbero_hf.cards import stage_body, table

    return stage_body(
        "Self-chat corpus",
        "Seed conversations extended one message at a time by a generator playing both roles; every new\n"
        "message is rejected when its cosine similarity to any stored message is above the threshold\n"
        "(Cerbero-7B, arXiv 2311.15698, §3.3). Built with `cerbero-hf generate`.",
        configs=[("default", "complete and short conversations"), ("rejected", "failed ones, with `reason`")],
        sections=[("Parameters", table(["parameter", "value"],
                                       [(k, f"`{json.dumps(v, ensure_ascii=False)}`") for k, v in params.items()])),
                  ("Counts", table(["count", "value"], summary.items()))],
        command=command)


def check_failures(summary: dict, limit: float, limit_key: str, output) -> None:
    """One line (exit 2) when more than ``limit`` of the conversations failed on a request (the corpus is written)."""
    total, failed = summary["conversations"], summary["failed_requests"]
    if total and failed / total > limit:
        raise InputError(f"{failed} of {total} conversations ({failed / total:.0%}) failed on their requests, more "
                         f"than {limit_key} allows ({limit:.0%}); the corpus is written to {output}, the failed ones "
                         "with their errors in its rejected config", column=limit_key)
