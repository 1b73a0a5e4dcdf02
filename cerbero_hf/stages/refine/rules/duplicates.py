"""``duplicates``: remove conversations whose messages mostly occurred in earlier kept ones (paper §3.1)."""

from __future__ import annotations

import unicodedata

from cerbero_hf.stages.refine.rules.base import CHAT_ROLES, SequentialFilter


def normalise(text: str) -> str:
    """The text compared for duplicates: Unicode NFC, stripped, whitespace collapsed; case kept."""
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


class DuplicateMajority(SequentialFilter):
    """Remove a conversation when more than ``threshold`` of its messages occurred in an earlier KEPT one.

    Order-aware, so the first copy of a repeated conversation survives. The rule keeps state: apply it in
    corpus order in one process (``Dataset.filter`` without ``num_proc``). Input column: ``messages``.
    Output: keep or ``(False, reason)``.

    Args:
        threshold: share of duplicate messages above which the conversation goes (0.5).
    """

    name = "duplicates"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.seen: set[int] = set()

    def reset(self) -> None:
        self.seen = set()

    def key(self, row: dict) -> list[int]:
        return message_hashes(row["messages"])

    def decide(self, hashes: list[int]) -> bool | tuple[bool, str]:
        """The rule on precomputed :func:`message_hashes`; kept conversations add theirs to the seen set."""
        dup = sum(h in self.seen for h in hashes)
        if hashes and dup / len(hashes) > self.threshold:
            return False, f"{dup} of {len(hashes)} messages already in earlier conversations"
        self.seen.update(hashes)
        return True
