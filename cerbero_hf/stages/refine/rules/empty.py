"""``empty``: remove conversations without any user or assistant text (paper §3.1)."""

from __future__ import annotations

from cerbero_hf.stages.refine.rules.base import CHAT_ROLES, Filter


class EmptyConversation(Filter):
    """Remove conversations with no user or assistant message holding text.

    Input column: ``messages``. Output: keep or ``(False, reason)``. Alone: ``ds.filter(EmptyConversation())``.

    Examples:
        >>> from cerbero_hf import EmptyConversation
        >>> EmptyConversation().filter({"messages": [{"role": "user", "content": " "}]})
        (False, 'no user or assistant text (1 messages)')
    """

    name = "empty"

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        if any(m["role"] in CHAT_ROLES and m["content"].strip() for m in row["messages"]):
            return True
        return False, f"no user or assistant text ({len(row['messages'])} messages)"
