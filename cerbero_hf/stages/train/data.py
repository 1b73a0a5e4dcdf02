"""Training-set preparation for the Cerbero fine-tuning (paper §4).

Corpora in our row schema (files, Hub-layout folders or Hub dataset ids, read with ``io.load_table``)
become one shuffled ``messages`` dataset: a condition preset picks the corpora (``fauno``, ``generated``,
``full``), each corpus has a weight (``0.5`` samples half of it, ``2`` repeats it), role aliases such as
Fauno's ``[|AI|]`` map to ``assistant``, system prompts are dropped, and the seed is recorded.

Input columns: ``id``, ``messages``, ``source`` (``meta`` is not used). Output columns: ``id``, ``source``,
``messages`` (user/assistant only).

Rows that cannot be trained on are rejected before tokenisation, each with its row number and reason in the
report (``skipped``) and counted per corpus (``rows_rejected``): a value of the wrong type (``messages``
not a list of ``{role, content}`` objects, a ``content`` that is not a string, an ``id`` or ``source`` that
is a list, ...; never converted to text), a message over ``schema.MAX_MESSAGE_CHARS`` characters, an
unknown role, or no assistant reply. A corpus none of whose rows is usable is an input error naming its
first rejected row. Conversations over ``max_length`` tokens are truncated (or split, with packing) by TRL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cerbero_hf.errors import InputError
from cerbero_hf.schema import MAX_MESSAGE_CHARS, messages_problem

CONDITIONS = {"fauno": ("fauno",), "generated": ("generated", "gen"), "full": None}
# Generic aliases; the language pack's own tag words (e.g. Fauno's ``[|AI|]``) are added per pack.
ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "gpt": "assistant",
                "bot": "assistant", "system": "system"}


@dataclass
class Corpus:
    """One training corpus: ``path`` is a file, a folder or a Hub dataset id; ``weight`` scales its rows."""

    path: str
    name: str = ""
    weight: float = 1.0
    hub_id: str | None = None
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, spec: str | dict | Corpus) -> Corpus:
        """``PATH``, ``NAME=PATH`` or ``NAME=PATH@WEIGHT`` (or a dict with the field names)."""
        from cerbero_hf.io import is_hub_id

        if isinstance(spec, Corpus):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
            if unknown or "path" not in spec:
                raise InputError(f"bad corpus entry {spec!r}: needs 'path', unknown keys {sorted(unknown)}")
            c = cls(**spec)
        else:
            name, _, rest = spec.partition("=") if "=" in spec else ("", "", spec)
            path, _, weight = rest.rpartition("@") if "@" in rest else (rest, "", "1")
            try:
                c = cls(path=path, name=name, weight=float(weight))
            except ValueError:
                raise InputError(f"bad corpus weight {weight!r} in {spec!r} (NAME=PATH@WEIGHT)") from None
        if c.weight < 0:
            raise InputError(f"corpus weight must be >= 0, got {c.weight}", file=c.path)
        c.name = c.name or Path(c.path.rstrip("/")).name.lower()
        if c.hub_id is None and is_hub_id(c.path):
            c.hub_id = c.path
        return c


def check_corpora(corpora: list, condition: str) -> None:
    """The condition picks at least one corpus, and every local corpus it picks exists (one-line errors)."""
    for c in select_corpora([Corpus.parse(c) for c in corpora], condition):
        if c.hub_id is None and not Path(c.path).exists():
            raise InputError("no such file or folder", file=c.path)


def select_corpora(corpora: list[Corpus], condition: str) -> list[Corpus]:
    """The corpora of a condition preset: ``full`` takes all, others match by name prefix."""
    if condition not in CONDITIONS:
        raise InputError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    prefixes = CONDITIONS[condition]
    chosen = [c for c in corpora if prefixes is None or c.name.startswith(prefixes)]
    if not chosen:
        names = ", ".join(c.name for c in corpora) or "none"
        needs = f"a corpus named {prefixes[0]}*" if prefixes else "a corpus"
        raise InputError(f"condition {condition!r} needs {needs} (got: {names}); "
                         f"name corpora as NAME=PATH, e.g. fauno=out/fauno generated=out/generated")
    return chosen


def training_messages(messages: list[dict], pack) -> tuple[list[dict] | None, str]:
    """Role-form messages -> the messages we train on, or ``(None, reason)``.

    Role aliases (Fauno's ``[|AI|]``, ``human``, ...) map to ``user``/``assistant``; system messages are
    dropped; a conversation needs at least one assistant reply.
    """
    tags = {pack.fauno_assistant_tag.strip("[|]").lower(): "assistant", pack.assistant_tag.strip("[|]").lower():
            "assistant", pack.user_tag.strip("[|]").lower(): "user", pack.fauno_user_tag.strip("[|]").lower(): "user"}
    out = []
    for m in messages:
        key = m["role"].strip().strip("[|]").lower()
        role = ROLE_ALIASES.get(key) or tags.get(key)
        if role is None:
            return None, f"unknown role {m['role']!r}"
        if role != "system":
            out.append({"role": role, "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        return None, "no assistant message"
    return out, ""


def _weighted_indices(n: int, weight: float, rng) -> list[int]:
    """``round(weight * n)`` row indices: whole copies of the corpus plus a seeded sample of the remainder."""
    want = round(weight * n)
    full, rest = divmod(want, n) if n else (0, 0)
    return [i for _ in range(full) for i in range(n)] + sorted(rng.choice(n, size=rest, replace=False).tolist())


def row_problem(rid, msgs, source, *, max_chars: int | None = MAX_MESSAGE_CHARS) -> str | None:
    """Why a training row is unusable, as ``column '<name>': <reason>`` (wrong types, oversized messages), or
    None. Any role string passes here: :func:`training_messages` maps the aliases."""
    from cerbero_hf.io import value_kind

    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        return f"column 'id': is {value_kind(rid)}, not a string"
    if source is not None and not isinstance(source, str):
        return f"column 'source': is {value_kind(source)}, not a string"
    problem = messages_problem(msgs, roles=None, max_chars=max_chars)
    return f"column 'messages': {problem}" if problem else None


class _Normalise:
    """Batched ``Dataset.map`` transform: rows -> ``id``, ``source``, training ``messages`` and a skip ``reason``."""

    def __init__(self, pack, corpus_name: str, max_chars: int | None = MAX_MESSAGE_CHARS):
        self.pack, self.name, self.max_chars = pack, corpus_name, max_chars

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        out: dict[str, list] = {"id": [], "source": [], "messages": [], "reason": []}
        ids, sources = batch.get("id") or [None] * len(indices), batch.get("source") or [None] * len(indices)
        for i, msgs, rid, src in zip(indices, batch["messages"], ids, sources):
            reason = row_problem(rid, msgs, src, max_chars=self.max_chars)
            kept = None
            if reason is None:
                kept, reason = training_messages(msgs, self.pack)
            ok_id = isinstance(rid, (str, int)) and not isinstance(rid, bool) and rid != ""
            out["id"].append(str(rid) if ok_id else f"{self.name}-{i}")
            out["source"].append(src if isinstance(src, str) and src else self.name)
            out["messages"].append(kept or [])
            out["reason"].append(reason)
        return out


def build_training_set(corpora: list, *, condition: str = "full", seed: int = 42, language="it"):
    """Mix corpora into one shuffled training set (weights, recorded seed).

    Args:
        corpora: :class:`Corpus` objects or specs (``NAME=PATH@WEIGHT``).
        condition: ``fauno``, ``generated`` or ``full`` (paper §4).
        seed: the shuffle and sampling seed (recorded in the manifest and the card).

    Returns:
        ``(dataset, report)``: a ``datasets.Dataset`` with ``id``, ``source`` and ``messages``, and a dict with
        the per-corpus row counts and the rows skipped (id and reason). The dataset is built with ``map`` /
        ``select`` on the loaded tables, so its fingerprint is stable and a rerun (a resume) reuses TRL's
        tokenisation cache instead of tokenising again.
    """
    import numpy as np
    from datasets import Features, List, Value, concatenate_datasets

    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language

    pack = load_language(language)
    chosen = select_corpora([Corpus.parse(c) for c in corpora], condition)
    rng = np.random.default_rng(seed)
    feats = Features({"id": Value("string"), "source": Value("string"), "reason": Value("string"),
                      "messages": List({"role": Value("string"), "content": Value("string")})})
    parts: list = []
    report: dict[str, Any] = {"condition": condition, "seed": seed, "corpora": [], "skipped": []}
    for c in chosen:
        ds = load_table(c.path, config=c.config, split=c.split)
        if "messages" not in ds.column_names:
            raise InputError("no 'messages' column (expected the cerbero-hf row schema)", file=c.path)
        norm = ds.map(_Normalise(pack, c.name), batched=True, with_indices=True, remove_columns=ds.column_names,
                      features=feats, desc=f"Preparing {c.name}")
        reasons = norm["reason"]
        kept = [i for i, r in enumerate(reasons) if not r]
        rejected = [i for i, r in enumerate(reasons) if r]
        if rejected and not kept:
            first = reasons[rejected[0]]
            column, _, why = first.partition(": ") if first.startswith("column '") else ("", "", first)
            raise InputError(f"no usable rows ({len(rejected)} rejected); first: {why}", file=c.path,
                             row=rejected[0], column=column[len("column '"):-1] or "messages")
        ids = norm["id"]
        report["skipped"] += [{"corpus": c.name, "row": i, "id": ids[i], "reason": reasons[i]} for i in rejected]
        picked = [kept[i] for i in _weighted_indices(len(kept), c.weight, rng)] if kept else []
        parts.append(norm.select(picked))
        report["corpora"].append({"name": c.name, "path": c.path, "hub_id": c.hub_id, "weight": c.weight,
                                  "rows_in": len(ds), "rows_rejected": len(rejected), "rows_used": len(picked)})
    total = sum(len(p) for p in parts)
    if not total:
        raise InputError(f"no trainable conversations in condition {condition!r}")
    mixed = concatenate_datasets(parts).remove_columns("reason")
    return mixed.select(rng.permutation(total).tolist()), report
