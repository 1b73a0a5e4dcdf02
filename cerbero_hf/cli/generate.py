"""``cerbero-hf generate``: self-chat generation with the embedding diversity filter (METHOD.md §3)."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated, Optional

import typer

ORDER = 20


def register(app) -> None:
    @app.command()
    def generate(
        seeds: Annotated[str, typer.Argument(help="Seed conversations: a folder/file/Hub id (output of `seeds`).")],
        output: Annotated[str, typer.Argument(help="Output folder (Hub layout: data/, rejected/, README.md).")],
        endpoint: Annotated[Optional[str], typer.Option(help="Generator endpoint URL (TGI, vLLM, SGLang, "
                                                        "llama.cpp, transformers serve).")] = None,
        mode: Annotated[str, typer.Option(help="chat: /v1/chat/completions; completion: TGI text_generation "
                                          "on the rendered transcript.")] = "chat",
        endpoint_model: Annotated[Optional[str], typer.Option(help="`model` sent to the endpoint (transformers "
                                                              "serve: the path it serves).")] = None,
        api_key_env: Annotated[Optional[str], typer.Option(help="Name of the environment variable holding the "
                                                           "endpoint's API key (never printed).")] = None,
        extra_body: Annotated[Optional[str], typer.Option(help="JSON object of extra fields for chat requests "
                                                          "(server-specific options).")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local generator (path or id): runs in-process, "
                                                     "batching concurrent requests.")] = None,
        embedder: Annotated[Optional[str], typer.Option(help="Sentence-transformers model (default: the "
                                                        "language pack's).")] = None,
        language: Annotated[str, typer.Option(help="Language pack code or YAML file.")] = "it",
        max_conversations: Annotated[Optional[int], typer.Option(help="Conversations to generate (default: "
                                                                 "one per seed).")] = None,
        concurrency: Annotated[int, typer.Option(help="Requests in flight at most.")] = 64,
        threshold: Annotated[float, typer.Option(help="Reject a message whose cosine to a stored one is above "
                                                 "this.")] = 0.9,
        index: Annotated[str, typer.Option(help="Diversity store search: exact, or hnsw (approximate, for "
                                           "millions of messages).")] = "exact",
        seed: Annotated[int, typer.Option(help="Global RNG seed (lengths, request seeds, seed order).")] = 42,
        lengths: Annotated[str, typer.Option(help="Target lengths, drawn uniformly (messages, seed "
                                             "included).")] = "4,6,8,10",
        max_attempts: Annotated[int, typer.Option(help="Candidates per position before a conversation "
                                                  "ends.")] = 5,
        max_new_tokens: Annotated[int, typer.Option(help="Token limit per message.")] = 512,
        max_chars: Annotated[int, typer.Option(help="Longest accepted message (characters).")] = 8000,
        temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
        top_p: Annotated[float, typer.Option(help="Nucleus sampling top_p.")] = 0.9,
        keep_truncated: Annotated[bool, typer.Option(help="Accept messages cut by the token limit.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds per request attempt.")] = 300.0,
        request_attempts: Annotated[int, typer.Option(help="Attempts per request (retries on 408/429/5xx, "
                                                      "connection errors, timeouts).")] = 5,
        backoff: Annotated[float, typer.Option(help="Base retry delay in seconds (exponential, "
                                               "jittered).")] = 1.0,
        cache: Annotated[Optional[str], typer.Option(help="Replay cache (sqlite) for resume; default "
                                                     "OUTPUT.cache.sqlite.")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Disable the replay cache.")] = False,
        device: Annotated[str, typer.Option(help="Device for the embedder and a local generator.")] = "cpu",
    ) -> None:
        """Extend seed conversations with a generator playing both roles; reject near-duplicate messages (paper §3.3)."""
        from cerbero_hf.errors import InputError

        if (endpoint is None) == (model is None):
            raise InputError("give exactly one of --endpoint URL or --model PATH_OR_ID")
        if mode not in ("chat", "completion"):
            raise InputError(f"--mode must be chat or completion, got {mode!r}")
        from cerbero_hf.diversity import INDEXES

        if index not in INDEXES:
            raise InputError(f"--index must be {' or '.join(INDEXES)}, got {index!r}")
        try:
            length_list = tuple(int(x) for x in lengths.split(","))
        except ValueError:
            raise InputError(f"--lengths must be comma-separated integers, got {lengths!r}") from None
        if min(length_list) < 2:
            raise InputError("--lengths must all be >= 2")
        extra = None
        if extra_body:
            import json

            try:
                extra = json.loads(extra_body)
            except ValueError:
                extra = None
            if not isinstance(extra, dict):
                raise InputError("--extra-body must be a JSON object")

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn
        from rich.table import Table

        import datasets

        from cerbero_hf.diversity import Embedder
        from cerbero_hf.generation.backends import EndpointBackend, LocalBackend
        from cerbero_hf.generation.corpus import generate_corpus
        from cerbero_hf.io import load_table
        from cerbero_hf.languages import load_language
        from cerbero_hf.schema import validate

        pack = load_language(language)
        seeds_ds = load_table(seeds)
        validate(seeds_ds, file=seeds)
        if endpoint:
            backend = EndpointBackend(endpoint, mode, endpoint_model, api_key_env=api_key_env,
                                      concurrency=concurrency, timeout=timeout, max_attempts=request_attempts,
                                      backoff=backoff, extra_body=extra)
        else:
            backend = LocalBackend(model, mode, device=device, max_batch=min(concurrency, 32))
        emb = Embedder(embedder or pack.embedder, device=device)
        total = max_conversations if max_conversations is not None else len(seeds_ds)

        console = Console(stderr=True)
        datasets.disable_progress_bars()
        progress = Progress(TextColumn("[bold]self-chat"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                            console=console, transient=False)
        task = progress.add_task("generate", total=total, counts="")

        def on_event(event, stats):
            counts = (f"msgs +{stats.get('accepted', 0)}/-{stats.get('rejected', 0)}  "
                      f"req {stats.get('requests_sent', 0)} (replayed {stats.get('requests_replayed', 0)}, "
                      f"failed {stats.get('request_failures', 0)}, retries {backend.stats.get('retries', 0)})  "
                      f"tok {stats.get('tokens_in', 0)}/{stats.get('tokens_out', 0)}")
            progress.update(task, advance=1 if event == "conversations" else 0, counts=counts)

        command = "cerbero-hf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
        with progress:
            result = generate_corpus(
                seeds_ds, backend, emb, output, max_conversations=max_conversations, seed=seed, threshold=threshold,
                cache_path=None if no_cache else (cache or "auto"), language=language, on_event=on_event,
                map_progress=False, command=command, lengths=length_list, max_attempts=max_attempts,
                max_chars=max_chars, reject_truncated=not keep_truncated, temperature=temperature, top_p=top_p,
                max_new_tokens=max_new_tokens, index=index)
        table = Table(title=f"generate → {output}")
        table.add_column("count")
        table.add_column("value", justify="right")
        for key, value in result["summary"].items():
            table.add_row(key, ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
        Console().print(table)
