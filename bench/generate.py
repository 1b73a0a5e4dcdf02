"""Benchmark: the endpoint backend's client-side overhead and SelfChat's end-to-end rate.

A local OpenAI-compatible endpoint runs in a second process (a small asyncio HTTP/1.1 server, keep-alive)
and answers every ``POST /v1/chat/completions`` after a fixed latency (2 s by default, about a real
generator's time per message), with a fresh random Italian-looking sentence. Against it, in this
process, for concurrency 1, 16, 64 and 256:

* ``bare``: a bare ``huggingface_hub.AsyncInferenceClient.chat_completion`` loop (connection pool sized
  to the concurrency, like ours; the default httpx pool caps at 100 connections);
* ``ours``: ``EndpointBackend.generate`` (retry wrapper, semaphore, timeout, parsing, token accounting).

Each run keeps ``concurrency`` workers sending back to back: a ramp of ``--warm-rounds`` latencies (opening
the connections; the workers start in lockstep and spread out), then a window of ``--rounds`` latencies in
which completed requests and this process's CPU time (``time.process_time``) are counted. That window is
the steady rate a long generation run sees; the "whole run" column includes the ramp. Bare and ours run
twice per concurrency in ABBA order and the best of the two is printed (the machine is shared and noisy):
requests/s against the ideal (concurrency / latency) and client CPU ms per request.
Targets: >= 90 % of ideal at 64 and 256; ours adds <= 0.5 ms CPU per request over bare.

Then SelfChat end to end (``Dataset.map``, embedding with the packaged all-MiniLM-L6-v2, the diversity
check) against the same endpoint: accepted messages per second versus the ideal
(concurrent conversations / latency).

Usage: ``python bench/generate.py [--latency 2] [--rounds 5] [--warm-rounds 2] [--conversations 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("casa sole mare libro treno città amico scuola lavoro musica cucina strada giardino montagna fiume "
         "scienza storia lingua pane vino tempo notte giorno mattina estate inverno cielo stella luna fiore "
         "albero computer programma domanda risposta problema idea progetto viaggio museo teatro").split()


# -- the fixed-latency endpoint (second process) ----------------------------------------------------

async def _serve(port: int, latency: float) -> None:
    rng = random.Random(0)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                await asyncio.sleep(latency)
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
                out = json.dumps({"id": "b", "object": "chat.completion", "created": 0, "model": body.get("model"),
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}],
                                  "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})
                raw = out.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(raw)).encode() + b"\r\n\r\n" + raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}"


# -- client runs ------------------------------------------------------------------------------------

MESSAGES = [{"role": "system", "content": "Scrivi il prossimo messaggio."},
            {"role": "user", "content": "[|Umano|] Ciao, come stai?\n[|Assistente|]"}]


def _sized_client(url: str, concurrency: int):
    import httpx2
    from huggingface_hub import AsyncInferenceClient

    client = AsyncInferenceClient(base_url=url, timeout=60)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client._async_client = httpx2.AsyncClient(limits=limits, timeout=None)
    client.exit_stack.push_async_callback(client._async_client.aclose)
    return client


async def _drive(send, concurrency: int, warm: float, window: float) -> tuple[int, float, float, int, float]:
    """Keep ``concurrency`` workers sending for ``warm + window`` seconds.

    Returns ``(completed in the window, its wall seconds, this process's CPU seconds in it, completed in
    the whole run, whole run's wall seconds)``. The window starts after ``warm`` seconds, once every
    connection is open and the workers' start-up lockstep has spread out: it measures the steady rate
    a long generation run sees. The whole-run figure includes that ramp.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    w0, w1 = t0 + warm, t0 + warm + window
    marks: dict = {}
    done = [0, 0]  # whole run, inside the window

    def mark(key):
        if key not in marks:
            marks[key] = (loop.time(), time.process_time())

    async def worker():
        while loop.time() < w1:
            await send()
            now = loop.time()
            done[0] += 1
            if now >= w0:
                mark("start")
                done[1] += now < w1
            if now >= w1:
                mark("end")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    whole = loop.time() - t0
    (ws, cs), (we, ce) = marks["start"], marks.get("end", (loop.time(), time.process_time()))
    return done[1], we - ws, ce - cs, done[0], whole


async def run_bare(url: str, concurrency: int, warm: float, window: float, sized: bool = True):
    from huggingface_hub import AsyncInferenceClient

    client = _sized_client(url, concurrency) if sized else AsyncInferenceClient(base_url=url, timeout=60)

    async def send():
        out = await client.chat_completion(MESSAGES, model="bench", max_tokens=64, temperature=0.7, top_p=0.9)
        assert out.choices[0].message.content

    try:
        return await _drive(send, concurrency, warm, window)
    finally:
        await client.close()


async def run_ours(url: str, concurrency: int, warm: float, window: float):
    from cerbero_hf.stages.generate.backends import EndpointBackend, Request

    backend = EndpointBackend(url, "chat", model="bench", concurrency=concurrency, timeout=60)
    request = Request(messages=MESSAGES, max_new_tokens=64, stop=["[|Umano|]", "[|Assistente|]"], seed=1)

    async def send():
        result = await backend.generate(request)
        assert result.text

    try:
        return await _drive(send, concurrency, warm, window)
    finally:
        await backend.aclose()
        assert backend.stats["retries"] == 0


def e2e(url: str, conversations: int, concurrency: int, latency: float) -> dict:
    import datasets

    from cerbero_hf.schema import features, make_row
    from cerbero_hf.stages.generate.backends import EndpointBackend
    from cerbero_hf.stages.generate.corpus import seed_messages
    from cerbero_hf.stages.generate.embedder import Embedder
    from cerbero_hf.stages.generate.selfchat import SelfChat
    from cerbero_hf.tiny_models import italian_sentences, packaged_minilm_path

    datasets.disable_progress_bars()
    sents = italian_sentences(2 * conversations, seed=1)
    rows = [make_row(f"s{i}", [{"role": "user", "content": sents[2 * i]},
                               {"role": "assistant", "content": sents[2 * i + 1]}], "bench") for i in range(conversations)]
    seeds = datasets.Dataset.from_list(rows, features=features())
    embedder = Embedder(str(packaged_minilm_path()))
    embedder.encode(["riscaldamento"])  # load the model outside the timed region
    backend = EndpointBackend(url, "chat", model="bench", concurrency=concurrency)
    chat = SelfChat(backend, embedder, seed_texts=seed_messages(seeds), lengths=(6, 8, 10))
    chat.prepare()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    out = seeds.map(chat, features=features(), keep_in_memory=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    accepted = chat.stats["accepted"]
    statuses = {s: sum(json.loads(m)["status"] == s for m in out["meta"]) for s in ("complete", "short", "failed")}
    ideal = min(conversations, concurrency) / latency
    return {"conversations": conversations, "accepted": accepted, "rejected": chat.stats.get("rejected", 0),
            "wall_s": wall, "msgs_per_s": accepted / wall, "ideal_msgs_per_s": ideal, "cpu_ms_per_msg":
            1000 * cpu / max(1, chat.stats["requests_sent"]), "embed_calls": chat._embed.calls, **statuses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int)
    ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5, help="measuring window, in latencies")
    ap.add_argument("--warm-rounds", type=int, default=2, help="ramp before the window, in latencies")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--conversations", type=int, default=64)
    a = ap.parse_args()
    if a.serve:
        asyncio.run(_serve(a.serve, a.latency))
        return
    proc, url = start_server(a.latency)
    try:
        asyncio.run(run_bare(url, 4, 0.0, 0.1))  # warm-up: imports, first connections
        warm, window = a.warm_rounds * a.latency, a.rounds * a.latency
        print(f"endpoint latency {a.latency:.1f} s; each run: {warm:.0f} s ramp, then a {window:.0f} s measuring "
              f"window; machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"{'conc':>5} {'client':>14} {'req/s':>8} {'ideal':>7} {'% ideal':>8} {'whole run':>10} {'CPU ms/req':>11}")
        rows = {}
        for c in [int(x) for x in a.concurrency.split(",")]:
            ideal = c / a.latency
            for name, fn in (("bare", run_bare), ("ours", run_ours), ("ours", run_ours), ("bare", run_bare)):
                n, wall, cpu, total, whole = asyncio.run(fn(url, c, warm, window))
                best = rows.get((c, name), (0.0, float("inf"), 0.0))
                rows[(c, name)] = (max(best[0], n / wall), min(best[1], 1000 * cpu / n), max(best[2], total / whole))
            for name in ("bare", "ours"):
                rps, cpu_ms, whole_rps = rows[(c, name)]
                print(f"{c:>5} {name:>14} {rps:>8.2f} {ideal:>7.1f} {100 * rps / ideal:>7.1f}% "
                      f"{100 * whole_rps / ideal:>9.1f}% {cpu_ms:>11.3f}")
            print(f"{c:>5} {'ours - bare':>14} {'':>8} {'':>7} {'':>8} {'':>10} "
                  f"{rows[(c, 'ours')][1] - rows[(c, 'bare')][1]:>+11.3f}")
        if 256 in [int(x) for x in a.concurrency.split(",")]:
            n, wall, cpu, total, whole = asyncio.run(run_bare(url, 256, warm, window, False))
            print(f"{256:>5} {'bare, default':>14} {n / wall:>8.2f} {256 / a.latency:>7.1f} "
                  f"{100 * n / wall / (256 / a.latency):>7.1f}% {100 * total / whole / (256 / a.latency):>9.1f}% "
                  f"{1000 * cpu / n:>11.3f}  (httpx pool of 100)")
        r = e2e(url, a.conversations, 64, a.latency)
        print(f"\nSelfChat end to end ({r['conversations']} conversations, concurrency 64, MiniLM embedder, "
              f"exact store): {r['accepted']} accepted / {r['rejected']} rejected messages in {r['wall_s']:.1f} s "
              f"= {r['msgs_per_s']:.2f} msgs/s vs ideal {r['ideal_msgs_per_s']:.1f} "
              f"({100 * r['msgs_per_s'] / r['ideal_msgs_per_s']:.0f} %); client CPU {r['cpu_ms_per_msg']:.1f} ms "
              f"per request; {r['embed_calls']} batched encode calls; status complete {r['complete']}, "
              f"short {r['short']}, failed {r['failed']}")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
