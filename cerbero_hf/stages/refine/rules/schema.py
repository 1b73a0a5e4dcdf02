"""``schema``: reject rows the reader could not bring into the row shape (malformed input is data, not a crash)."""

from __future__ import annotations

from cerbero_hf.stages.refine.rules.base import Filter


class Schema(Filter):
    """Reject a row whose input was malformed: ``messages`` not a list of ``{role, content}``, the transcript
    not a string, or ``meta`` not a JSON object.

    The Refiner's reader records the problem in ``row["problem"]`` (and keeps the raw value in ``meta``:
    ``raw_messages``, ``raw_meta`` or ``raw_text``, so nothing is lost); this rule turns it into a rejection.
    Input: ``problem``. Output: keep or ``(False, reason)``.

    Examples:
        >>> from cerbero_hf import Schema
        >>> Schema().filter({"problem": "messages is a string, not a list"})
        (False, 'messages is a string, not a list')
    """

    name = "schema"

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        problem = row.get("problem")
        return (False, problem) if problem else True
