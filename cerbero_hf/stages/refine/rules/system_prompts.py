"""``system_prompt``: drop the Fauno header and every other system message (paper §3.1)."""

from __future__ import annotations

from cerbero_hf.stages.refine.rules.base import Formatter


class SystemPrompts(Formatter):
    """Remove every system message, the Fauno header included.

    Input/output column: ``messages``; ``meta["refine"]["system_prompt"]``: messages removed.
    Alone: ``ds.map(SystemPrompts())``.

    Examples:
        >>> from cerbero_hf import SystemPrompts
        >>> SystemPrompts().format([{"role": "system", "content": "La conversazione tra umano e assistente AI."},
        ...                         {"role": "user", "content": "Ciao?"}])  # (messages, how many removed)
        ([{'role': 'user', 'content': 'Ciao?'}], 1)
    """

    name = "system_prompt"
    changes = "system messages (headers) removed"

    def format(self, messages: list[dict]) -> tuple[list[dict], int]:
        kept = [m for m in messages if m["role"] != "system"]
        return kept, len(messages) - len(kept)
