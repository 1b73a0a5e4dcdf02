"""The refine stage's input side: which column holds the conversations, one row in the rules' shape, and the
corpus read in chunks of rows without holding it in memory.

:func:`load_parts` loads each input with :func:`cerbero_hf.io.load_table` (``datasets`` writes a local file or a
Hub dataset to Arrow files on disk). :meth:`Part.chunks` then reads those files as plain files, one Arrow record
batch at a time: never memory-mapped, because every page of a memory-mapped file that is read stays in the
process's resident memory (RSS) until the file is closed, so a memory-mapped pass over a 10 GB corpus shows as
10 GB of RSS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from cerbero_hf.arrow_files import record_batches, stream_files
from cerbero_hf.errors import InputError
from cerbero_hf.schema import get_meta, row_problem
from cerbero_hf.stages.refine.rules import TRANSCRIPT

TEXT_COLUMNS = ("input", "text", "conversation", "transcript", "chat", "prompt")


def detect_text_column(ds, text_column: str | None, file: str | None = None) -> str | None:
    """``None`` for ``messages`` rows, else the transcript column; InputError when neither fits."""
    from datasets import Json, List, Value

    cols = ds.column_names
    if text_column:
        if text_column not in cols:
            raise InputError(f"no column {text_column!r} (columns: {', '.join(cols)})", file=file, column=text_column)
        if ds.features[text_column] != Value("string"):
            raise InputError(f"transcript column has type {ds.features[text_column]}, expected string",
                             file=file, column=text_column)
        return text_column
    if "messages" in cols:
        if not isinstance(ds.features["messages"], (List, Json)):
            raise InputError(f"has type {ds.features['messages']}, expected a list of {{role, content}}",
                             file=file, column="messages")
        return None
    for name in TEXT_COLUMNS:
        if name in cols:
            if ds.features[name] != Value("string"):
                raise InputError(f"transcript column has type {ds.features[name]}, expected string",
                                 file=file, column=name)
            return name
    raise InputError(f"no 'messages' column and no transcript column ({', '.join(TEXT_COLUMNS)}); "
                     f"columns: {', '.join(cols)}; pass --text-column", file=file, column="messages")


def read_row(raw: dict, index: int, text_column: str | None, source: str) -> dict:
    """One input row in the rules' shape: ``id, messages, source, meta`` (a dict), the transcript, a problem.

    Malformed input is recorded in ``problem`` (rejected by the ``schema`` rule) with its raw value kept in
    ``meta`` (``raw_meta``, ``raw_messages``, ``raw_text``); a row without an ``id`` gets ``row-<index>``.
    """
    rid = raw.get("id")
    rid = str(rid) if rid not in (None, "") and not isinstance(rid, (list, dict)) else f"row-{index}"
    src = raw.get("source") if isinstance(raw.get("source"), str) and raw.get("source") else source
    row: dict[str, Any] = {"id": rid, "messages": [], "source": src or "", "meta": {}, TRANSCRIPT: None, "problem": None,
           "notes": {}}
    try:
        row["meta"] = get_meta(raw)
        if not isinstance(row["meta"], dict):
            raise ValueError
    except (TypeError, ValueError):
        row["meta"], row["problem"] = {"raw_meta": str(raw.get("meta"))}, "column 'meta': is not a JSON object"
    if text_column:
        text = raw.get(text_column)
        if not isinstance(text, str):
            row["problem"] = f"column {text_column!r}: not a string"
        elif row["problem"]:
            row["meta"]["raw_text"] = text  # rejected before tag repair: keep the transcript
        else:
            row[TRANSCRIPT] = text
    else:
        problem = row_problem({"id": rid, "messages": raw.get("messages")})
        if problem:
            row["problem"] = f"column {problem[0]!r}: {problem[1]}"
            row["meta"]["raw_messages"] = json.dumps(raw.get("messages"), ensure_ascii=False, default=str)
        else:
            row["messages"] = [{"role": m["role"], "content": m["content"]} for m in raw["messages"]]
    return row


class Part:
    """One input of a refine run: its rows, read a chunk at a time (:meth:`chunks`), the ``source`` of its rows
    without one, and its name for messages (``file``).

    A dataset stored in Arrow files (what ``io.load_table`` returns) is read from those files and not kept: opening
    it memory-mapped read each record batch's header, and those pages would stay resident for the whole run (about
    45 KB per 1,000 rows). Anything else (an in-memory dataset, a ``select``-ed one) is read through ``ds``.
    """

    def __init__(self, ds, source: str = "", file: str | None = None):
        self.source, self.file = source, file
        self.features, self.column_names, self.num_rows = ds.features, ds.column_names, len(ds)
        self.files = stream_files(ds)
        self.ds = None if self.files else ds

    def __len__(self) -> int:
        return self.num_rows

    def _batches(self) -> Iterator:
        return record_batches(self.ds, self.files)

    def chunks(self, rows: int) -> Iterator:
        """The rows, in order, as ``pyarrow.Table`` s of ``rows`` rows (the last one shorter)."""
        import pyarrow as pa

        pending, held = [], 0
        for batch in self._batches():
            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            while table.num_rows:
                take = table.slice(0, rows - held)
                pending.append(take)
                held += take.num_rows
                table = table.slice(take.num_rows)
                if held == rows:
                    yield pa.concat_tables(pending)
                    pending, held = [], 0
        if held:
            yield pa.concat_tables(pending)


def load_parts(inputs: list[str]) -> list[Part]:
    """Load each of ``inputs`` (anything ``io.load_table`` reads); rows without a ``source`` get the input's name
    (file stem or Hub dataset name). The parts are refined one after the other, as one corpus."""
    from cerbero_hf.io import load_table

    return [Part(load_table(spec), Path(str(spec)).stem, str(spec)) for spec in inputs]
