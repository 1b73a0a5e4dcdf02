"""``duplicates``: remove conversations whose messages mostly occurred in earlier kept ones (paper §3.1).

The rule remembers the hash of every message of every kept conversation: the only state of a refine run that
grows with the corpus. :class:`HashStore` keeps it in sorted numpy arrays, 8 bytes per message (a Python set of
ints takes about 70), so 10 million conversations of 5 messages hold 400 MB, not 3.5 GB; the check stays exact.
"""

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


class HashStore:
    """A growing set of distinct int64 values in sorted numpy arrays ("runs"), 8 bytes per value.

    :meth:`add` appends a sorted run and merges it with the runs before it while they are not larger (a binary
    counter: about log2(n) runs), but never into a run over ``max_run`` values, so a merge never needs more than
    ``2 * max_run * 8`` bytes of extra memory. :meth:`contains` looks many values up at once.
    """

    def __init__(self, max_run: int = 1 << 20):
        self.runs: list = []
        self.max_run = max_run

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def contains(self, values):
        """A bool array: which of ``values`` (int64) are in the store."""
        import numpy as np

        values = np.asarray(values, dtype=np.int64)
        found = np.zeros(len(values), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[at] == values
        return found

    def add(self, values) -> None:
        """Add ``values``: distinct, and none of them in the store already."""
        import numpy as np

        run = np.sort(np.asarray(values, dtype=np.int64))
        while self.runs and len(self.runs[-1]) <= len(run) and len(self.runs[-1]) + len(run) <= self.max_run:
            run = np.concatenate((self.runs.pop(), run))
            run.sort(kind="stable")  # two sorted halves: a linear merge
        if len(run):
            self.runs.append(run)


class DuplicateMajority(SequentialFilter):
    """Remove a conversation when more than ``threshold`` of its messages occurred in an earlier KEPT one.

    Order-aware, so the first copy of a repeated conversation survives. The rule keeps state: apply it in
    corpus order in one process (``Dataset.filter`` without ``num_proc``). Input column: ``messages``.
    Output: keep or ``(False, reason)``.

    Args:
        threshold: share of duplicate messages above which the conversation goes (0.5).
        flush: hashes held in a Python set before they move to the compact :class:`HashStore`.

    Examples:
        >>> from cerbero_hf import DuplicateMajority
        >>> rule = DuplicateMajority()
        >>> row = {"messages": [{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Ciao!"}]}
        >>> rule.filter(row), rule.filter(row)  # the first copy is kept, the second goes
        (True, (False, '2 of 2 messages already in earlier conversations'))
    """

    name = "duplicates"

    def __init__(self, threshold: float = 0.5, flush: int = 1 << 16):
        self.threshold, self.flush = threshold, flush
        self.reset()

    def reset(self) -> None:
        self.store, self.recent = HashStore(), set[int]()

    def key(self, row: dict) -> list[int]:
        return message_hashes(row["messages"])

    def _decide(self, hashes: list[int], stored: list[bool]) -> bool | tuple[bool, str]:
        seen = [s or h in self.recent for h, s in zip(hashes, stored)]
        dup = sum(seen)
        if hashes and dup / len(hashes) > self.threshold:
            return False, f"{dup} of {len(hashes)} messages already in earlier conversations"
        self.recent.update(h for h, s in zip(hashes, seen) if not s)
        return True

    def _flush(self) -> None:
        if len(self.recent) >= self.flush:
            self.store.add(list(self.recent))
            self.recent = set()

    def decide(self, hashes: list[int]) -> bool | tuple[bool, str]:
        """The rule on precomputed :func:`message_hashes`; kept conversations add theirs to the seen set."""
        self._flush()
        return self._decide(hashes, self.store.contains(hashes).tolist())

    def decide_many(self, keys: list[list[int]]) -> list:
        """:meth:`decide` on many conversations in order, with one look-up in the store for all of them."""
        self._flush()
        stored = self.store.contains([h for hashes in keys for h in hashes]).tolist()
        out, at = [], 0
        for hashes in keys:
            out.append(self._decide(hashes, stored[at:at + len(hashes)]))
            at += len(hashes)
        return out
