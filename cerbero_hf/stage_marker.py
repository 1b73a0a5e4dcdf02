"""Which stage, with which settings, wrote an output folder: ``<output>/.cerbero-hf-stage.json``.

:func:`cerbero_hf.outputs.prepare_output` reads it before a run writes into an existing folder, and refuses
(unless ``--overwrite``) when

- another stage wrote the folder (``generate SEEDS X`` where ``X`` holds seeds would replace them), or
- the same stage wrote it with other settings (its rows would be replaced without a word).

Settings that change how a run goes but not the rows it writes (:data:`RUNTIME`: concurrency, retries,
device, ...) are left out, so re-running with more concurrency is still a resume. A recipe re-running a stage
whose settings changed passes ``rerun`` (the recipe owns its stage folders). A folder without the file (written
by hand, or before this file existed) is not checked. The file is written once the checks pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cerbero_hf.errors import InputError
from cerbero_hf.redact import is_secret_key

MARKER = ".cerbero-hf-stage.json"
# Settings that shape how a run goes (speed, transport, resume), not the rows it writes.
RUNTIME = frozenset({
    "endpoint", "api_key_env", "token_env", "concurrency", "timeout", "request_attempts", "backoff", "retries",
    "max_failed_share", "device", "dtype", "threads", "num_proc", "batch_size", "batch_tokens", "chunk_rows",
    "resume", "cache", "update_card",
})


def settings_of(*configs: Any) -> dict | None:
    """The row-shaping settings of stage configs (dataclasses) as JSON data, secrets left out; None when one
    is not a dataclass (its settings are not compared)."""
    import dataclasses

    settings: dict = {}
    for config in configs:
        if not dataclasses.is_dataclass(config) or isinstance(config, type):
            return None
        data = json.loads(json.dumps(dataclasses.asdict(config), default=str))
        settings.update({k: v for k, v in data.items() if k not in RUNTIME and not is_secret_key(k)})
    return settings


def read(folder: Path) -> dict | None:
    """The marker of ``folder`` (``{"stage": ..., "settings": ...}``), or None when it has none we can read."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("stage"), str) else None


def _changes(before: dict, now: dict) -> str:
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    shown = [f"{k} {json.dumps(before.get(k))} -> {json.dumps(now.get(k))}" for k in keys[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check(folder: Path, stage: str, settings: dict | None, *, rerun: bool = False, label: str | None = None) -> None:
    """Refuse (:class:`InputError`) writing ``stage`` into ``folder`` when another stage, or the same stage with
    other settings, wrote it (see the module docstring)."""
    marker = read(folder)
    if marker is None:
        return
    fix = "choose another output folder, or pass --overwrite to replace it"
    if marker["stage"] != stage:
        raise InputError(f"the output folder holds the output of the {marker['stage']} stage, which {stage} would "
                         f"replace: {fix}", file=label or str(folder))
    before = marker.get("settings")
    if rerun or settings is None or not isinstance(before, dict) or before == settings:
        return
    raise InputError(f"the output folder holds a {stage} run with other settings ({_changes(before, settings)}): "
                     f"{fix}", file=label or str(folder))


def write(folder: Path, stage: str, settings: dict | None) -> None:
    """Record that ``stage`` with ``settings`` writes ``folder``."""
    (Path(folder) / MARKER).write_text(json.dumps({"stage": stage, "settings": settings}, indent=1, sort_keys=True),
                                       encoding="utf-8")
