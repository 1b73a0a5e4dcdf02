"""``system_prompt``: drop the Fauno header and every other system message (paper §3.1)."""

from __future__ import annotations

from cerbero_hf.stages.refine.rules.base import Formatter


class SystemPrompts(Formatter):
    """Remove every system message, the Fauno header included.

    Input/output column: ``messages``; ``meta["refine"]["system_prompt"]``: messages removed.
    Alone: ``ds.map(SystemPrompts())``.
    """

    name = "system_prompt"
    changes = "system messages (headers) removed"

    def format(self, messages: list[dict]) -> tuple[list[dict], int]:
        kept = [m for m in messages if m["role"] != "system"]
        return kept, len(messages) - len(kept)
