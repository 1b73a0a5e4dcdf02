"""``turn_order``: trim trailing user turns, then require strict user -> assistant alternation (paper §3.1)."""

from __future__ import annotations

from cerbero_hf.schema import MAX_MESSAGE_CHARS
from cerbero_hf.stages.refine.rules.base import CHAT_ROLES, Filter, Formatter


class TrailingUserTurns(Formatter):
    """Trim trailing user turns: Baize's empty trailing tag silently, a non-empty one counted as changed.

    Input/output column: ``messages``; ``meta["refine"]["turn_order"]``: non-empty user turns trimmed.
    Run it after :class:`~cerbero_hf.stages.refine.rules.system_prompts.SystemPrompts`, before :class:`TurnOrder`.
    Alone: ``ds.map(TrailingUserTurns())``.

    Examples:
        >>> from cerbero_hf import TrailingUserTurns
        >>> TrailingUserTurns().format([{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Ciao!"},
        ...                             {"role": "user", "content": ""}])  # an empty trailing tag: trimmed, not counted
        ([{'role': 'user', 'content': 'Ciao?'}, {'role': 'assistant', 'content': 'Ciao!'}], 0)
    """

    name = "turn_order"
    changes = "non-empty trailing user turns trimmed"

    def format(self, messages: list[dict]) -> tuple[list[dict], int]:
        messages, changed = list(messages), 0
        while messages and messages[-1]["role"] == "user":
            changed += bool(messages.pop()["content"].strip())
        return messages, changed


class TurnOrder(Filter):
    """Strict user -> assistant alternation starting with the user, no empty turn, at least one exchange, and no
    message over :data:`~cerbero_hf.schema.MAX_MESSAGE_CHARS` characters (a transcript is split into messages only
    by :class:`~cerbero_hf.stages.refine.rules.tag_repair.TagRepair`, after the schema check).

    A trailing user turn is allowed here: :class:`TrailingUserTurns` (run before) trims it. Input column:
    ``messages``. Output: keep or ``(False, reason)``. Alone: ``ds.filter(TurnOrder())``.

    Examples:
        >>> from cerbero_hf import TurnOrder
        >>> TurnOrder().filter({"messages": [{"role": "assistant", "content": "Ciao!"}]})
        (False, 'message 0 is assistant, expected user')
    """

    name = "turn_order"

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        messages = row["messages"]
        for i, m in enumerate(messages):
            expected = CHAT_ROLES[i % 2]
            if m["role"] != expected:
                return False, f"message {i} is {m['role']}, expected {expected}"
            if not m["content"].strip():
                return False, f"message {i} ({m['role']}) is empty"
            if len(m["content"]) > MAX_MESSAGE_CHARS:
                return False, f"message {i} is {len(m['content']):,} characters, over the limit of {MAX_MESSAGE_CHARS:,}"
        if len(messages) < 2:
            return False, "no complete user -> assistant exchange"
        return True
