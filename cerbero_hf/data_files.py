"""The ``data_files`` of a dataset card's ``configs:`` entry, as glob patterns.

One reader for the three places that need them: reading a config's files (:func:`cerbero_hf.hub_folder.split_files`),
counting a card's rows (:mod:`cerbero_hf.cards`) and choosing the files publish uploads
(:mod:`cerbero_hf.stages.publish.files`).
"""

from __future__ import annotations


def data_globs(data_files, split: str | None = None) -> list[str]:
    """The glob patterns of a ``configs:`` entry's ``data_files`` (a glob, a list, or ``{split, path}`` entries whose
    path is a glob or a list of them), of one ``split`` (None: every split; a bare glob is ``train``)."""
    if isinstance(data_files, str):
        return [data_files] if split in (None, "train") else []
    if isinstance(data_files, dict):
        if split is not None and data_files.get("split", "train") != split:
            return []
        return data_globs(data_files.get("path", list(data_files.values())))
    if isinstance(data_files, list):
        return [g for item in data_files for g in data_globs(item, split)]
    return []
