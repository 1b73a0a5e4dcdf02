"""Which files of a folder ``publish`` uploads: the files the stage that made it wrote, plus the user's ``--include``.

Links. ``publish`` never follows a symbolic link out of the folder: a link, to a file or a folder, whose target
lies outside the folder is refused with one line naming it, before any request is sent (whether or not its name
is one that would be uploaded). A link whose target lies inside the folder is published under the link's own path
with its target's content, as a copy would be (the target itself is published at its own path only when it is
one of the files below); a link to a folder inside is walked, except a link back to one of its own parents.

What is uploaded, by kind (paths relative to the folder; ``*`` stays within one folder level unless noted):

- dataset (``io.save_hub_folder`` + ``cards.dataset_card`` output): ``README.md``, the data files of the
  configs its README declares (``configs: ... data_files``; an unannounced, empty config is not), the card's
  ``images/nll_histogram.png`` and ``images/funnel.png``, and the refine stage's ``refine_report.json``;
- model (``save_pretrained`` output, the train stage's card and record, a LoRA adapter): :data:`MODEL_FILES`
  (``config.json``, ``*.safetensors``, the tokenizer files, ``chat_template.jinja``, ``cerbero_train.json``,
  ``results.json``, ``adapter_*`` ...), and the training state only with ``include_training_state``;
- metric (an ``evaluate`` module folder): ``*.py``, ``README.md`` and ``requirements.txt``.

Anything else (notes, logs, stray data) is left out unless a user pattern (``include``, the CLI's repeatable
``--include``) matches it: a glob on the path relative to the folder, matched as ``hf upload --include`` does
(``fnmatch``: ``*`` matches across ``/``; a pattern ending in ``/`` is a folder and everything under it).
VCS and cache folders (:data:`SKIP_DIRS`) and lock/bytecode files are never uploaded, even when included.
Every ``*.parquet`` to upload must be a parquet file (``PAR1`` at both ends), else it is refused with one line.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from cerbero_hf.cards import FUNNEL, HISTOGRAM
from cerbero_hf.data_files import data_globs
from cerbero_hf.errors import InputError
from cerbero_hf.stages.publish.training_state import is_training_state

SKIP_DIRS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints", ".huggingface"}
SKIP_SUFFIXES = (".pyc", ".lock", ".incomplete")
DATASET_FILES = ("README.md", HISTOGRAM, FUNNEL, "refine_report.json")
MODEL_FILES = (
    "README.md", "config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
    "pytorch_model*.bin", "pytorch_model.bin.index.json", "adapter_config.json", "adapter_model.bin",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json", "additional_chat_templates/*.jinja", "training_args.bin", "cerbero_train.json",
    "results.json")
METRIC_FILES = ("*.py", "README.md", "requirements.txt")
PARQUET_MAGIC = b"PAR1"


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _walk(directory: Path, prefix: str, root: Path, parents: tuple[Path, ...]):
    """``(repo path, file to read)`` under ``directory``; refuses a link out of ``root`` (module docstring)."""
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if (entry.name in SKIP_DIRS and entry.is_dir()) or entry.name.endswith(SKIP_SUFFIXES):
            continue
        real = Path(os.path.realpath(entry))
        if entry.is_symlink() and not _within(real, root):
            raise InputError(f"a symbolic link to {real}, outside the folder: publish does not follow links out "
                             "of the folder (copy the file in, or remove the link)", file=str(entry))
        if entry.is_dir():
            if real not in parents:  # a link back to a parent folder would walk forever
                yield from _walk(entry, f"{prefix}{entry.name}/", root, (*parents, real))
        elif entry.is_file():
            yield f"{prefix}{entry.name}", real if entry.is_symlink() else entry


def local_files(folder) -> dict[str, Path]:
    """Every file under ``folder`` by repo path, but caches, VCS folders and lock/bytecode files; a symbolic link out
    of the folder is an :class:`InputError` naming it (module docstring)."""
    root = Path(os.path.realpath(folder))
    return dict(_walk(Path(folder), "", root, (root,)))


def matches(path: str, patterns) -> bool:
    """True when repo path ``path`` matches one of the ``fnmatch`` ``patterns`` (``dir/``: everything under it)."""
    return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)


def _top(path: str, patterns) -> bool:
    """``matches`` where a pattern's ``*`` stays within its folder level."""
    return any(fnmatch.fnmatch(path, p) and path.count("/") == p.count("/") for p in patterns)


def select(folder, keep, include=()) -> dict[str, Path]:
    """The files of ``folder`` that ``keep(path)`` accepts or a user pattern in ``include`` matches, parquet checked."""
    files = {path: src for path, src in local_files(folder).items() if keep(path) or matches(path, include)}
    for path, src in files.items():
        if path.endswith(".parquet"):
            check_parquet(src, Path(folder) / path)
    return files


def check_parquet(src: Path, shown: Path) -> None:
    """Refuse a ``*.parquet`` file that is not parquet (no ``PAR1`` magic at its start and end), naming ``shown``."""
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(4)
        fh.seek(max(0, size - 4))
        tail = fh.read(4)
    if size < 12 or head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise InputError("not a parquet file (no PAR1 magic bytes): publish does not upload it", file=str(shown))


def data_patterns(folder) -> list[str]:
    """The ``data_files`` globs of the configs ``folder/README.md`` declares (string, list, or split/path entries)."""
    from huggingface_hub import DatasetCard

    readme = Path(folder) / "README.md"
    try:
        configs = DatasetCard.load(readme).data.to_dict().get("configs") or []
    except Exception as err:  # noqa: BLE001 - a README huggingface_hub cannot parse: one line naming it
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"the card's YAML cannot be read: {detail}", file=str(readme)) from None
    found: list[str] = []
    for config in configs if isinstance(configs, list) else []:
        found += data_globs(config.get("data_files") if isinstance(config, dict) else None)
    return found


def dataset_files(folder, include=()) -> dict[str, Path]:
    """The files of a Hub-layout dataset folder to upload (module docstring)."""
    declared = data_patterns(folder)
    if not declared:
        raise InputError("not a Hub-layout dataset folder: its README.md declares no configs with data_files",
                         file=str(Path(folder) / "README.md"))
    return select(folder, lambda path: path in DATASET_FILES or matches(path, declared), include)


def model_files(folder, include_training_state: bool = False, include=()) -> dict[str, Path]:
    """The files of a model (or LoRA adapter) folder to upload; the training state only with
    ``include_training_state`` (module docstring)."""
    return select(folder, lambda path: _top(path, MODEL_FILES) or (include_training_state
                                                                    and is_training_state(path)), include)


def metric_files(folder, include=()) -> dict[str, Path]:
    """The files of an ``evaluate`` module folder to upload (module docstring)."""
    return select(folder, lambda path: _top(path, METRIC_FILES), include)
