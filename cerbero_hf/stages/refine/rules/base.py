"""The two kinds of refinement rule, datatrove-style: formatters rewrite rows, filters keep or reject them.

Rows are dicts in the row shape of :mod:`cerbero_hf.schema` (``id``, ``messages``, ``source``, ``meta``).
Inside the :class:`~cerbero_hf.stages.refine.refiner.Refiner`, ``meta`` is a dict, the transcript of a
Fauno row is under ``transcript`` and ``notes`` carries facts from one rule to a later one (never written).

* :class:`Formatter`: ``format(messages) -> (messages, n_changed)``; ``format_rows(rows)`` rewrites rows in
  place and returns ``n_changed`` per row (override it for rules that work on a batch, or read more than
  ``messages``). Alone: ``ds.map(rule)`` (``ds.map(rule, batched=True)`` when ``batched``) writes
  ``meta["refine"][rule.name] = n_changed``.
* :class:`Filter`: ``filter(row) -> True | (False, reason)``. Alone: ``ds.filter(rule)``.
* :class:`SequentialFilter`: a filter that must see the rows in corpus order in one process (state such as
  the messages already seen). ``key(row)`` runs in the parallel workers, ``decide(key)`` (``decide_many(keys)``
  for a chunk of rows) in order in the main process; the Refiner runs these after every other rule.

A rule's ``name`` is its row in the refinement report; a formatter and a filter may share one (the
trailing-turn trim and the turn-order check are both ``turn_order``).
"""

from __future__ import annotations

from typing import Any

from cerbero_hf.schema import dump_meta, get_meta

CHAT_ROLES = ("user", "assistant")


class Formatter:
    """Rewrites conversations. Subclasses set ``name``, ``changes`` and implement :meth:`format`.

    Attributes:
        name: report row and ``meta["refine"]`` key.
        changes: what ``n_changed`` counts, in words (the report's footnote).
        batched: True when the rule works on many rows at once (use ``ds.map(rule, batched=True)``).
    """

    name = "formatter"
    changes = "messages changed"
    batched = False

    def format(self, messages: list[dict]) -> tuple[list[dict], int]:
        """One conversation's messages rewritten, and how many messages changed."""
        raise NotImplementedError

    def format_rows(self, rows: list[dict]) -> list[int]:
        """Rewrite ``rows`` in place (``messages``, and ``meta`` when the rule records facts); n changed per row."""
        counts = []
        for row in rows:
            row["messages"], n = self.format(row["messages"])
            counts.append(n)
        return counts

    def __call__(self, row_or_batch: dict) -> dict:
        """For ``Dataset.map``: the updated ``messages`` and ``meta`` columns."""
        if self.batched:
            size = len(next(iter(row_or_batch.values()))) if row_or_batch else 0
            rows = [{k: v[i] for k, v in row_or_batch.items()} for i in range(size)]
        else:
            rows = [dict(row_or_batch)]
        for row in rows:
            row["meta"] = get_meta(row)
        for row, n in zip(rows, self.format_rows(rows)):
            row["meta"].setdefault("refine", {})[self.name] = n
        messages = [row.get("messages") or [] for row in rows]
        metas = [dump_meta(row["meta"]) for row in rows]
        if self.batched:
            return {"messages": messages, "meta": metas}
        return {"messages": messages[0], "meta": metas[0]}


class Filter:
    """Keeps or rejects conversations. Subclasses set ``name`` and implement :meth:`filter`."""

    name = "filter"
    sequential = False

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        """``True`` to keep ``row``, ``(False, reason)`` to reject it."""
        raise NotImplementedError

    def keep(self, row: dict) -> bool:
        """The plain bool that ``Dataset.filter`` wants."""
        return self.filter(row) is True

    def __call__(self, row: dict) -> bool:
        return self.keep(row)


class SequentialFilter(Filter):
    """A filter that keeps state across rows: ``key`` in parallel, ``decide`` in corpus order, one process.

    ``key(row)`` must return a list of integers (stored in an ``int64`` list column between the two passes).
    Alone, ``ds.filter(rule)`` without ``num_proc`` does both; :meth:`reset` forgets the state.
    """

    sequential = True

    def key(self, row: dict) -> list[int]:
        raise NotImplementedError

    def decide(self, key: list[int]) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def decide_many(self, keys: list[list[int]]) -> list:
        """:meth:`decide` on the keys of many rows, in corpus order (the Refiner calls it once per chunk)."""
        return [self.decide(key) for key in keys]

    def reset(self) -> None:
        """Forget the rows seen so far (the Refiner calls it at the start of each run)."""

    def filter(self, row: dict) -> bool | tuple[bool, str]:
        return self.decide(self.key(row))


def verdict(rule: Filter, result: Any) -> str | None:
    """``None`` when a filter's ``result`` keeps the row, else the reason (the rule's name when it gave none)."""
    if result is True:
        return None
    if isinstance(result, tuple):
        if result[0]:
            return None
        return str(result[1]) if len(result) > 1 and result[1] else rule.name
    return None if result else rule.name


def report_names(rules: list) -> list[str]:
    """The report's rows: each rule name once, in the order of ``rules``."""
    return list(dict.fromkeys(rule.name for rule in rules))
