"""Hub-layout output folders: what every stage writes, and reading them back, empty configs included.

``save_hub_folder(out, configs, card)`` writes each config as parquet under ``data/`` (``default``)
or ``<config>/``, plus a README.md whose ``configs:`` YAML makes ``load_dataset(out)`` and
``load_dataset(out, "rejected")`` work before anything is pushed (datasets 5 has no loading scripts).

Empty configs. ``datasets`` cannot load a split with zero rows (``load_dataset`` raises ``Instruction 'train'
corresponds to no data``, however the file is written; huggingface/datasets#8401 is open). So a config with
no rows is still written, as a zero-row parquet file with its schema, but the README only announces it when
it is ``default`` (announcing nothing would make ``load_dataset(out)`` fall back to another config's rows):
every other announced config loads. :func:`cerbero_hf.io.load_config` reads any config of such a folder,
empty ones included, and :func:`load_calls` gives the ``load_dataset`` calls that work on it (what the CLI
prints). Reading stays in :mod:`cerbero_hf.io`, which imports this module (never the other way round).
"""

from __future__ import annotations

import os
from pathlib import Path

from cerbero_hf.data_files import data_globs
from cerbero_hf.errors import InputError


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


def _sha256(folder: Path) -> str:
    """The sha256 of a config folder's data files (in name order), the first 16 hex digits."""
    import hashlib

    digest = hashlib.sha256()
    for f in sorted(folder.glob("train-*.parquet")):
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def arrow_nbytes(ds) -> int:
    """The in-memory Arrow size of ``ds``'s rows (what ``num_bytes`` means), also after ``filter``/``select``:
    ``ds.data.nbytes`` alone is the whole underlying table's size when ``ds`` has an indices mapping."""
    if len(ds) == 0:
        return 0
    if getattr(ds, "_indices", None) is None:
        return ds.data.nbytes
    return sum(batch.nbytes for batch in ds.with_format("arrow").iter(batch_size=10_000))


def write_parquet(ds, path: Path, row_group_rows: int = 10_000) -> None:
    """``ds.to_parquet(path)``, except that rows held in Arrow files are read as plain files
    (:mod:`cerbero_hf.arrow_files`): writing a million-row corpus keeps no gigabyte of mapped pages resident."""
    from cerbero_hf.arrow_files import record_batches, stream_files

    files = stream_files(ds)
    if not files:
        ds.to_parquet(str(path))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = ds.features.arrow_schema  # with the features in its metadata, as datasets writes it
    pending: list = []
    held = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in record_batches(ds, files):  # row groups of row_group_rows rows (the last one shorter)
            pending.append(pa.Table.from_batches([batch]).cast(schema))
            held += batch.num_rows
            if held >= row_group_rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
                pending, held = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)


def save_hub_folder(out: str | os.PathLike, configs: dict, *, card_data: dict | None = None, body: str = "",
                    pretty_name: str | None = None) -> Path:
    """Write ``{config: Dataset}`` as a Hub-layout folder with a README dataset card.

    ``default`` is the default config. ``card_data`` goes into the YAML header (language, license,
    tags, ...; the ``cerbero-hf`` tag is always added: :mod:`cerbero_hf.outputs` recognises our folders by it);
    ``body`` is the Markdown below it (:func:`cerbero_hf.cards.stage_body` renders a stage's). A config with no
    rows is written (zero-row parquet with its schema) but announced only when it is ``default`` (module
    docstring).

    Examples:
        >>> from datasets import Dataset
        >>> from cerbero_hf import load_config, save_hub_folder
        >>> rows = Dataset.from_list([{"id": "a", "text": "Ciao"}])
        >>> save_hub_folder("out/corpus", {"default": rows, "rejected": rows.select([])}).name
        'corpus'
        >>> load_config("out/corpus").num_rows, load_config("out/corpus", "rejected").num_rows
        (1, 0)
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
        write_parquet(ds, d / "train-00000-of-00001.parquet")
        if len(ds) == 0 and name != "default":
            continue  # datasets cannot load it: not announced (io.load_config still reads it)
        # Sizes in the card (as push_to_hub writes them). datasets hashes a local folder's cache key from the
        # README (configs + dataset_info) only, not from the files: without them, load_dataset(out) returns
        # stale rows after out is rewritten, or another folder's rows (datasets#6465-like).
        # The sizes alone do not tell two same-sized writes apart: the description carries the file's sha256.
        size = (d / "train-00000-of-00001.parquet").stat().st_size
        nbytes = arrow_nbytes(ds)
        infos.append({"config_name": name, "description": f"sha256 of its data: {_sha256(d)}",
                      "download_size": size, "dataset_size": nbytes,
                      "splits": [{"name": "train", "num_bytes": nbytes, "num_examples": len(ds)}]})
        entry = {"config_name": name, "data_files": [{"split": "train", "path": f"{config_dir(name)}/train-*"}]}
        if name == "default":
            entry["default"] = True
        entries.append(entry)
    card_data = dict(card_data or {})
    card_data["tags"] = list(dict.fromkeys([*(card_data.get("tags") or []), "cerbero-hf"]))
    data = DatasetCardData(**card_data, configs=entries, dataset_info=infos)
    if pretty_name:
        data.pretty_name = pretty_name
    from cerbero_hf.cards import render

    render("folder", data, body=body).save(str(out / "README.md"))
    return out


def card_header(out: Path) -> dict:
    """The YAML header of ``out/README.md`` as a dict ({} when there is none or it cannot be read)."""
    import yaml

    readme = Path(out) / "README.md"
    try:
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end if end > 0 else None]) or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def split_files(out: Path, config: str | None = None, split: str = "train") -> list[Path] | None:
    """The files of one split of a config that ``out/README.md`` declares, in path order; None when the README
    declares no configs. ``config`` None is the default config (``default: true``, else ``default``, else the
    first).

    Reading these files directly (``load_dataset("parquet", data_files=...)``, whose cache key holds each file's
    mtime) is what keeps our reads fresh: ``load_dataset(folder)`` keys its cache by the folder's name and README
    only, so a folder rewritten in place, or another folder of the same name, can give stale rows.

    Raises:
        InputError: the README declares configs, but not ``config``.
    """
    configs = [c for c in card_header(out).get("configs") or [] if isinstance(c, dict) and c.get("config_name")]
    if not configs:
        return None
    if config is None:
        chosen = next((c for c in configs if c.get("default")), None)
        if chosen is None:
            chosen = next((c for c in configs if c["config_name"] == "default"), configs[0])
    else:
        chosen = next((c for c in configs if c["config_name"] == config), None)
        if chosen is None:
            raise InputError(f"no config {config!r} (declared: {', '.join(c['config_name'] for c in configs)})",
                             file=str(out))
    globs = data_globs(chosen.get("data_files"), split)
    return sorted({f for g in globs for f in Path(out).glob(g) if f.is_file()})


def announced_configs(out: Path) -> dict[str, int | None]:
    """The configs a folder's README announces, with their row counts from ``dataset_info`` (None: unknown)."""
    data = card_header(out)
    rows = {}
    for info in data.get("dataset_info") or []:
        if isinstance(info, dict):
            rows[info.get("config_name", "default")] = sum(s.get("num_examples", 0) for s in info.get("splits") or [])
    return {c["config_name"]: rows.get(c["config_name"]) for c in data.get("configs") or []
            if isinstance(c, dict) and c.get("config_name")}


def load_calls(out: str | os.PathLike) -> list[str]:
    """The ``load_dataset(...)`` calls that load folder ``out``: one per announced config with rows."""
    out_text = str(out)
    calls = []
    for name, rows in announced_configs(Path(out)).items():
        if rows == 0:
            continue
        calls.append(f"load_dataset({out_text!r})" if name == "default" else f"load_dataset({out_text!r}, {name!r})")
    return calls


def wrote_line(out: str | os.PathLike) -> str:
    """What a CLI prints after writing folder ``out``: the ``load_dataset`` calls that work on it."""
    calls = load_calls(out)
    empty = [name for name, rows in announced_configs(Path(out)).items() if rows == 0]
    if not calls:
        return f"Wrote {out}: no rows ({', '.join(empty) or 'default'} is empty)."
    note = f" ({', '.join(empty)}: no rows)" if empty else ""
    return f"Wrote {out}: {' and '.join(calls)}{note}."


def check_kept(out: str | os.PathLike) -> None:
    """Raise :class:`InputError` when folder ``out``'s ``default`` config has no rows: ``datasets`` cannot load
    it, so a stage that kept nothing ends with exit 2 and says where the removed rows are, not as a success."""
    announced = announced_configs(Path(out))
    if announced.get("default") != 0:
        return
    removed = announced.get("rejected")
    where = f"; the {removed} removed rows load with load_dataset({str(out)!r}, 'rejected')" if removed else ""
    raise InputError(f"no row was kept, so the default config is empty and cannot be loaded{where}", file=str(out))

