"""Resumable scoring work: the folder an interrupted ``score`` leaves behind, and the key that says whether it
can be reused. Both the local path (:mod:`.folders`) and the Ray path (:mod:`.ray_score`) keep their finished
chunks there, so a re-run with the same input and settings picks up where the last one stopped."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

PARTIAL = ".score-partial"  # inside the output folder; removed once the output is written


def resume_key(folder: Path, *settings) -> str:
    """The key of a resumable work ``folder``: a hash of ``settings`` (JSON values). A ``folder`` whose ``key`` file
    holds another key was left by a different input or settings and is removed (start over); the caller writes
    the key once it starts writing there."""
    key = hashlib.sha256(json.dumps(list(settings)).encode()).hexdigest()
    if (folder / "key").exists() and (folder / "key").read_text() != key:
        shutil.rmtree(folder)
    return key
