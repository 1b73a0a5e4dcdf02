"""A run's ``manifest.json`` for the report: finding it, reading it, and finding again the paths it recorded."""

from __future__ import annotations

import json
from pathlib import Path

from cerbero_hf.errors import InputError


def find_manifest(run_dir: str | Path) -> Path:
    """``RUN_DIR/manifest.json`` (or ``RUN_DIR/run/manifest.json``: a ``demo`` output folder)."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "manifest.json", run_dir / "run" / "manifest.json"):
        if candidate.is_file():
            return candidate
    raise InputError("no manifest.json here: give the output_dir of a `cerbero-hf run` (or a demo folder)",
                     file=str(run_dir))


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the manifest: {err}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise InputError("not a run manifest (no 'stages' mapping)", file=str(path))
    return data


def locate(run_dir: Path, manifest: dict, path: str | None) -> Path | None:
    """A path the manifest recorded, found again when the run folder was moved (relative to ``output_dir``)."""
    if not path:
        return None
    if Path(path).exists():
        return Path(path)
    recorded = (manifest.get("recipe") or {}).get("output_dir")
    try:
        moved = run_dir / Path(path).relative_to(recorded) if recorded else None
    except ValueError:
        return None
    return moved if moved is not None and moved.exists() else None


def done(manifest: dict) -> dict[str, dict]:
    """The manifest's finished stages, in pipeline order."""
    from cerbero_hf.stages import NAMES

    entries = manifest["stages"]
    order = [s for s in NAMES if s in entries] + [s for s in entries if s not in NAMES]
    return {s: entries[s] for s in order if isinstance(entries[s], dict) and entries[s].get("status") == "done"}
