"""OASST message tables -> trees of one language -> root-to-leaf seed conversations (paper §3.2).

OpenAssistant publishes one row per message (``message_id``, ``parent_id``, ``message_tree_id``, ``role`` prompter/assistant,
``lang``, ``text``, ...). Every path from a tree's root to one of its leaves is a seed conversation (the paper: 111 Italian
trees, 554 messages, 358 paths), and every message of the selected trees seeds the diversity store (D10).

Which messages are kept, and why the others are not (each dropped message is a ``rejected`` row):

* ``language``: ``lang`` differs from the language code (case-insensitive). This drops whole trees
  of other languages and single messages of another language inside a tree alike;
* ``deleted``: ``deleted`` is true (when the column exists);
* ``invalid``: a value of the wrong type (a list or number where a string belongs, a ``deleted`` that is
  not a boolean or 0/1: never converted to text), empty text, an unknown role, a root that is not a prompter
  message, or a reply with the same role as its parent;
* ``too_long``: the text is longer than ``schema.MAX_MESSAGE_CHARS`` characters;
* ``orphan``: the parent is missing from the table or was dropped by a rule above; the descendants of a dropped
  message are orphans too (a path must start at a real root, so no subtree is promoted to a tree of its own).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from cerbero_hf.errors import InputError
from cerbero_hf.io import value_kind
from cerbero_hf.schema import MAX_MESSAGE_CHARS, make_row

SOURCE = "oasst"
ROLE_MAP = {"prompter": "user", "user": "user", "assistant": "assistant"}
REQUIRED = ("message_id", "parent_id", "role", "lang", "text")
# columns that must hold a string (ids may also be numbers); null is allowed except for text and role
STRING_COLUMNS = ("text", "role", "lang", "parent_id", "message_tree_id")


@dataclass
class SeedSet:
    """What :func:`build_seeds` returns: rows in the corpus schema (``schema.make_row``).

    Attributes:
        paths: one row per root-to-leaf path, id ``oasst-<leaf message id>``; meta holds ``tree_id``, ``message_ids``,
            ``path_index`` (the path's number within its tree), ``lang`` and ``origin`` (``"seed"`` for every message).
        messages: one row per kept message of the selected trees (the D10 store seed set), id
            the message id; meta holds ``tree_id`` and ``parent_id``.
        rejected: one row per dropped message, plus ``rule`` and ``reason``.
        trees: number of selected trees.
    """

    paths: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    trees: int = 0

    def counts(self) -> dict[str, int]:
        """Summary counts: trees, messages, paths and rejected messages per rule."""
        out = {"trees": self.trees, "messages": len(self.messages), "paths": len(self.paths)}
        out.update({f"rejected ({rule})": n for rule, n in sorted(Counter(r["rule"] for r in self.rejected).items())})
        return out


def _str_id(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _as_text(value: Any) -> str:
    """A kept value as text; a wrong-typed one (only in rejected rows) as its JSON, never its Python repr."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _id_text(value: Any) -> str | None:
    """An id for a rejected row's meta: null stays null, a wrong-typed value is kept as its JSON."""
    return _str_id(value) if value is None or isinstance(value, (str, int)) else _as_text(value)


def _message_row(msg: dict, meta: dict) -> dict:
    role = _as_text(msg.get("role"))
    return make_row(str(msg["message_id"]), [{"role": ROLE_MAP.get(role, role), "content": _as_text(msg.get("text"))}],
                    SOURCE, meta)


def _type_problem(msg: dict) -> str | None:
    """A reason when a column holds the wrong type (e.g. ``text`` given as a list), else None."""
    for col in STRING_COLUMNS:
        value = msg.get(col)
        if value is None or isinstance(value, str) or (col in ("parent_id", "message_tree_id")
                                                       and isinstance(value, int) and not isinstance(value, bool)):
            continue
        return f"{col} is {value_kind(value)}, not a string"
    deleted = msg.get("deleted")
    if deleted is not None and not isinstance(deleted, bool) and deleted not in (0, 1):
        return f"deleted is {value_kind(deleted)}, not a boolean"
    return None


def _check_columns(rows: list[dict]) -> None:
    if not rows:
        raise InputError("empty OASST table (0 rows)")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise InputError(f"not an OASST message table: missing column(s) {', '.join(missing)}", column=missing[0])
    seen: set[str] = set()
    for i, r in enumerate(rows):
        raw = r.get("message_id")
        if isinstance(raw, (bool, float, list, dict)):
            raise InputError(f"message_id is {value_kind(raw)}, not a string", row=i, column="message_id")
        mid = _str_id(raw)
        if mid is None:
            raise InputError("missing message_id", row=i, column="message_id")
        if mid in seen:
            raise InputError(f"duplicate message_id {mid!r}", row=i, column="message_id")
        seen.add(mid)


def _first_problem(msg: dict, parent: dict | None, code: str) -> tuple[str, str] | None:
    """Rule and reason that drop ``msg`` on its own (orphans are decided later), or None."""
    wrong = _type_problem(msg)
    if wrong:
        return "invalid", wrong
    lang = msg.get("lang") or ""
    if lang.lower() != code.lower():
        return "language", f"lang={lang!r}, not {code!r}"
    if msg.get("deleted") in (True, 1):
        return "deleted", "marked deleted in the source table"
    role = ROLE_MAP.get(str(msg.get("role")))
    if role is None:
        return "invalid", f"unknown role {msg.get('role')!r} (expected prompter or assistant)"
    text = msg.get("text") or ""
    if not text.strip():
        return "invalid", "empty text"
    if len(text) > MAX_MESSAGE_CHARS:
        return "too_long", f"text is {len(text):,} characters, over the limit of {MAX_MESSAGE_CHARS:,}"
    if parent is None and _str_id(msg.get("parent_id")) is None and role != "user":
        return "invalid", "tree root is not a prompter message"
    if parent is not None and ROLE_MAP.get(str(parent.get("role"))) == role:
        return "invalid", f"same role as its parent {parent['message_id']!r}"
    return None


def build_seeds(table: Iterable[dict], language: str = "it") -> SeedSet:
    """Build the trees of one language and emit every root-to-leaf path as a seed conversation.

    Args:
        table: OASST message rows (a ``datasets.Dataset`` or any iterable of dicts). Required columns: ``message_id``,
            ``parent_id``, ``role``, ``lang``, ``text``; optional: ``message_tree_id`` (default: the root's id), ``deleted``.
        language: the OASST ``lang`` code to keep (e.g. ``"it"``).

    Returns:
        A :class:`SeedSet` (input order); every input message is in exactly one of ``messages`` and ``rejected``.

    Raises:
        InputError: missing columns, a missing or duplicate ``message_id``.

    Examples:
        >>> from cerbero_hf import build_seeds
        >>> rows = [{"message_id": "q", "parent_id": None, "role": "prompter", "lang": "it", "text": "Ciao?"},
        ...         {"message_id": "a", "parent_id": "q", "role": "assistant", "lang": "it", "text": "Ciao!"}]
        >>> build_seeds(rows, "it").paths[0]["messages"]
        [{'role': 'user', 'content': 'Ciao?'}, {'role': 'assistant', 'content': 'Ciao!'}]
    """
    rows = [dict(r) for r in table]
    _check_columns(rows)
    by_id = {str(r["message_id"]): r for r in rows}
    dropped: dict[str, tuple[str, str]] = {}
    for r in rows:
        pid = _str_id(r.get("parent_id"))
        problem = _first_problem(r, by_id.get(pid) if pid else None, language)
        if problem:
            dropped[str(r["message_id"])] = problem

    def orphan_reason(mid: str) -> tuple[str, str] | None:
        """Walk up from ``mid``: an orphan reason if the chain breaks before a root, else None."""
        trail, level = {mid}, 1
        while (pid := _str_id(by_id[mid].get("parent_id"))) is not None:
            who = "parent" if level == 1 else "ancestor"
            if pid in trail:
                return "orphan", f"cycle in parent links at {pid!r}"
            if pid not in by_id:
                return "orphan", f"{who} {pid!r} is not in the table"
            if pid in dropped and dropped[pid][0] != "orphan":
                return "orphan", f"{who} {pid!r} was dropped ({dropped[pid][0]})"
            trail.add(pid)
            mid, level = pid, level + 1
        return None

    for r in rows:  # the rule-based drops are fixed, so one pass decides every orphan
        mid = str(r["message_id"])
        if mid not in dropped and (why := orphan_reason(mid)):
            dropped[mid] = why

    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for r in rows:
        mid = str(r["message_id"])
        if mid in dropped:
            continue
        pid = _str_id(r.get("parent_id"))
        (children.setdefault(pid, []) if pid else roots).append(mid)

    out = SeedSet(trees=len(roots))
    for root in roots:
        tree_id = _str_id(by_id[root].get("message_tree_id")) or root
        stack = [[root]]
        index = 0
        while stack:  # depth-first, children in input order
            path = stack.pop()
            kids = children.get(path[-1], [])
            if kids:
                stack.extend(path + [k] for k in reversed(kids))
                continue
            msgs = [_message_row(by_id[m], {})["messages"][0] for m in path]
            meta = {"tree_id": tree_id, "message_ids": path, "path_index": index, "lang": language,
                    "origin": ["seed"] * len(path)}
            out.paths.append(make_row(f"{SOURCE}-{path[-1]}", msgs, SOURCE, meta))
            index += 1
        todo = [root]
        while todo:
            mid = todo.pop(0)
            out.messages.append(_message_row(by_id[mid], {"tree_id": tree_id,
                                                          "parent_id": _str_id(by_id[mid].get("parent_id"))}))
            todo.extend(children.get(mid, []))
    for r in rows:
        mid = str(r["message_id"])
        if mid in dropped:
            row = _message_row(r, {"tree_id": _id_text(r.get("message_tree_id")),
                                   "parent_id": _id_text(r.get("parent_id")), "lang": _as_text(r.get("lang"))})
            row["rule"], row["reason"] = dropped[mid]
            out.rejected.append(row)
    return out


def seeds_from_oasst(table, language: str = "it"):
    """The seeds transform on Datasets (paper §3.2, D10).

    Input columns: those of :func:`build_seeds`. Output: a ``datasets.DatasetDict`` with ``default`` (one seed
    conversation per root-to-leaf path, corpus schema), ``messages`` (every kept message: the initial diversity
    store) and ``rejected`` (dropped messages with ``rule`` and ``reason``).

    Examples:
        >>> rows = [{"message_id": "q", "parent_id": None, "role": "prompter", "lang": "it", "text": "Ciao?"},
        ...         {"message_id": "a", "parent_id": "q", "role": "assistant", "lang": "en", "text": "Hi!"}]
        >>> seeds_from_oasst(rows).num_rows  # the English answer is rejected (rule "language")
        {'default': 1, 'messages': 1, 'rejected': 1}
    """
    from datasets import DatasetDict

    from cerbero_hf.schema import features, rejected_features, to_dataset

    result = build_seeds(table, language)
    return DatasetDict({
        "default": to_dataset(result.paths, features()),
        "messages": to_dataset(result.messages, features()),
        "rejected": to_dataset(result.rejected, rejected_features()),
    })


def _card_body(counts: dict, language: str, source: str) -> str:
    from cerbero_hf.cards import stage_body, table

    return stage_body(
        "Seed conversations", f"Every root-to-leaf path of the `{language}` trees of `{source}`, one conversation "
        "per row (cerbero-hf `seeds`, Cerbero-7B §3.1).",
        configs=[("default", "the paths"), ("messages", "every kept message: the initial diversity store"),
                 ("rejected", "dropped messages with `rule` and `reason`")],
        sections=[("", table(["count", "value"], counts.items(), right=("value",)))])


def write_seed_folder(result: SeedSet, output, language: str, source: str = "") -> dict[str, int]:
    """Write a :class:`SeedSet` as a Hub-layout folder (``default``, ``messages``, ``rejected``); returns its counts.
    Raises :class:`InputError` when no tree of ``language`` was found."""
    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, rejected_features, to_dataset

    counts = result.counts()
    if not result.paths:
        raise InputError(f"no {language!r} trees found ({len(result.rejected)} messages dropped)", file=source or None)
    configs = {
        "default": to_dataset(result.paths, features()),
        "messages": to_dataset(result.messages, features()),
        "rejected": to_dataset(result.rejected, rejected_features()),
    }
    save_hub_folder(output, configs, card_data={"language": [language], "tags": ["cerbero-hf", "seeds", "conversational"]},
                    body=_card_body(counts, language, source), pretty_name=f"Seed conversations ({language})")
    return counts


def write_seeds(table, output, language: str = "it", source: str = "") -> dict[str, int]:
    """``build_seeds`` + ``write_seed_folder``: the ``seeds`` stage in one call; returns the counts.

    Examples:
        >>> write_seeds([{"message_id": "q", "parent_id": None, "role": "prompter", "lang": "it", "text": "Ciao?"}], "out")
        {'trees': 1, 'messages': 1, 'paths': 1}
    """
    from cerbero_hf.languages import load_language

    code = load_language(language).code
    return write_seed_folder(build_seeds(table, code), output, code, source=source)
