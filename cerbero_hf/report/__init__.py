"""The run report: one self-contained HTML page of a run's funnel, examples, figures, training and scores.

``cerbero_hf.report(run_dir, output=None, *, examples=3, seed=0, embedder=None) -> Path`` writes ``<run_dir>/report.html``
(``cerbero-hf report RUN_DIR``; ``run`` and ``demo`` write it at the end). This package is that callable: calling
it calls :func:`cerbero_hf.report.build.write_report`, so ``from cerbero_hf import report; report("runs/x")``
works however the package was first imported.

- :mod:`~cerbero_hf.report.collect` and :mod:`~cerbero_hf.report.measures`: what the run wrote (``manifest.json``
  counts, rejected rows' rules and reasons, NLL / similarity / length distributions, the loss curve, scores);
- :mod:`~cerbero_hf.report.neighbours`: paper Fig. 1 (nearest-neighbour distances before and after refining);
- :mod:`~cerbero_hf.report.tables`: pyarrow readers (columns only, sampled rows, per-message lists from ``meta``);
- :mod:`~cerbero_hf.report.figures`: matplotlib figures as inline SVG (the ``plot`` extra; optional);
- :mod:`~cerbero_hf.report.html` and :mod:`~cerbero_hf.report.sections`: the escaped page, no script;
- :mod:`~cerbero_hf.report.card_figures`: the funnel and NLL images of a published dataset card.

Examples:
    A run folder is any folder holding the ``manifest.json`` that ``cerbero-hf run`` writes; this one has no stage
    done yet, so its page holds the run details only:

    >>> import json, pathlib
    >>> from cerbero_hf import report
    >>> run = pathlib.Path("out/run")
    >>> run.mkdir(parents=True)
    >>> _ = (run / "manifest.json").write_text(json.dumps({"stages": {}}))
    >>> report(run)
    PosixPath('out/run/report.html')
    >>> report(run, "out/elsewhere.html", examples=5, seed=1)
    PosixPath('out/elsewhere.html')
    >>> page = report("runs/cerbero")  # a run of the paper's recipe  # doctest: +SKIP

    A folder without a manifest is an input error (``cerbero-hf report`` prints it as one line, exit 2):

    >>> report("no-such-run")
    Traceback (most recent call last):
    ...
    cerbero_hf.errors.InputError: file no-such-run: no manifest.json here...
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, run_dir, output=None, *, examples: int = 3, seed: int = 0, embedder: str | None = None):
        """Write the report of ``run_dir``; see :func:`cerbero_hf.report.build.write_report`."""
        from cerbero_hf.report.build import write_report

        return write_report(run_dir, output, examples=examples, seed=seed, embedder=embedder)


sys.modules[__name__].__class__ = _CallableModule
report = sys.modules[__name__]  # ``from cerbero_hf.report import report`` is this callable package too
