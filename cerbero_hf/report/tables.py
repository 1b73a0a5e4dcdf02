"""Reading a stage's Hub-layout folder for the report: columns with pyarrow, a few sampled rows, meta lists.

Nothing here loads a whole corpus into Python objects: counts come from parquet metadata, rule and reason
columns are read alone, per-message facts (``nll``, ``max_sim``) are cut out of the ``meta`` JSON strings by
pyarrow's regex kernels, and example rows are read from the row groups that hold them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# what varies in a reason text, folded into a pattern: ids (hex with dashes, or long hex) first, then numbers
REASON_IDS = r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b|\b[0-9a-f]{16,}\b"
REASON_NUMBERS = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def config_files(folder: Path | None, config: str = "default") -> list[Path]:
    """The parquet files of one config of a Hub-layout folder (``data/`` holds ``default``)."""
    from cerbero_hf.hub_folder import config_dir

    if folder is None:
        return []
    sub = Path(folder) / config_dir(config)
    return sorted(sub.glob("*.parquet")) if sub.is_dir() else []


def row_count(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def has_column(files: list[Path], name: str) -> bool:
    import pyarrow.parquet as pq

    return bool(files) and name in pq.ParquetFile(files[0]).schema_arrow.names


def read_columns(files: list[Path], columns: list[str]):
    """One pyarrow table of ``columns`` over ``files`` (columns a file lacks are left out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in files:
        names = pq.ParquetFile(f).schema_arrow.names
        tables.append(pq.read_table(f, columns=[c for c in columns if c in names]))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def rules_and_reasons(files: list[Path]) -> dict[str, dict]:
    """``rule -> {"count", "patterns": [(pattern, n, first reason)]}`` from a ``rejected`` config's columns.

    A pattern is the reason with its ids written ``<id>`` and its numbers ``N`` (``message N (user): NLL N is not <
    N``), so reasons that differ only in those are counted together; patterns are sorted by count.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not files or not has_column(files, "rule"):
        return {}
    table = read_columns(files, ["rule", "reason"])
    rules = pc.fill_null(table.column("rule"), "").combine_chunks()
    reasons = (pc.fill_null(table.column("reason"), "") if "reason" in table.column_names
               else pc.cast(pc.fill_null(rules, ""), "string")).combine_chunks()
    patterns = pc.replace_substring_regex(pc.replace_substring_regex(reasons, REASON_IDS, "<id>"), REASON_NUMBERS, "N")
    out: dict[str, dict] = {}
    grouped = pa.table({"rule": rules, "pattern": patterns}).group_by(
        ["rule", "pattern"], use_threads=False).aggregate([([], "count_all")])
    firsts = {}
    for i, (rule, pattern) in enumerate(zip(rules.to_pylist(), patterns.to_pylist())):
        if (rule, pattern) not in firsts:
            firsts[(rule, pattern)] = i
        if len(firsts) >= len(grouped):
            break
    for row in grouped.to_pylist():
        entry = out.setdefault(row["rule"], {"count": 0, "patterns": []})
        entry["count"] += row["count_all"]
        first = firsts.get((row["rule"], row["pattern"]))
        entry["patterns"].append((row["pattern"], row["count_all"], reasons[first].as_py() if first is not None else ""))
    for entry in out.values():
        entry["patterns"].sort(key=lambda p: (-p[1], p[0]))
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def rows_of_rule(files: list[Path], rule: str, k: int, rng: random.Random) -> list[dict]:
    """``k`` rows of ``rule`` sampled from a ``rejected`` config (in file order)."""
    import pyarrow.compute as pc

    rules = read_columns(files, ["rule"]).column("rule")
    where = pc.indices_nonzero(pc.fill_null(pc.equal(rules, rule), False)).to_pylist()
    return take_rows(files, sorted(rng.sample(where, min(k, len(where)))))


def sample_rows(files: list[Path], k: int, rng: random.Random) -> list[dict]:
    """``k`` rows sampled from a config (in file order)."""
    n = row_count(files)
    return take_rows(files, sorted(rng.sample(range(n), min(k, n))))


def take_rows(files: list[Path], indices: list[int]) -> list[dict]:
    """The rows at ``indices`` (over ``files`` in order), reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    rows, base, wanted = [], 0, sorted(indices)
    for f in files:
        pf = pq.ParquetFile(f)
        for g in range(pf.metadata.num_row_groups):
            size = pf.metadata.row_group(g).num_rows
            inside = [i - base for i in wanted if base <= i < base + size]
            if inside:
                group = pf.read_row_group(g)
                rows += group.take(inside).to_pylist()
            base += size
    return rows


def meta_list(files: list[Path], key: str):
    """Every value of the per-message list ``meta[key]`` over ``files``, as floats (``None`` left out).

    The list is cut out of the JSON text of ``meta`` with a regex (these lists hold numbers and ``null`` only).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = []
    for f in files:
        meta = read_columns([f], ["meta"])
        if "meta" not in meta.column_names or meta.num_rows == 0:
            continue
        found = pc.extract_regex(pc.fill_null(meta.column("meta"), ""), rf'"{key}":\s*\[(?P<v>[^\]\[]*)\]')
        parts = pc.split_pattern(pc.fill_null(pc.struct_field(found, "v"), ""), ",")
        flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
        keep = pc.and_(pc.not_equal(flat, "null"), pc.not_equal(flat, ""))
        values.append(pc.cast(pc.filter(flat, keep), pa.float64()).to_numpy(zero_copy_only=False))
    return np.concatenate(values) if values else np.zeros(0)


def conversation_lengths(files: list[Path]):
    """Messages per conversation (a numpy array), read from the ``messages`` column."""
    import numpy as np
    import pyarrow.compute as pc

    out = []
    for f in files:
        table = read_columns([f], ["messages"])
        if "messages" in table.column_names:
            out.append(pc.fill_null(pc.list_value_length(table.column("messages")), 0).to_numpy(zero_copy_only=False))
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def row_meta(row: dict) -> dict:
    """A row's ``meta`` as a mapping (``{}`` when it is missing or not JSON)."""
    raw = row.get("meta")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
