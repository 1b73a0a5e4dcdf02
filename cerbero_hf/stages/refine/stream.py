"""Plumbing of the streamed refinement: where its rows go (:class:`TableSink`, :class:`FileSink`) and the worker
processes of its parallel rules (:class:`Workers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_REFINER: Any = None  # the Refiner of this worker process (set by _start)


def _start(refiner) -> None:
    global _REFINER
    _REFINER = refiner


def _process(task: tuple):
    return _REFINER.process_table(*task)


class Workers:
    """Run ``refiner.process_table`` on many batches: in this process, or in ``num_proc`` worker processes
    started once per run (each holds its own copy of the rules)."""

    def __init__(self, refiner, num_proc: int | None = None):
        self.refiner, self.num_proc, self.pool = refiner, num_proc or 1, None

    def __enter__(self) -> "Workers":
        if self.num_proc > 1:
            import multiprocess  # what datasets uses: dill pickles rules defined anywhere

            self.pool = multiprocess.Pool(self.num_proc, initializer=_start, initargs=(self.refiner,))
        return self

    def map(self, tasks: list[tuple]) -> list:
        """``process_table(*task)`` of every task (a table of rows first), in order."""
        if self.pool is None:
            return [self.refiner.process_table(*task) for task in tasks]
        # a slice of an Arrow table pickles with the whole table's buffers: send each one's own rows only
        tasks = [(table.take(list(range(table.num_rows))), *rest) for table, *rest in tasks]
        return self.pool.map(_process, tasks, chunksize=1)

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
            self.pool = None


class TableSink:
    """Tables of rows held in memory: the output of :meth:`Refiner.run` (a corpus that fits in memory)."""

    def __init__(self, schema):
        self.schema, self.tables, self.rows = schema, [], 0

    def write(self, table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows

    def close(self) -> None:
        pass

    def dataset(self):
        import pyarrow as pa
        from datasets import Dataset
        from datasets.table import InMemoryTable

        table = pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()
        return Dataset(InMemoryTable(table))


class FileSink:
    """Tables of rows appended to an Arrow stream file (the format of ``datasets``' own files): memory stays flat
    however many rows are written. :meth:`dataset` reads the file back memory-mapped."""

    def __init__(self, path: str | Path, schema):
        import pyarrow as pa

        self.path, self.schema, self.rows = Path(path), schema, 0
        self._file = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_stream(self._file, schema)

    def write(self, table) -> None:
        # one record batch per write: opening the file memory-mapped reads every batch's header (and the pages
        # around it), so thousands of small batches would cost tens of MB of resident memory
        self._writer.write_table(table.combine_chunks())
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = None

    def dataset(self):
        from datasets import Dataset

        self.close()
        return Dataset.from_file(str(self.path))
