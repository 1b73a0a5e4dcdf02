"""Greedy generation for evaluation: a local transformers model or a model behind an endpoint.

Both take few-shot chats (lists of messages) plus a :class:`~cerbero_hf.evaluation.prompts.PromptFormat`
and return one raw completion per chat, in order; :func:`clean_answer` turns a completion into the
answer that is scored (cut at the first stop string, first non-empty line, stripped; METHOD.md D29).

- :class:`LocalGenerator`: ``AutoModelForCausalLM`` on CPU or GPU, batched greedy decoding with left
  padding, prompts sorted by length so a batch pads little, ``stop_strings`` passed to ``generate``.
  Chat-template prompts already hold the BOS token, so they are tokenised without special tokens;
  transcript prompts get the tokenizer's usual special tokens.
- :class:`EndpointGenerator`: the generation stage's ``EndpointBackend`` (``AsyncInferenceClient``):
  ``chat_completion`` for the ``chat`` format (the server applies its template), TGI
  ``text_generation`` for transcript formats. Requests run concurrently; failed requests are retried by
  the backend, then recorded as errors (the example counts as wrong) instead of stopping the run.
"""

from __future__ import annotations

from typing import Callable, Sequence

from cerbero_hf.evaluation.prompts import PromptFormat


def clean_answer(raw: str, stop: Sequence[str] = ()) -> str:
    """Cut ``raw`` at the earliest stop string, keep its first non-empty line, strip it."""
    cut = len(raw)
    for s in stop:
        if s:
            pos = raw.find(s)
            if pos != -1:
                cut = min(cut, pos)
    text = raw[:cut].strip()
    return text.split("\n", 1)[0].strip()


class LocalGenerator:
    """A local causal LM with batched greedy generation.

    Args:
        model: a local folder or Hub id.
        revision: Hub revision (branch, tag or commit).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        dtype: torch dtype name (default: bfloat16 on a GPU that supports it, else float32).
        batch_size: prompts per ``generate`` call.
        threads: torch intra-op threads on CPU (default: torch's choice). On a CPU shared with other
            jobs, 1 thread can be many times faster than contended threads (see bench/evaluate.py).
    """

    kind = "local"

    def __init__(self, model: str, *, revision: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 16, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            use_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if use_bf16 else "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))
        self.info = {"model": model, "revision": revision, "device": self.device, "dtype": dtype,
                     "commit_hash": getattr(self.model.config, "_commit_hash", None), "batch_size": self.batch_size,
                     "threads": torch.get_num_threads() if self.device == "cpu" else None}
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self.truncated = 0

    def encode(self, chat: list[dict], fmt: PromptFormat) -> list[int]:
        text = fmt.render(chat, self.tokenizer)
        return self.tokenizer(text, add_special_tokens=not fmt.uses_chat_template)["input_ids"]

    def generate(self, chats: Sequence[list[dict]], fmt: PromptFormat, *, max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> list[dict]:
        """Greedy completions for ``chats``: one ``{"raw": str}`` per chat, in input order."""
        import torch

        ids = [self.encode(chat, fmt) for chat in chats]
        if self.max_positions:
            room = self.max_positions - max_new_tokens
            for i, seq in enumerate(ids):
                if len(seq) > room:  # keep the end: the query and the generation prompt
                    ids[i] = seq[len(seq) - room:]
                    self.truncated += 1
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out: list[dict | None] = [None] * len(ids)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch], device=self.device)
            with torch.no_grad():
                gen = self.model.generate(
                    input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                    temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                    stop_strings=list(stop) or None, tokenizer=self.tokenizer if stop else None)
            for row, i in enumerate(batch):
                text = self.tokenizer.decode(gen[row, width:], skip_special_tokens=True)
                out[i] = {"raw": text}
            if progress:
                progress(len(batch))
        return out  # type: ignore[return-value]


class EndpointGenerator:
    """A model behind an endpoint, through the generation backends (``EndpointBackend``, METHOD.md D2, D11).

    ``chat`` prompts go to ``/v1/chat/completions`` as messages (the server applies its template);
    transcript formats are rendered here and sent to TGI ``text_generation``. Greedy: temperature 0,
    no top-p. Retries, backoff and the concurrency bound are the backend's; a request that still fails
    gives an empty answer with an ``error`` (scored as wrong) instead of stopping the run.

    Args:
        url: the server's base URL (TGI, vLLM, SGLang, ``transformers serve``, any OpenAI-compatible one).
        model: the ``model`` field to send (``transformers serve`` needs the path it was started with).
        api_key_env: name of the environment variable holding the API key (read by the backend, never logged).
        concurrency / max_attempts / timeout: passed to the backend.
        seed: request seed, recorded with the results.
    """

    kind = "endpoint"

    def __init__(self, url: str, *, model: str | None = None, api_key_env: str | None = None, concurrency: int = 8,
                 max_attempts: int = 5, timeout: float = 300.0, seed: int | None = None):
        self.url, self.model, self.api_key_env = url, model, api_key_env
        self.concurrency, self.max_attempts, self.timeout, self.seed = concurrency, max_attempts, timeout, seed
        self.info = {"endpoint": url, "model": model, "server_model": None}
        self.truncated = 0

    def generate(self, chats: Sequence[list[dict]], fmt: PromptFormat, *, max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> list[dict]:
        """One ``{"raw": str}`` (plus ``"error"`` after failed retries) per chat, in input order."""
        import asyncio

        from cerbero_hf.generation.backends import EndpointBackend, GenerationError, Request

        mode = "chat" if fmt.uses_chat_template else "completion"
        backend = EndpointBackend(self.url, mode, self.model, api_key_env=self.api_key_env,
                                  concurrency=self.concurrency, timeout=self.timeout, max_attempts=self.max_attempts)

        async def one(chat: list[dict]) -> dict:
            request = Request(messages=chat if mode == "chat" else [], prompt="" if mode == "chat" else fmt.render(chat),
                              max_new_tokens=max_new_tokens, temperature=0.0, top_p=None, stop=list(stop),
                              seed=self.seed)
            try:
                result = await backend.generate(request)
                self.info["server_model"] = result.model
                out = {"raw": result.text}
            except GenerationError as err:
                out = {"raw": "", "error": str(err)}
            if progress:
                progress(1)
            return out

        async def run_all() -> list[dict]:
            try:
                return list(await asyncio.gather(*(one(chat) for chat in chats)))
            finally:
                await backend.aclose()

        return asyncio.run(run_all())
