"""The one row shape every corpus uses (DESIGN.md "Data shape").

A row is ``{"id": str, "messages": [{"role", "content"}], "source": str, "meta": str}``.
``meta`` is a JSON object serialised as a string, so that rows from different stages and
sources (Fauno, generated, OASST seeds) always concatenate; per-message facts live there as
lists parallel to ``messages`` (e.g. ``meta["nll"][i]``), never inside the text.

Rows removed by a filter go to the ``rejected`` config with two more columns, ``rule`` and ``reason``.
"""

from __future__ import annotations

import json
from typing import Any

from cerbero_hf.errors import InputError

ROLES = ("user", "assistant", "system")
COLUMNS = ("id", "messages", "source", "meta")
REJECTED_COLUMNS = COLUMNS + ("rule", "reason")


def features():
    """The corpus schema as ``datasets.Features`` (imported lazily)."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "messages": List({"role": Value("string"), "content": Value("string")}),
            "source": Value("string"),
            "meta": Value("string"),
        }
    )


def rejected_features():
    from datasets import Value

    f = features()
    f["rule"] = Value("string")
    f["reason"] = Value("string")
    return f


def make_row(id: str, messages: list[dict], source: str = "", meta: dict | None = None) -> dict:
    return {"id": str(id), "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "source": source, "meta": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True)}


def get_meta(row: dict) -> dict:
    raw = row.get("meta")
    if not raw:
        return {}
    return raw if isinstance(raw, dict) else json.loads(raw)


def dump_meta(meta: dict) -> str:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True)


def update_meta(row: dict, **fields: Any) -> str:
    meta = get_meta(row)
    meta.update(fields)
    return dump_meta(meta)


def row_problem(row: dict) -> tuple[str, str] | None:
    """Return ``(column, reason)`` for the first schema violation of ``row``, or None."""
    for col in ("id", "messages"):
        if col not in row or row[col] is None:
            return col, "missing value"
    if not isinstance(row["id"], str) or not row["id"]:
        return "id", "must be a non-empty string"
    msgs = row["messages"]
    if not isinstance(msgs, list):
        return "messages", f"must be a list, got {type(msgs).__name__}"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return "messages", f"message {i} is not an object"
        if m.get("role") not in ROLES:
            return "messages", f"message {i} has role {m.get('role')!r}, expected one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return "messages", f"message {i} content is not a string"
    if not isinstance(row.get("source", ""), (str, type(None))):
        return "source", "must be a string"
    meta = row.get("meta")
    if meta not in (None, "") and not isinstance(meta, dict):
        try:
            if not isinstance(json.loads(meta), dict):
                return "meta", "must be a JSON object"
        except (TypeError, ValueError):
            return "meta", "is not valid JSON"
    return None


def validate(rows, file: str | None = None) -> None:
    """Raise :class:`InputError` naming the first bad row (0-based) and field."""
    for i, row in enumerate(rows):
        problem = row_problem(row)
        if problem:
            raise InputError(problem[1], file=file, row=i, column=problem[0])
