"""Writing the report: collect the run's numbers, render the sections, write one self-contained HTML file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cerbero_hf.redact import REDACTED, is_secret_key

NAME = "report.html"
PLOT_NOTE = ("Figures are left out: matplotlib is not installed (pip install 'cerbero-hf[plot]'); "
             "the tables hold every number.")


def write_report(run_dir: str | Path, output: str | Path | None = None, *, examples: int = 3, seed: int = 0,
                 embedder: str | None = None) -> Path:
    """Write the report of the run in ``run_dir`` (its ``output_dir``, holding ``manifest.json``) and return its path.

    Args:
        run_dir: a run's output folder (a ``cerbero-hf demo`` output folder works too: its ``run/``).
        output: the HTML file to write (default ``<run_dir>/report.html``).
        examples: rows shown per rule and per kept corpus.
        seed: the sampling seed of those rows (the same seed shows the same rows).
        embedder: the embedding model of Fig. 1 (a folder or a Hub id in the local cache; ``"none"``: no Fig. 1);
            default: the run's generate embedder, else the language pack's, when it is on this machine.

    Returns:
        The path of the written file: one HTML file with inline styles and figures (SVG), no script, nothing
        fetched when it opens. Figures need matplotlib (the ``plot`` extra); without it the page says so.
    """
    from cerbero_hf.report.collect import collect
    from cerbero_hf.report.figures import available
    from cerbero_hf.report.html import note, page
    from cerbero_hf.report.manifest import find_manifest
    from cerbero_hf.report.sections import SECTIONS

    manifest_path = find_manifest(run_dir)
    data = collect(manifest_path.parent, examples_per_rule=examples, seed=seed, embedder=embedder)
    plots = available()
    parts = []
    for anchor, heading, render in SECTIONS:
        inner = render(data, plots)
        if inner:
            parts.append((anchor, heading, inner))
    if not plots and parts:
        anchor, heading, inner = parts[0]
        parts[0] = (anchor, heading, note(PLOT_NOTE) + inner)
    run = manifest_path.parent
    ran = ", ".join(data["stages"]) or "none yet"
    subtitle = [f"Run folder: {run}", f"Stages done: {ran}",
                f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} by cerbero-hf {_version()}"]
    text = page(f"cerbero-hf run report: {run.name}", subtitle, parts)
    out = Path(output) if output else run / NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # whole or not at all, even with two writers
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _version() -> str:
    import cerbero_hf

    return cerbero_hf.__version__


def public_command(argv: list[str]) -> str:
    """A command line as the report shows it: the value of a secret setting (``--set publish.token=...``, ``--token
    X``) replaced by ``<redacted>``."""
    import shlex

    out, hide_next = [], False
    for arg in map(str, argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        key, sep, _ = arg.partition("=")
        name = key.lstrip("-").split(".")[-1]
        if sep and is_secret_key(name):
            out.append(f"{key}={REDACTED}")
            continue
        hide_next = arg.startswith("--") and not sep and is_secret_key(name)
        out.append(arg)
    return shlex.join(out)


def record_command(run_dir: str | Path, argv: list[str]) -> None:
    """Store the command that ran (secrets redacted) in the run's ``manifest.json``, for the report."""
    from cerbero_hf.report.manifest import find_manifest

    path = find_manifest(run_dir)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["command"] = public_command(argv)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)
