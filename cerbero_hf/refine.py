"""Fauno refinement (METHOD.md §4) as small rules in datatrove's filter style, and the :class:`Refiner`.

Every rule is a small class with typed keyword arguments, usable alone on a corpus in the row shape
of ``schema.py`` (``id, messages, source, meta``):

=====================  ======================================  ==============================================
rule (report name)     use alone                               METHOD.md
=====================  ======================================  ==============================================
``TagRepair``          ``ds.map(TagRepair("it", "input"))``    step 1, D15: transcript text -> messages
``EmptyConversation``  ``ds.filter(EmptyConversation())``      step 2: no user/assistant text
``SystemPrompts``      ``ds.map(SystemPrompts())``             step 5, D20: drop header / system messages
``TurnOrder``          ``ds.map(t).filter(t.keep)``            step 3, D16: strict user -> assistant
``LanguageCheck``      ``ds.map(LanguageCheck("it"), batched)``  step 5, D18-D19: flag English messages
``DuplicateMajority``  ``ds.filter(DuplicateMajority())``      step 4, D17: > 50 % already-seen messages
=====================  ======================================  ==============================================

A filter's ``filter(row)`` returns ``True`` or ``(False, "reason")``; ``rule.keep(row)`` (and ``rule(row)``,
except for ``TurnOrder`` whose call trims) is the plain bool that ``Dataset.filter`` wants. A map rule's ``apply(messages)`` returns ``(messages, n_changed)``; ``rule(row)``
returns the updated ``messages`` and ``meta`` (``meta["refine"][rule] = n_changed``).
``DuplicateMajority`` is sequential (first kept copy wins): use it without ``num_proc``.

:class:`Refiner` (in ``refiner.py``) runs them all, sends removed rows to a ``rejected`` config with ``rule``
and ``reason``, and writes a Hub-layout folder with a report.
"""

from __future__ import annotations

import unicodedata

from cerbero_hf.languages import LanguagePack, load_language
from cerbero_hf.schema import dump_meta, get_meta

CHAT_ROLES = ("user", "assistant")
LANG_ACTIONS = ("flag", "drop-message", "drop-conversation")


def _with_count(row: dict, name: str, messages: list[dict], n: int) -> dict:
    meta = get_meta(row)
    meta.setdefault("refine", {})[name] = n
    return {"messages": messages, "meta": dump_meta(meta)}


class FilterRule:
    """Base of keep-or-reason rules: ``filter(row) -> True | (False, reason)``; ``rule(row) -> bool``."""

    name = "filter"

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def keep(self, row: dict) -> bool:
        """The plain bool that ``Dataset.filter`` wants."""
        return self.filter(row) is True

    def __call__(self, row: dict) -> bool:
        return self.keep(row)


class MapRule:
    """Base of rewriting rules: ``apply(messages) -> (messages, n_changed)``; ``rule(row)`` for ``Dataset.map``."""

    name = "map"

    def apply(self, messages: list[dict]) -> tuple[list[dict], int]:
        raise NotImplementedError

    def __call__(self, row: dict) -> dict:
        messages, n = self.apply(row["messages"])
        return _with_count(row, self.name, messages, n)


class TagRepair:
    """Parse a Fauno transcript column into ``messages``, repairing broken role tags (METHOD.md §4 step 1, D15).

    Input column: ``text_column`` (a transcript string). Output columns: ``messages`` (the header becomes a
    system message, removed later by :class:`SystemPrompts`), ``meta`` (``refine.tag_repair``: tags repaired).

    Args:
        language: pack code or :class:`LanguagePack` (tags, header, translated tag words).
        text_column: the transcript column.
    """

    name = "tag_repair"

    def __init__(self, language: LanguagePack | str = "it", text_column: str = "input"):
        self.pack, self.text_column = load_language(language), text_column

    def apply(self, text: str) -> tuple[list[dict], int]:
        from cerbero_hf.transcript import parse_fauno

        return parse_fauno(text, self.pack)

    def __call__(self, row: dict) -> dict:
        messages, n = self.apply(row[self.text_column])
        return _with_count(row, self.name, messages, n)


class EmptyConversation(FilterRule):
    """Remove conversations with no user or assistant message holding text (METHOD.md §4 step 2).

    Input columns: ``messages``. Output: keep or ``(False, reason)``.
    """

    name = "empty"

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        if any(m["role"] in CHAT_ROLES and m["content"].strip() for m in row["messages"]):
            return True
        return False, f"no user or assistant text ({len(row['messages'])} messages)"


class SystemPrompts(MapRule):
    """Remove every system message, the Fauno header included (METHOD.md §4 step 5, D20).

    Input/output column: ``messages``; ``meta["refine"]["system_prompt"]``: messages removed.
    """

    name = "system_prompt"

    def apply(self, messages: list[dict]) -> tuple[list[dict], int]:
        kept = [m for m in messages if m["role"] != "system"]
        return kept, len(messages) - len(kept)


class TurnOrder(MapRule, FilterRule):
    """Strict user -> assistant alternation starting with the user (METHOD.md §4 step 3, D16).

    ``apply`` trims trailing user turns: Baize's empty trailing tag silently, a non-empty one counted as a
    changed message. ``filter`` then requires alternation, no empty turn and at least one exchange.
    Run it after :class:`SystemPrompts`. Input/output column: ``messages``.
    """

    name = "turn_order"

    def apply(self, messages: list[dict]) -> tuple[list[dict], int]:
        messages, changed = list(messages), 0
        while messages and messages[-1]["role"] == "user":
            changed += bool(messages.pop()["content"].strip())
        return messages, changed

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        messages = row["messages"]
        for i, m in enumerate(messages):
            expected = CHAT_ROLES[i % 2]
            if m["role"] != expected:
                return False, f"message {i} is {m['role']}, expected {expected}"
            if not m["content"].strip():
                return False, f"message {i} ({m['role']}) is empty"
        if len(messages) < 2:
            return False, "no complete user -> assistant exchange"
        return True

    __call__ = MapRule.__call__


def normalise(text: str) -> str:
    """D17 normalisation: Unicode NFC, strip, collapse whitespace; case kept."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def message_hashes(messages: list[dict]) -> list[int]:
    """xxhash64 of each user/assistant message's normalised text (the header is never hashed).

    Returned as signed 64-bit integers (the same 64 bits), which Arrow stores as ``int64``.
    """
    import xxhash

    out = []
    for m in messages:
        if m["role"] in CHAT_ROLES:
            h = xxhash.xxh64_intdigest(normalise(m["content"]).encode("utf-8"))
            out.append(h - (1 << 64) if h >> 63 else h)
    return out


class DuplicateMajority(FilterRule):
    """Remove a conversation when more than ``threshold`` of its messages occurred in an earlier KEPT one.

    METHOD.md §4 step 4, D17: order-aware, so the first copy of a repeated conversation survives. The
    rule keeps state: apply it in corpus order in one process (``Dataset.filter`` without ``num_proc``).
    Input columns: ``messages``. Output: keep or ``(False, reason)``.

    Args:
        threshold: share of duplicate messages above which the conversation goes (0.5).
    """

    name = "duplicates"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.seen: set[int] = set()

    def decide(self, hashes: list[int]) -> bool | tuple[bool, str]:
        """The rule on precomputed :func:`message_hashes`; kept conversations add theirs to the seen set."""
        dup = sum(h in self.seen for h in hashes)
        if hashes and dup / len(hashes) > self.threshold:
            return False, f"{dup} of {len(hashes)} messages already in earlier conversations"
        self.seen.update(hashes)
        return True

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        return self.decide(message_hashes(row["messages"]))


class LanguageCheck:
    """Per-sentence language check of each message (METHOD.md §4 step 5, D18-D19), batched.

    A message is foreign when more than half of its characters are in English sentences and it is not
    mostly code (:mod:`cerbero_hf.langid`). Actions: ``flag`` (default, D19) writes
    ``meta["foreign_language"]`` (a bool per message); ``drop-message`` removes each foreign message with
    its partner turn so alternation holds; ``drop-conversation`` is decided by the :class:`Refiner`
    (here it only flags). Use: ``ds.map(LanguageCheck("it"), batched=True)``.

    Args:
        language: pack code or :class:`LanguagePack`.
        action: ``flag``, ``drop-message`` or ``drop-conversation``.
        threshold: English share above which a message is foreign (0.5).
        use_lingua: False: first pass only (uncertain sentences count as the pack language).
    """

    name = "language"

    def __init__(self, language: LanguagePack | str = "it", action: str = "flag", threshold: float = 0.5,
                 use_lingua: bool = True):
        if action not in LANG_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(LANG_ACTIONS)}, got {action!r}")
        self.language, self.action, self.threshold, self.use_lingua = language, action, threshold, use_lingua

    def verdicts(self, conversations: list[list[dict]]) -> list[list[bool]]:
        """Foreign flag of every message of every conversation (one Lingua call for the batch)."""
        from cerbero_hf.langid import LanguageChecker

        checker = LanguageChecker(self.language, threshold=self.threshold, use_lingua=self.use_lingua)
        texts = [m["content"] for msgs in conversations for m in msgs]
        flat = iter(v.foreign for v in checker.check(texts))
        return [[next(flat) for _ in msgs] for msgs in conversations]

    def apply_flags(self, messages: list[dict], flags: list[bool]) -> tuple[list[dict], int]:
        """Apply the action to one conversation; returns ``(messages, n_messages_flagged_or_dropped)``."""
        if self.action != "drop-message" or not any(flags):
            return messages, sum(flags)
        kept = []
        for i in range(0, len(messages), 2):
            pair, pair_flags = messages[i:i + 2], flags[i:i + 2]
            if not any(pair_flags):
                kept.extend(pair)
        return kept, len(messages) - len(kept)

    def __call__(self, batch: dict) -> dict:
        all_flags = self.verdicts(batch["messages"])
        out_messages, out_meta = [], []
        for messages, meta, flags in zip(batch["messages"], batch["meta"], all_flags):
            meta = get_meta({"meta": meta})
            new, n = self.apply_flags(messages, flags)
            if any(flags):
                meta["foreign_language"] = flags
            meta.setdefault("refine", {})[self.name] = n
            out_messages.append(new)
            out_meta.append(dump_meta(meta))
        return {"messages": out_messages, "meta": out_meta}


def __getattr__(name: str):
    """``Refiner``, ``Report`` and ``refine()`` live in :mod:`cerbero_hf.refiner`; re-exported lazily here."""
    if name in ("Refiner", "Report", "refine"):
        from cerbero_hf import refiner

        return getattr(refiner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
