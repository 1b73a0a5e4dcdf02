"""A generator in this process: a transformers causal LM, no server.

- :class:`LocalLM`: the model and its tokenizer, loaded once, and the one batched ``generate`` wrapper
  (left padding with an explicit attention mask, so a batch gives the same greedy text as one prompt at a
  time; prompts longer than the model's window keep their end; stop strings; greedy when temperature is 0).
- :class:`LocalBackend`: the backend interface over a :class:`LocalLM`; concurrent ``await generate(request)``
  calls are batched into one ``generate`` call run in a worker thread. Used by self-chat generation and,
  through :class:`cerbero_hf.stages.evaluate.generators.LocalGenerator`, by evaluation.

torch and transformers are imported when the model is loaded.
"""

from __future__ import annotations

from typing import Any, Sequence

from cerbero_hf.stages.generate.backends.base import GenerationError, Request, Result, new_stats


class LocalLM:
    """A causal LM with a tokenizer, loaded on first use (or by :meth:`load`).

    Args:
        model: a local folder or Hub id.
        revision: Hub revision (branch, tag or commit).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        dtype: torch dtype name (default: bfloat16 on a GPU that supports it, else float32).
        threads: torch intra-op threads on CPU (default: torch's choice). On a CPU shared with other
            jobs, 1 thread can be many times faster than contended threads (see bench/evaluate.py).
    """

    def __init__(self, model: str, *, revision: str | None = None, device: str | None = None,
                 dtype: str | None = None, threads: int | None = None):
        self.name, self.revision, self.device, self.dtype, self.threads = str(model), revision, device, dtype, threads
        self.truncated = 0  # prompts cut to fit the model's window
        self._lm: Any = None  # the transformers model and tokenizer, once loaded
        self._tok: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lm": None, "_tok": None}

    def load(self) -> "LocalLM":
        """Load the tokenizer and the model (once); returns self."""
        if self._lm is not None:
            return self
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.dtype is None:
            bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            self.dtype = "bfloat16" if bf16 else "float32"
        tok = AutoTokenizer.from_pretrained(self.name, revision=self.revision)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        lm = AutoModelForCausalLM.from_pretrained(self.name, revision=self.revision, dtype=getattr(torch, self.dtype))
        # transformers' decorator on `to` hides its signature from type checkers (it takes a device)
        self._lm, self._tok = lm.to(self.device).eval(), tok  # type: ignore[arg-type]
        return self

    @property
    def model(self):
        return self.load()._lm

    @property
    def tokenizer(self):
        return self.load()._tok

    @property
    def max_positions(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def info(self) -> dict:
        """What to record about the model (loads it)."""
        import torch

        self.load()
        return {"model": self.name, "revision": self.revision, "device": self.device, "dtype": self.dtype,
                "commit_hash": getattr(self._lm.config, "_commit_hash", None),
                "threads": torch.get_num_threads() if self.device == "cpu" else None}

    def encode(self, text: str, *, special_tokens: bool) -> list[int]:
        """Token ids of ``text``; chat-template text already holds the BOS token (``special_tokens=False``)."""
        return self.tokenizer(text, add_special_tokens=special_tokens)["input_ids"]

    def generate(self, prompts: Sequence[list[int]], *, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float | None = None, seed: int | None = None, stop: Sequence[str] = ()) -> list[tuple]:
        """One batched ``generate`` call: ``(text, tokens_in, tokens_out, finish_reason)`` per prompt, in order.

        The text ends before the first end-of-sequence token and before the first stop string;
        ``finish_reason`` is ``"length"`` when the token limit cut it, else ``"stop"``.
        """
        import torch

        lm, tok = self.model, self.tokenizer
        room = (self.max_positions - max_new_tokens) if self.max_positions else None
        ids = []
        for seq in prompts:
            if room is not None and room > 0 and len(seq) > room:  # keep the end: the query and the generation prompt
                seq = seq[len(seq) - room:]
                self.truncated += 1
            ids.append(list(seq))
        pad = tok.pad_token_id
        width = max(len(seq) for seq in ids)
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids], device=self.device)
        kwargs = {"max_new_tokens": max_new_tokens, "pad_token_id": pad}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0 if top_p is None else top_p)
        else:  # greedy; None silences the sampling defaults of the model's generation config
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = lm.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        specials = {t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None}
        results = []
        for row, seq in enumerate(ids):
            gen = out[row, width:].tolist()
            n_out = next((k + 1 for k, t in enumerate(gen) if t in specials), len(gen))
            text = tok.decode(gen[:n_out], skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s and s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
            stopped = cut >= 0 or n_out < len(gen) or (gen and gen[n_out - 1] in specials)
            results.append((text, len(seq), n_out, "stop" if stopped or n_out < max_new_tokens else "length"))
        return results


class LocalBackend:
    """An in-process causal LM behind the backend interface; concurrent requests are batched.

    Args:
        model: local path or Hub id of a causal LM with a tokenizer, or a :class:`LocalLM` (already loaded
            or not) to share one model between callers.
        mode: ``"chat"`` applies the tokenizer's chat template to ``request.messages``;
            ``"completion"`` feeds ``request.prompt`` as is (with the tokenizer's special tokens).
        device: torch device (when ``model`` is a path).
        max_batch: the most requests per ``generate`` call.

    One batch shares one set of sampling parameters and one torch seed (the first request's), so a
    per-request seed is not honoured exactly under batching.

    Examples:
        >>> from cerbero_hf import LocalBackend, SelfChat
        >>> backend = LocalBackend("Qwen/Qwen2.5-0.5B-Instruct", device="cuda", max_batch=32)  # doctest: +SKIP
        >>> chat = SelfChat(backend, "sentence-transformers/all-MiniLM-L6-v2", seed_texts=["Ciao!"])  # doctest: +SKIP
    """

    def __init__(self, model: "str | LocalLM", mode: str = "chat", *, device: str = "cpu", max_batch: int = 16):
        from cerbero_hf.stages.generate.batching import AsyncBatcher

        if mode not in ("chat", "completion"):
            raise ValueError(f"mode must be 'chat' or 'completion', got {mode!r}")
        self.lm = model if isinstance(model, LocalLM) else LocalLM(str(model), device=device)
        self.model, self.mode, self.max_batch = self.lm.name, mode, max_batch
        self.stats = new_stats()
        self._batcher = AsyncBatcher(self._generate_batch, max_batch=max_batch,
                                     key=lambda r: (r.max_new_tokens, r.temperature, r.top_p, tuple(r.stop)))

    @property
    def model_id(self) -> str:
        return self.model

    @property
    def device(self) -> str | None:
        return self.lm.device

    def describe(self) -> dict:
        return {"backend": "local", "model": self.model, "mode": self.mode, "device": self.device,
                "max_batch": self.max_batch}

    async def aclose(self) -> None:
        return None

    def close(self) -> None:
        """Stop a batch worker an interruption left running (see :meth:`AsyncBatcher.close`)."""
        self._batcher.close()

    def encode(self, request: Request) -> list[int]:
        """The token ids the model sees for ``request`` (before any cut to the model's window)."""
        if self.mode == "chat":
            text = self.lm.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                         tokenize=False)
            return self.lm.encode(text, special_tokens=False)
        return self.lm.encode(request.prompt, special_tokens=True)

    async def generate(self, request: Request) -> Result:
        self.stats["requests"] += 1
        try:
            result = await self._batcher.submit(request)
        except Exception as err:  # noqa: BLE001 - a local failure is final
            self.stats["failed"] += 1
            raise GenerationError(type(err).__name__, 1, transient=False,
                                  detail=" ".join(str(err).split())[:300] or None) from err
        self.stats["tokens_in"] += result.tokens_in
        self.stats["tokens_out"] += result.tokens_out
        return result

    def _generate_batch(self, requests: list[Request]) -> list[Result]:
        first = requests[0]
        done = self.lm.generate([self.encode(r) for r in requests], max_new_tokens=first.max_new_tokens,
                                temperature=first.temperature, top_p=first.top_p, seed=first.seed, stop=first.stop)
        return [Result(text, finish_reason, n_in, n_out, self.model) for text, n_in, n_out, finish_reason in done]
