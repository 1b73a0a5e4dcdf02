"""Few-shot chat prompts (paper §4.2: k-shot prompts in the chat or transcript formats).

A prompt is a chat: each shot is a user turn (the task input) and an assistant turn (the gold
answer), then the query as the last user turn; optionally an instruction turn first (benchita style:
the instruction plus " È tutto chiaro?" and a fixed assistant confirmation). The chat is rendered by:

- ``chat``: the model's own chat template (``apply_chat_template(..., add_generation_prompt=True)``),
  or sent as messages to a chat endpoint;
- ``cerbero``: ``[|Umano|] {user}\\n[|Assistente|] {assistant}\\n`` ... ending in ``[|Assistente|]``;
- ``fauno``: the same with the Fauno/Baize tags ``[|Umano|]`` / ``[|AI|]``;
- ``camoscio``: Camoscio's Italian Alpaca template (each user turn is preamble + instruction block,
  each answer ``\\n{answer}\\n\\n``, ending in ``\\n`` after the response heading).

Tags come from the language pack, the Camoscio strings from the evaluation settings. Transcript
prompts end with the bare tag (no trailing space) as in the authors' code, so the answer's first word
keeps its leading-space token. Default stop strings: the user tag for ``chat``, ``cerbero``
and ``fauno``; ``"\\n"`` for ``camoscio``.

Shots are drawn by :class:`ShotSampler` with a recorded seed: per query, from a pool (the train split
or the query's own split), never the query itself (same id or same input), optionally class-balanced.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from cerbero_hf.errors import InputError
from cerbero_hf.languages import LanguagePack, load_language
from cerbero_hf.stages.evaluate.tasks import Example

FORMATS = ("chat", "cerbero", "fauno", "camoscio")


def few_shot_messages(shots: Sequence[tuple[str, str]], query: str, instruction: str | None = None,
                      confirmation: str | None = None, question: str = "") -> list[dict]:
    """User/assistant turns: optional instruction turn, then each shot, then the query."""
    messages = []
    if instruction:
        messages.append({"role": "user", "content": instruction + question})
        messages.append({"role": "assistant", "content": confirmation or ""})
    for user, assistant in shots:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    messages.append({"role": "user", "content": query})
    return messages


@dataclass(frozen=True)
class PromptFormat:
    """How a few-shot chat becomes model input, and where generation stops.

    Attributes:
        name: one of :data:`FORMATS`.
        stop: default stop strings.
        user_tag / assistant_tag: transcript tags (``cerbero``, ``fauno``).
        camoscio: preamble / instruction_heading / response_heading (``camoscio``).
    """

    name: str
    stop: tuple[str, ...]
    user_tag: str = ""
    assistant_tag: str = ""
    camoscio: tuple[str, str, str] = ("", "", "")

    @property
    def uses_chat_template(self) -> bool:
        return self.name == "chat"

    def render(self, messages: list[dict], tokenizer=None) -> str:
        """The prompt text. ``chat`` needs a tokenizer with a chat template; the others are plain text."""
        if self.name == "chat":
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise InputError("format 'chat' needs a tokenizer with a chat template; "
                                 "use --format cerbero, fauno or camoscio")
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        _check_roles(messages)
        if self.name == "camoscio":
            preamble, instruction, response = self.camoscio
            parts = []
            for m in messages:
                if m["role"] == "user":
                    parts.append(f"{preamble}\n\n{instruction}\n{m['content']}\n\n{response}")
                else:
                    parts.append(f"\n{m['content']}\n\n")
            return "".join(parts) + "\n"
        tags = {"user": self.user_tag, "assistant": self.assistant_tag}
        return "".join(f"{tags[m['role']]} {m['content']}\n" for m in messages) + self.assistant_tag


def _check_roles(messages: list[dict]) -> None:
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ValueError(f"message {i} has role {m['role']!r}; transcript formats need user/assistant "
                             "turns alternating from the user")
    if messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's query")


def prompt_format(name: str, language: str | LanguagePack = "it", settings: dict | None = None) -> PromptFormat:
    """The :class:`PromptFormat` named ``name`` with tags from the language pack.

    Examples:
        >>> from cerbero_hf import prompt_format
        >>> fmt = prompt_format("cerbero", "it")
        >>> print(fmt.render([{"role": "user", "content": "Capitale d'Italia?"}, {"role": "assistant", "content": "Roma"},
        ...                   {"role": "user", "content": "Capitale della Francia?"}]))
        [|Umano|] Capitale d'Italia?
        [|Assistente|] Roma
        [|Umano|] Capitale della Francia?
        [|Assistente|]
        >>> fmt.stop
        ('[|Umano|]',)
    """
    pack = load_language(language)
    if name == "chat":
        return PromptFormat("chat", (pack.user_tag,))
    if name == "cerbero":
        return PromptFormat("cerbero", (pack.user_tag,), pack.user_tag, pack.assistant_tag)
    if name == "fauno":
        return PromptFormat("fauno", (pack.fauno_user_tag,), pack.fauno_user_tag, pack.fauno_assistant_tag)
    if name == "camoscio":
        cam = (settings or {}).get("camoscio") or {}
        preamble, instruction, response = cam.get("preamble"), cam.get("instruction_heading"), cam.get("response_heading")
        if not (preamble and instruction and response):
            raise InputError("format 'camoscio' needs camoscio.preamble, instruction_heading and "
                             "response_heading in the evaluation settings")
        return PromptFormat("camoscio", ("\n",), camoscio=(preamble, instruction, response))
    raise InputError(f"unknown prompt format {name!r}; choose one of {', '.join(FORMATS)}")


class ShotSampler:
    """Draw k shots per query from a pool with a recorded seed.

    The draw for a query depends only on (seed, task, query id), so ``--limit`` and batching never
    change which shots a query gets. The query itself (same id or same input) is never a shot.
    With ``balanced``, shots are spread evenly over the labels (remainder labels drawn at random).
    """

    def __init__(self, pool: Sequence[Example], k: int, seed: int, task: str = "", balanced: bool = False):
        if k < 0:
            raise InputError(f"number of shots must be >= 0, got {k}")
        self.pool, self.k, self.seed, self.task, self.balanced = list(pool), k, seed, task, balanced
        self.by_label: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.pool):
            self.by_label[ex.target].append(i)

    def _draw(self, indices: list[int], n: int, rng: random.Random, query: Example) -> list[int]:
        ok = [i for i in indices if self.pool[i].id != query.id and self.pool[i].input != query.input]
        return rng.sample(ok, min(n, len(ok)))

    def shots_for(self, query: Example) -> list[Example]:
        """The k shots for ``query``, in prompt order."""
        if self.k == 0:
            return []
        rng = random.Random(f"{self.seed}:{self.task}:{query.id}")
        if not self.balanced:
            # Draw k + 2 candidates and filter: cheap even for a 54k-item train split.
            cand = rng.sample(range(len(self.pool)), min(len(self.pool), self.k + 2))
            picked = [i for i in cand if self.pool[i].id != query.id and self.pool[i].input != query.input][:self.k]
            if len(picked) < self.k:
                picked = self._draw(list(range(len(self.pool))), self.k, rng, query)
        else:
            labels = sorted(self.by_label)
            quota = {lab: self.k // len(labels) for lab in labels}
            for lab in rng.sample(labels, self.k % len(labels)):
                quota[lab] += 1
            picked = []
            for lab in labels:
                picked += self._draw(self.by_label[lab], quota[lab], rng, query)
            rng.shuffle(picked)
        if len(picked) < self.k:
            raise InputError(f"task {self.task}: only {len(picked)} shot(s) available for query {query.id!r}, "
                             f"{self.k} asked")
        return [self.pool[i] for i in picked]
