"""``language``: per-sentence language check of each message, and what to do with foreign ones (paper §3.1).

:class:`LanguageCheck` (a batched formatter) flags, or drops, messages detected as English;
:class:`ForeignLanguage` (a filter) removes the conversations that action leaves without an exchange, or,
with ``drop-conversation``, every conversation holding a flagged message.
"""

from __future__ import annotations

from cerbero_hf.languages import LanguagePack
from cerbero_hf.schema import get_meta
from cerbero_hf.stages.refine.rules.base import Filter, Formatter

LANG_ACTIONS = ("flag", "drop-message", "drop-conversation")


def _check_action(action: str) -> None:
    if action not in LANG_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(LANG_ACTIONS)}, got {action!r}")


class LanguageCheck(Formatter):
    """Per-sentence language check of each message, batched (one Lingua call per batch).

    A message is foreign when more than half of its characters are in English sentences and it is not
    mostly code (:mod:`cerbero_hf.stages.refine.langid`). Every action writes ``meta["foreign_language"]``
    (a bool per message) when a message is foreign; ``drop-message`` also removes each foreign message with
    its partner turn so alternation holds; ``drop-conversation`` is decided by :class:`ForeignLanguage`.
    ``meta["refine"]["language"]``: messages flagged (or dropped). Alone:
    ``ds.map(LanguageCheck("it"), batched=True)``.

    Args:
        language: pack code or :class:`LanguagePack`.
        action: ``flag`` (the paper's choice: nothing removed), ``drop-message`` or ``drop-conversation``.
        threshold: English share above which a message is foreign (0.5).
        use_lingua: False: first pass only (uncertain sentences count as the pack language).

    Examples:
        >>> from cerbero_hf import LanguageCheck
        >>> LanguageCheck("it", use_lingua=False).verdicts([[{"role": "user", "content": "Come si fa una torta di mele?"},
        ...     {"role": "assistant", "content": "You need apples, flour and sugar, then bake it."}]])
        [[False, True]]
    """

    name = "language"
    changes = "messages flagged (or dropped, with `drop-message`) as another language"
    batched = True

    def __init__(self, language: LanguagePack | str = "it", action: str = "flag", threshold: float = 0.5,
                 use_lingua: bool = True):
        _check_action(action)
        self.language, self.action, self.threshold, self.use_lingua = language, action, threshold, use_lingua

    def verdicts(self, conversations: list[list[dict]]) -> list[list[bool]]:
        """Foreign flag of every message of every conversation (one Lingua call for the batch)."""
        from cerbero_hf.stages.refine.langid import LanguageChecker

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

    def format_rows(self, rows: list[dict]) -> list[int]:
        counts = []
        for row, flags in zip(rows, self.verdicts([row["messages"] for row in rows])):
            row["messages"], n = self.apply_flags(row["messages"], flags)
            if any(flags):
                row["meta"]["foreign_language"] = flags
            row.setdefault("notes", {})["foreign_language"] = flags
            counts.append(n)
        return counts


class ForeignLanguage(Filter):
    """Remove what the language action asks: with ``drop-conversation`` every conversation holding a foreign
    message; with any action a conversation left without a complete exchange (``drop-message``).

    Run it right after :class:`LanguageCheck` (it reads the flags that rule left in the row's ``notes``, or
    ``meta["foreign_language"]`` alone). Input columns: ``messages``, ``meta``. Output: keep or
    ``(False, reason)``.

    Args:
        action: the :class:`LanguageCheck` action.

    Examples:
        >>> from cerbero_hf import ForeignLanguage
        >>> row = {"messages": [{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Hi!"}],
        ...        "meta": {"foreign_language": [False, True]}}
        >>> ForeignLanguage("flag").filter(row), ForeignLanguage("drop-conversation").filter(row)
        (True, (False, '1 of 2 messages detected as another language'))
    """

    name = "language"

    def __init__(self, action: str = "flag"):
        _check_action(action)
        self.action = action

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        notes = row.get("notes") or {}
        flags = notes["foreign_language"] if "foreign_language" in notes else \
            get_meta(row).get("foreign_language") or []
        if self.action == "drop-conversation" and any(flags):
            return False, f"{sum(flags)} of {len(flags)} messages detected as another language"
        if len(row["messages"]) < 2:
            return False, "no exchange left after dropping foreign messages"
        return True
