"""Reading a ``datasets.Dataset``'s rows from its Arrow files as plain files, not memory-mapped.

A dataset that ``datasets`` loaded (or ``Dataset.from_file``) is a memory map of Arrow stream files: every
page a pass reads stays counted in the process's resident memory for as long as the map lives (about 1 GB per
million conversations for one pass over a corpus). The streamed refine and the Hub-folder writer read such rows
through :func:`record_batches` instead, so their memory stays flat whatever the corpus size.
"""

from __future__ import annotations

from typing import Iterator


def arrow_files(table) -> list[str] | None:
    """The Arrow files whose rows, in order, are exactly ``table`` (a ``datasets`` table), or None: an in-memory
    table, or one changed after loading (renamed or cast columns, ...)."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if isinstance(table, MemoryMappedTable):  # a schema's metadata replaced after loading changes no row
        changed = [op for op, _, _ in table.replays or () if op != "replace_schema_metadata"]
        return None if changed else [table.path]
    if isinstance(table, ConcatenationTable) and all(len(row) == 1 for row in table.blocks):
        paths = [arrow_files(row[0]) for row in table.blocks]
        return None if any(p is None for p in paths) else [f for p in paths if p is not None for f in p]
    return None


def stream_files(ds) -> list[str] | None:
    """The Arrow stream files that hold exactly ``ds``'s rows, in order (None: read it through ``ds``)."""
    import pyarrow as pa

    files = arrow_files(ds.data) if getattr(ds, "_indices", None) is None else None
    for path in files or ():
        with pa.OSFile(path) as fh:
            if not pa.ipc.open_stream(fh).schema.equals(ds.data.schema, check_metadata=False):
                return None
    return files or None


def record_batches(ds, files: list[str] | None = None, batch_size: int = 10_000) -> Iterator:
    """``ds``'s rows as Arrow record batches: read from ``files`` (default :func:`stream_files`) when it has them,
    else through ``ds`` itself."""
    files = stream_files(ds) if files is None else files
    if not files:
        yield from ds.with_format("arrow").iter(batch_size=batch_size)
        return
    import pyarrow as pa

    for path in files:
        with pa.OSFile(path) as fh:
            yield from pa.ipc.open_stream(fh)
