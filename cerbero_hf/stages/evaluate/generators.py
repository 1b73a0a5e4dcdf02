"""Greedy generation for evaluation, through the generate stage's backends (one generator interface).

Both generators take few-shot chats (lists of messages) plus a :class:`~cerbero_hf.stages.evaluate.prompts.PromptFormat`
and return one raw completion per chat, in order; :func:`clean_answer` turns a completion into the
answer that is scored (cut at the first stop string, first non-empty line, stripped).

Each is a thin adapter: it turns the chats into :class:`~cerbero_hf.stages.generate.backends.Request` s
(greedy: temperature 0, no top-p) and runs them concurrently through a backend:

- :class:`LocalGenerator`: :class:`~cerbero_hf.stages.generate.backends.LocalBackend` over a loaded
  :class:`~cerbero_hf.stages.generate.backends.LocalLM` (batched left-padded greedy decoding, prompts sorted by
  length so a batch pads little, ``stop_strings``). The ``chat`` format applies the model's chat template
  (the rendered text already holds the BOS token); transcript formats are rendered here and tokenised with
  the tokenizer's usual special tokens. A message longer than the model's window can hold is cut (keeping
  its end) before anything is tokenised (:func:`cut_messages`), so one huge benchmark item costs no more
  memory than a full window; the prompt is then cut to the window as before and counted in ``truncated``.
- :class:`EndpointGenerator`: :class:`~cerbero_hf.stages.generate.backends.EndpointBackend`
  (``AsyncInferenceClient``): ``chat_completion`` for the ``chat`` format (the server applies its template),
  TGI ``text_generation`` for transcript formats. Failed requests are retried by the backend, then recorded
  as errors (the example counts as wrong) instead of stopping the run.
"""

from __future__ import annotations

from typing import Callable, Sequence

from cerbero_hf.stages.evaluate.prompts import PromptFormat


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


def longest_token_chars(tokenizer) -> int:
    """The most characters one token of ``tokenizer`` can stand for: the length of its longest vocabulary entry
    (a byte-level token's string has one character per byte, so it never decodes to more characters)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1) or 1


def cut_messages(chat: list[dict], max_chars: int | None) -> tuple[list[dict], int]:
    """``chat`` with every message over ``max_chars`` characters cut to its last ``max_chars``, and how many
    were cut.

    With ``max_chars`` = the model's window x :func:`longest_token_chars`, a cut message still holds more tokens
    than the window, and a prompt over the window keeps its end (:class:`LocalLM`): the model sees the same
    tokens as without the cut, but a 10 MB message is never tokenised whole.
    """
    if not max_chars or all(len(m["content"]) <= max_chars for m in chat):
        return chat, 0
    out = [{**m, "content": m["content"][-max_chars:]} if len(m["content"]) > max_chars else m for m in chat]
    return out, sum(len(m["content"]) > max_chars for m in chat)


def _requests(chats: Sequence[list[dict]], fmt: PromptFormat, max_new_tokens: int, stop: Sequence[str],
              seed: int | None = None) -> tuple[str, list]:
    """The backend mode and one greedy request per chat: messages for ``chat``, rendered text otherwise."""
    from cerbero_hf.stages.generate.backends import Request

    mode = "chat" if fmt.uses_chat_template else "completion"
    return mode, [Request(messages=list(chat) if mode == "chat" else [],
                          prompt="" if mode == "chat" else fmt.render(chat), max_new_tokens=max_new_tokens,
                          temperature=0.0, top_p=None, stop=list(stop), seed=seed) for chat in chats]


def _run(backend, requests: list, progress: Callable[[int], None] | None, *, keep_going: bool) -> list:
    """Every request through ``backend`` concurrently: one ``Result`` (or ``GenerationError``) per request."""
    import asyncio

    from cerbero_hf.stages.generate.backends import GenerationError

    async def one(request):
        try:
            result = await backend.generate(request)
        except GenerationError as err:
            if not keep_going:  # a local failure is a bug or a resource problem: stop with its own error
                raise (err.__cause__ or err) from None
            result = err
        if progress:
            progress(1)
        return result

    async def run_all() -> list:
        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await backend.aclose()

    return asyncio.run(run_all())


class LocalGenerator:
    """A local causal LM with batched greedy generation (loaded when built).

    Args:
        model: a local folder or Hub id.
        revision: Hub revision (branch, tag or commit).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        dtype: torch dtype name (default: bfloat16 on a GPU that supports it, else float32).
        batch_size: prompts per ``generate`` call.
        threads: torch intra-op threads on CPU (default: torch's choice). On a CPU shared with other
            jobs, 1 thread can be many times faster than contended threads (see bench/evaluate.py).

    Examples:
        >>> from cerbero_hf import LocalGenerator, prompt_format
        >>> generator = LocalGenerator("galatolo/cerbero-7b", dtype="bfloat16", batch_size=8)  # doctest: +SKIP
        >>> chats = [[{"role": "user", "content": "Ciao!"}]]
        >>> generator.generate(chats, prompt_format("cerbero"), max_new_tokens=32)  # doctest: +SKIP
        [{'raw': ' Ciao! Come posso aiutarti?'}]
    """

    kind = "local"

    def __init__(self, model: str, *, revision: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 16, threads: int | None = None):
        from cerbero_hf.stages.generate.backends import LocalLM

        self.lm = LocalLM(model, revision=revision, device=device, dtype=dtype, threads=threads).load()
        self.tokenizer, self.model, self.device = self.lm.tokenizer, self.lm.model, self.lm.device
        self.batch_size = max(1, int(batch_size))
        self.info = {**self.lm.info(), "batch_size": self.batch_size}
        self.max_positions = self.lm.max_positions
        # per-message limit applied before tokenisation (cut_messages); None: the model states no window
        self.max_chars = self.max_positions * longest_token_chars(self.tokenizer) if self.max_positions else None
        self.cut = 0  # messages cut to max_chars so far

    @property
    def truncated(self) -> int:
        """Prompts cut (keeping their end) to fit the model's window, so far."""
        return self.lm.truncated

    def fit(self, chat: list[dict]) -> list[dict]:
        """``chat`` with its messages cut to :attr:`max_chars` (:func:`cut_messages`), counted in :attr:`cut`."""
        chat, n = cut_messages(chat, self.max_chars)
        self.cut += n
        return chat

    def encode(self, chat: list[dict], fmt: PromptFormat) -> list[int]:
        text = fmt.render(self.fit(chat), self.tokenizer)
        return self.lm.encode(text, special_tokens=not fmt.uses_chat_template)

    def generate(self, chats: Sequence[list[dict]], fmt: PromptFormat, *, max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> list[dict]:
        """Greedy completions for ``chats``: one ``{"raw": str}`` per chat, in input order."""
        from cerbero_hf.stages.generate.backends import LocalBackend

        chats = [self.fit(chat) for chat in chats]  # before anything is tokenised
        if chats and fmt.uses_chat_template:
            fmt.render(chats[0], self.tokenizer)  # a tokenizer without a chat template: the format's input error
        mode, requests = _requests(chats, fmt, max_new_tokens, stop)
        backend = LocalBackend(self.lm, mode, max_batch=self.batch_size)
        # longest first, so each batch holds prompts of similar length and pads little
        order = sorted(range(len(requests)), key=lambda i: len(backend.encode(requests[i])), reverse=True)
        results = _run(backend, [requests[i] for i in order], progress, keep_going=False)
        out: list[dict] = [{}] * len(requests)
        for i, result in zip(order, results):
            out[i] = {"raw": result.text}
        return out


class EndpointGenerator:
    """A model behind an endpoint, through :class:`~cerbero_hf.stages.generate.backends.EndpointBackend`.

    ``chat`` prompts go to ``/v1/chat/completions`` as messages (the server applies its template);
    transcript formats are rendered here and sent to TGI ``text_generation``. Greedy: temperature 0,
    no top-p. Retries, backoff and the concurrency bound are the backend's (:mod:`cerbero_hf.retry`); a
    request that still fails gives an empty answer with an ``error`` (scored as wrong) instead of stopping
    the run.

    Args:
        url: the server's base URL (TGI, vLLM, SGLang, ``transformers serve``, any OpenAI-compatible one).
        model: the ``model`` field to send (``transformers serve`` needs the path it was started with).
        api_key_env: name of the environment variable holding the API key (read by the backend, never logged).
        concurrency: the most requests in flight (the backend's).
        request_attempts: HTTP attempts per request, the first included (the backend's).
        timeout: seconds per attempt (the backend's).
        seed: request seed, recorded with the results.

    Examples:
        >>> from cerbero_hf import EndpointGenerator, prompt_format
        >>> generator = EndpointGenerator("http://127.0.0.1:8080", model="cerbero-7b", concurrency=16)
        >>> chats = [[{"role": "user", "content": "Ciao!"}]]
        >>> generator.generate(chats, prompt_format("chat"), max_new_tokens=32)  # doctest: +SKIP
        [{'raw': 'Ciao! Come posso aiutarti?'}]
    """

    kind = "endpoint"

    def __init__(self, url: str, *, model: str | None = None, api_key_env: str | None = None, concurrency: int = 8,
                 request_attempts: int = 5, timeout: float = 300.0, seed: int | None = None):
        self.url, self.model, self.api_key_env = url, model, api_key_env
        self.concurrency, self.request_attempts, self.timeout, self.seed = concurrency, request_attempts, timeout, seed
        self.info = {"endpoint": url, "model": model, "server_model": None}
        self.truncated = 0

    def generate(self, chats: Sequence[list[dict]], fmt: PromptFormat, *, max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> list[dict]:
        """One ``{"raw": str}`` (plus ``"error"`` after failed retries) per chat, in input order."""
        from cerbero_hf.stages.generate.backends import EndpointBackend, GenerationError

        mode, requests = _requests(chats, fmt, max_new_tokens, stop, self.seed)
        backend = EndpointBackend(self.url, mode, self.model, api_key_env=self.api_key_env,
                                  concurrency=self.concurrency, timeout=self.timeout,
                                  request_attempts=self.request_attempts)
        out = []
        for result in _run(backend, requests, progress, keep_going=True):
            if isinstance(result, GenerationError):
                out.append({"raw": "", "error": str(result)})
            else:
                self.info["server_model"] = result.model
                out.append({"raw": result.text})
        return out
