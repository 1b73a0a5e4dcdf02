"""``tag_repair``: a Fauno transcript column -> ``messages``, broken role tags repaired (paper §3.1)."""

from __future__ import annotations

from cerbero_hf.languages import LanguagePack, load_language
from cerbero_hf.stages.refine.rules.base import Formatter


class TagRepair(Formatter):
    """Parse a Fauno transcript into ``messages``, repairing broken role tags (``[| Umano |]``, ``[IA]``, ...).

    Input column: ``text_column`` (a transcript string; rows where it is missing keep their ``messages``
    and count 0). Output columns: ``messages`` (the header becomes a system message, removed later by
    :class:`~cerbero_hf.stages.refine.rules.system_prompts.SystemPrompts`), ``meta["refine"]["tag_repair"]``:
    tags repaired. Alone: ``ds.map(TagRepair("it", text_column="input"))``.

    Args:
        language: pack code or :class:`LanguagePack` (tags, header, translated tag words).
        text_column: the transcript column.

    Examples:
        >>> from cerbero_hf import TagRepair
        >>> TagRepair("it").parse("[|Umano|] Ciao, come stai? [| AI |] Bene, grazie!")  # (messages, tags repaired)
        ([{'role': 'user', 'content': 'Ciao, come stai?'}, {'role': 'assistant', 'content': 'Bene, grazie!'}], 1)
    """

    name = "tag_repair"
    changes = "role tags repaired"

    def __init__(self, language: LanguagePack | str = "it", text_column: str = "input"):
        self.pack, self.text_column = load_language(language), text_column

    def parse(self, text: str) -> tuple[list[dict], int]:
        """``(messages, n_tags_repaired)`` of one transcript."""
        from cerbero_hf.transcript import parse_fauno

        return parse_fauno(text, self.pack)

    def format_rows(self, rows: list[dict]) -> list[int]:
        counts = []
        for row in rows:
            text = row.get(self.text_column)
            if isinstance(text, str):
                row["messages"], n = self.parse(text)
            else:
                row["messages"], n = row.get("messages") or [], 0
            counts.append(n)
        return counts
