"""Reading inputs and writing Hub-layout output folders.

``load_table(spec)`` reads a local file (parquet, jsonl, json, csv), a ``save_to_disk`` folder,
a Hub-layout folder (README ``configs:``), or a Hub dataset id through the real ``load_dataset``,
and returns a ``datasets.Dataset``. Bad input raises :class:`InputError` naming file, row and column.

``save_hub_folder(out, configs, card)`` writes each config as parquet under ``data/`` (``default``)
or ``<config>/``, plus a README.md whose ``configs:`` YAML makes ``load_dataset(out)`` and
``load_dataset(out, "rejected")`` work before anything is pushed (STACK.md §3.1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cerbero_hf.errors import InputError

FILE_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}


def _check_utf8(path: Path) -> None:
    """Raise InputError at the first non-UTF-8 byte of a text file, with its line and column."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(f"invalid UTF-8 byte 0x{data[err.start]:02x} at line {line}, byte column {col}",
                         file=str(path), row=line - 1 if path.suffix == ".jsonl" else None) from None


def _check_json_lines(path: Path) -> None:
    """Raise InputError naming the first line of a .jsonl file that is not a JSON object."""
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise InputError(f"line {i + 1} is not valid JSON ({err.msg})", file=str(path), row=i) from None
            if not isinstance(obj, dict):
                raise InputError(f"line {i + 1} is not a JSON object", file=str(path), row=i)


def is_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/")) and not Path(spec).exists()


def load_table(spec: str | os.PathLike, *, config: str | None = None, split: str = "train"):
    """Load ``spec`` as a ``datasets.Dataset`` (see module docstring)."""
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
            return _nonempty(datasets.load_dataset(str(path), config, split=split), path)
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"unknown format {path.suffix or '(no extension)'!r}; expected one of "
                             f"{', '.join(FILE_FORMATS)} or a folder", file=str(path))
        if fmt in ("json", "csv"):
            _check_utf8(path)
            if path.suffix.lower() == ".jsonl":
                _check_json_lines(path)
        if path.stat().st_size == 0:
            raise InputError("empty dataset (0 rows)", file=str(path))
        if fmt == "arrow":
            ds = datasets.Dataset.from_file(str(path))
        else:
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


def config_dir(config: str) -> str:
    return "data" if config == "default" else config


def _drop_stale_configs(out: Path, configs: dict) -> None:
    """Delete the parquet files of configs an earlier write listed but this one does not (e.g. a ``rejected``
    config that is now empty), so a re-run never leaves stale rows to be published."""
    readme = out / "README.md"
    if not readme.exists():
        return
    from huggingface_hub import DatasetCard

    try:
        previous = DatasetCard.load(readme).data.to_dict().get("configs") or []
    except Exception:  # noqa: BLE001 - a README we did not write: leave its files alone
        return
    for entry in previous:
        name = entry.get("config_name")
        if name and name not in configs:
            for old in (out / config_dir(name)).glob("train-*.parquet"):
                old.unlink()


def save_hub_folder(out: str | os.PathLike, configs: dict, *, card_data: dict | None = None, body: str = "",
                    pretty_name: str | None = None) -> Path:
    """Write ``{config: Dataset}`` as a Hub-layout folder with a README dataset card.

    ``default`` is the default config. ``card_data`` goes into the YAML header (language, license,
    tags, ...); ``body`` is the Markdown below it (:func:`cerbero_hf.cards.stage_body` renders a stage's).
    """
    from huggingface_hub import DatasetCardData

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _drop_stale_configs(out, configs)
    entries, infos = [], []
    for name, ds in configs.items():
        d = out / config_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("train-*.parquet"):
            old.unlink()
        ds.to_parquet(str(d / "train-00000-of-00001.parquet"))
        # Sizes in the card (as push_to_hub writes them). datasets hashes a local folder's cache key from the
        # README (configs + dataset_info) only, not from the files: without them, load_dataset(out) returns
        # stale rows after out is rewritten, or another folder's rows (datasets#6465-like).
        size = (d / "train-00000-of-00001.parquet").stat().st_size
        infos.append({"config_name": name, "download_size": size, "dataset_size": ds.data.nbytes,
                      "splits": [{"name": "train", "num_bytes": ds.data.nbytes, "num_examples": len(ds)}]})
        entry = {"config_name": name, "data_files": [{"split": "train", "path": f"{config_dir(name)}/train-*"}]}
        if name == "default":
            entry["default"] = True
        entries.append(entry)
    data = DatasetCardData(**(card_data or {}), configs=entries, dataset_info=infos)
    if pretty_name:
        data.pretty_name = pretty_name
    from cerbero_hf.cards import render

    render("folder", data, body=body).save(str(out / "README.md"))
    return out
