"""Reading inputs (and, re-exported from :mod:`cerbero_hf.hub_folder`, writing Hub-layout output folders).

``load_table(spec)`` reads a local file (parquet, jsonl, json, csv), a ``save_to_disk`` folder, a Hub-layout folder (README
``configs:``), or a Hub dataset id through the real ``load_dataset``, and returns a ``datasets.Dataset``. Bad input raises
:class:`InputError` naming file, row and column. Every JSON lines, JSON and CSV file read (a folder's too) is checked first: a
non-UTF-8 byte or a line that is not a JSON object names its file, row and column. A JSON lines column whose type changes
between rows (a list where other rows have a string) is read as ``datasets.Json`` values, each keeping its type, so the
stage's row check rejects the odd rows (``datasets`` alone may turn them into text); in a folder, where ``datasets`` cannot
read it, it is an InputError naming the first such row.

``load_config(folder, config)`` reads one config of a Hub-layout folder written by ``save_hub_folder``, an empty one included
(``datasets`` cannot load a split with zero rows). Writing: :mod:`cerbero_hf.hub_folder` (``save_hub_folder``, ``load_calls``,
...), re-exported here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.hub_folder import (  # noqa: F401 - the writing side, re-exported: one module to import from
    announced_configs,
    arrow_nbytes,
    check_kept,
    config_dir,
    load_calls,
    save_hub_folder,
    split_files,
    wrote_line,
)

FILE_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}


TEXT_SUFFIXES = (".jsonl", ".json", ".csv")


def value_kind(value) -> str | None:
    """The JSON kind of ``value`` in words (``"a string"``, ``"a list"``, ...); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def _top_key_before(text: str, pos: int) -> str | None:
    """The top-level key of the JSON object ``text`` whose value holds character ``pos`` (None if unknown)."""
    depth, in_str, esc, start, last, key = 0, False, False, 0, None, None
    for i, ch in enumerate(text[:pos]):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str, last = False, (text[start + 1:i], depth)
            continue
        if ch == '"':
            in_str, start = True, i
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ":" and depth == 1 and last is not None and last[1] == 1:
            key = last[0]
    if key is not None:
        try:
            key = json.loads(f'"{key}"')
        except ValueError:
            pass
    return key


def _check_utf8(path: Path) -> None:
    """Raise InputError at the first non-UTF-8 byte of a text file, with its line and (JSON lines) column.

    Read a line at a time (a UTF-8 sequence never holds a newline byte), so memory does not grow with the file."""
    jsonl = path.suffix.lower() == ".jsonl"
    with path.open("rb") as fh:
        for line, data in enumerate(fh, 1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as err:
                column = None
                if jsonl:
                    prefix = data[:err.start].decode("utf-8", "surrogateescape")
                    column = _top_key_before(data.rstrip(b"\r\n").decode("utf-8", "surrogateescape"), len(prefix))
                raise InputError(f"invalid UTF-8 byte 0x{data[err.start]:02x} at line {line}, byte column "
                                 f"{err.start + 1}", file=str(path), row=line - 1 if jsonl else None,
                                 column=column) from None


def _merge_shape(shape: dict, value, where: tuple[Path, int], path: str):
    """Fold ``value`` into the type ``shape`` seen so far; return ``(path, kind, earlier place, earlier kind)``
    at the first clash, else None. Null and empty lists fit any type."""
    kind = value_kind(value)
    if kind is None:
        return None
    if "kind" not in shape:
        shape.update(kind=kind, where=where)
    elif shape["kind"] != kind:
        return path, kind, shape["where"], shape["kind"]
    if kind == "an object":
        for k, v in value.items():
            clash = _merge_shape(shape.setdefault("keys", {}).setdefault(k, {}), v, where, f"{path}.{k}")
            if clash:
                return clash
    elif kind == "a list":
        for v in value:
            clash = _merge_shape(shape.setdefault("item", {}), v, where, f"{path}[]")
            if clash:
                return clash
    return None


def _scan_json_lines(path: Path, shapes: dict) -> dict[str, InputError]:
    """Check that every line of a .jsonl file is a JSON object and fold its column types into ``shapes``.

    Raises InputError at the first line that is not a JSON object. Returns, per column whose type changes
    (a list or an object where earlier rows, here or in files scanned before with the same ``shapes``, have
    a string, ...), an InputError naming the first such row.
    """
    clashes: dict[str, InputError] = {}
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"line {i + 1} is not valid JSON ({err.msg})", file=str(path), row=i,
                                 column=_top_key_before(line, err.pos)) from None
            if not isinstance(obj, dict):
                raise InputError(f"line {i + 1} is not a JSON object", file=str(path), row=i)
            for col, value in obj.items():
                if col in clashes:
                    continue
                clash = _merge_shape(shapes.setdefault(col, {}), value, (path, i), col)
                if clash:
                    at, kind, (first_file, first_row), first_kind = clash
                    place = f"row {first_row}" if first_file == path else f"{first_file} row {first_row}"
                    inner = f" (at {at})" if at != col else ""
                    clashes[col] = InputError(f"{kind} where {place} has {first_kind}{inner}", file=str(path),
                                              row=i, column=col)
    return clashes


def _json_lines_with_mixed_columns(path: Path, mixed) -> object:
    """Read a .jsonl file whose ``mixed`` columns change type as a Dataset, those columns as ``Json`` values.

    ``datasets``' JSON reader turns such a column into text in some chunkings (a list becomes the string
    ``'["a", "b"]'``): here every value keeps its type, and the stage's row check rejects the wrong ones.
    """
    from datasets import Dataset, Json

    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    names = list(dict.fromkeys(k for r in rows for k in r))
    plain = {k: [r.get(k) for r in rows] for k in names if k not in mixed}
    ds = Dataset.from_dict(plain) if plain else Dataset.from_dict({"_": [None] * len(rows)})
    for k in names:
        if k in mixed:
            ds = ds.add_column(k, [None if r.get(k) is None else json.dumps(r[k], ensure_ascii=False) for r in rows],
                               feature=Json())
    return ds if plain else ds.remove_columns("_")


def _check_text_file(path: Path, shapes: dict) -> dict[str, InputError]:
    """UTF-8 and (JSON lines) line checks; returns the JSON-lines columns that change type."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return {}
    _check_utf8(path)
    return _scan_json_lines(path, shapes) if path.suffix.lower() == ".jsonl" else {}


def _text_files(folder: Path) -> list[Path]:
    """The JSON lines, JSON and CSV files under ``folder`` (hidden folders skipped), in path order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


# A name ending in one of these is a file someone mistyped, never a Hub repo id ("bad/missing.jsonl").
FILE_SUFFIXES = (*FILE_FORMATS, ".jsonl.gz", ".json.gz", ".gz", ".zip", ".txt", ".tsv", ".yaml", ".yml")


def is_hub_id(spec: str) -> bool:
    """True when ``spec`` reads as a Hub repo id ``OWNER/NAME`` and is not a local path.

    Path-like names are never Hub ids, so a mistyped local path is "no such file" at once instead of a slow Hub look-up: one
    starting with ``.``, ``/`` or ``~``, and one whose name ends in a file suffix (:data:`FILE_SUFFIXES`).
    """
    parts = spec.split("/")
    return (len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))
            and not spec.lower().endswith(FILE_SUFFIXES) and not Path(spec).exists())


def load_table(spec: str | os.PathLike, *, config: str | None = None, split: str = "train"):
    """Load ``spec`` as a ``datasets.Dataset`` (see module docstring).

    Examples:
        >>> from pathlib import Path
        >>> _ = Path("rows.json").write_text('[{"id": "a", "text": "Ciao"}, {"id": "b", "text": "Salve"}]')
        >>> load_table("rows.json")[1]
        {'id': 'b', 'text': 'Salve'}
    """
    path = Path(spec)
    if not path.exists() and not is_hub_id(str(spec)):
        raise InputError("no such file or folder", file=str(spec))  # before the slow datasets import
    if path.is_file() and path.suffix.lower() not in FILE_FORMATS:
        raise InputError(f"unknown format {path.suffix or '(no extension)'!r}; expected one of "
                         f"{', '.join(FILE_FORMATS)} or a folder", file=str(path))
    import datasets

    if not path.exists():
        if is_hub_id(str(spec)):
            try:
                return datasets.load_dataset(str(spec), config, split=split)
            except Exception as err:  # noqa: BLE001 - any Hub failure is an input problem here
                raise InputError(f"cannot load Hub dataset: {str(err).splitlines()[0]}", file=str(spec)) from None
        raise InputError("no such file or folder", file=str(spec))
    try:
        if path.is_dir():
            if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
                ds = datasets.load_from_disk(str(path))
                if isinstance(ds, datasets.DatasetDict):
                    ds = ds[split] if split in ds else ds[next(iter(ds))]
                return _nonempty(ds, path)
            shapes: dict = {}
            for f in _text_files(path):
                clashes = _check_text_file(f, shapes)
                if clashes:  # datasets fails on it, or turns the odd values into text
                    raise next(iter(clashes.values()))
            files = split_files(path, config, split)  # a Hub-layout folder: its files, never a stale cache
            if files:
                files_format = FILE_FORMATS.get(files[0].suffix.lower(), "parquet")
                datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
                ds = datasets.load_dataset(files_format, data_files=[str(f) for f in files], split="train")
                return _nonempty(ds, path)
            return _nonempty(datasets.load_dataset(str(path), config, split=split), path)
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"unknown format {path.suffix or '(no extension)'!r}; expected one of "
                             f"{', '.join(FILE_FORMATS)} or a folder", file=str(path))
        mixed = _check_text_file(path, {})
        if path.stat().st_size == 0:
            raise InputError("empty dataset (0 rows)", file=str(path))
        if fmt == "arrow":
            ds = datasets.Dataset.from_file(str(path))
        elif mixed:
            ds = _json_lines_with_mixed_columns(path, mixed)
        else:
            datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # a local file: no download-count request to S3
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
        return _nonempty(ds, path)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a library parse error becomes one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"cannot read: {type(err).__name__}: {first}", file=str(path)) from None


def _nonempty(ds, path):
    if len(ds) == 0:
        raise InputError("empty dataset (0 rows)", file=str(path))
    return ds


def load_config(spec: str | os.PathLike, config: str = "default"):
    """``load_table(spec, config=...)``, except that a config of a local Hub-layout folder with zero rows is
    read as an empty ``datasets.Dataset`` with its schema (``datasets`` cannot load an empty split).

    Raises:
        InputError: the folder has no such config, or it cannot be read.

    Examples:
        >>> empty = load_config("out/corpus", "rejected")  # doctest: +SKIP
    """
    path = Path(spec)
    files = sorted((path / config_dir(config)).glob("train-*.parquet")) if path.is_dir() else []
    if files:
        import pyarrow.parquet as pq

        if sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 0:
            import datasets

            return datasets.Dataset(pq.read_table(files[0]))
    if path.is_dir() and config != "default" and config not in announced_configs(path):
        raise InputError(f"no config {config!r} (announced: {', '.join(announced_configs(path)) or 'none'})",
                         file=str(spec))
    return load_table(spec, config=None if config == "default" else config)
