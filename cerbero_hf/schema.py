"""The one row shape every corpus uses (docs/architecture.md, "Data between stages").

A row is ``{"id": str, "messages": [{"role", "content"}], "source": str, "meta": str}``.
``meta`` is a JSON object serialised as a string, so that rows from different stages and
sources (Fauno, generated, OASST seeds) always concatenate; per-message facts live there as
lists parallel to ``messages`` (e.g. ``meta["nll"][i]``), never inside the text.

Rows removed by a filter go to the ``rejected`` config with two more columns, ``rule`` and ``reason``.

Message size limits (every stage that reads rows): a message longer than :data:`MAX_MESSAGE_CHARS`
characters is a rejected row (its reason gives the length and the limit), checked before any tokenisation;
a stage that tokenises single messages rejects those over :data:`MAX_MESSAGE_TOKENS` tokens. Both bound
the work one row can cause: 32,768 characters is 8,192 tokens (the training ``max_length``) at about four
characters per token.
"""

from __future__ import annotations

import json
from typing import Any

from cerbero_hf.errors import InputError

ROLES = ("user", "assistant", "system")
COLUMNS = ("id", "messages", "source", "meta")
REJECTED_COLUMNS = COLUMNS + ("rule", "reason")
MAX_MESSAGE_CHARS = 32_768  # longest accepted message, in characters (checked before tokenising)
MAX_MESSAGE_TOKENS = 8_192  # longest accepted message, in tokens, where a stage tokenises messages


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


def to_dataset(rows: list[dict], feats):
    """``rows`` as a ``datasets.Dataset`` of schema ``feats``; no rows give an empty one with the schema
    (``Dataset.from_list([], features=...)`` raises "Keys mismatch")."""
    from datasets import Dataset

    if rows:
        return Dataset.from_list(rows, features=feats)
    return Dataset.from_dict({key: [] for key in feats}, features=feats)


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


def _kind(value: Any) -> str:
    from cerbero_hf.io import value_kind

    return value_kind(value) or "null"


def message_problem(i: int, m: Any, *, roles: tuple[str, ...] | None = ROLES,
                    max_chars: int | None = MAX_MESSAGE_CHARS) -> str | None:
    """Why message ``i`` is unusable (a reason naming it), or None.

    ``roles=None`` accepts any non-empty role string (for stages that map their own role aliases);
    ``max_chars=None`` lifts the size limit.
    """
    if not isinstance(m, dict):
        return f"message {i} is {_kind(m)}, not an object"
    role, content = m.get("role"), m.get("content")
    if role is None:
        return f"message {i} has no role"
    if not isinstance(role, str):
        return f"message {i} role is {_kind(role)}, not a string"
    if roles is not None and role not in roles:
        return f"message {i} has role {role!r}, expected one of {', '.join(roles)}"
    if not role.strip():
        return f"message {i} has an empty role"
    if content is None:
        return f"message {i} has no content"
    if not isinstance(content, str):
        return f"message {i} content is {_kind(content)}, not a string"
    if max_chars is not None and len(content) > max_chars:
        return f"message {i} is {len(content):,} characters, over the limit of {max_chars:,}"
    return None


def messages_problem(msgs: Any, *, roles: tuple[str, ...] | None = ROLES,
                     max_chars: int | None = MAX_MESSAGE_CHARS) -> str | None:
    """Why a ``messages`` value is unusable (the first bad message), or None (see :func:`message_problem`)."""
    if msgs is None:
        return "missing value"
    if not isinstance(msgs, list):
        return f"must be a list, got {type(msgs).__name__}"
    for i, m in enumerate(msgs):
        problem = message_problem(i, m, roles=roles, max_chars=max_chars)
        if problem:
            return problem
    return None


def row_problem(row: dict, *, roles: tuple[str, ...] | None = ROLES,
                max_chars: int | None = MAX_MESSAGE_CHARS) -> tuple[str, str] | None:
    """Return ``(column, reason)`` for the first schema violation of ``row``, or None.

    Checks types (a list or number where a string belongs is a violation, never converted), roles
    (``roles=None``: any non-empty string) and the message size limit (``max_chars``, default
    :data:`MAX_MESSAGE_CHARS`).
    """
    for col in ("id", "messages"):
        if col not in row or row[col] is None:
            return col, "missing value"
    if not isinstance(row["id"], str) or not row["id"]:
        return "id", "must be a non-empty string"
    problem = messages_problem(row["messages"], roles=roles, max_chars=max_chars)
    if problem:
        return "messages", problem
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


def validate(rows, file: str | None = None, **checks: Any) -> None:
    """Raise :class:`InputError` naming the first bad row (0-based) and field (``checks``: see :func:`row_problem`)."""
    for i, row in enumerate(rows):
        problem = row_problem(row, **checks)
        if problem:
            raise InputError(problem[1], file=file, row=i, column=problem[0])
