"""The ``mlm_nll`` evaluate module (dataset_scripts/mlm_nll/) loaded through the real ``evaluate.load``.

The module's scoring core is ``pll_core.py`` in its folder; the library's ``PLLScorer`` is built on that same file
(``test_library_scorer_is_the_module_core``). Published and loaded where cerbero-hf cannot be imported:
``test_mlm_nll_standalone.py``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from cerbero_hf.resources import resource

MODULE = ROOT / "dataset_scripts" / "mlm_nll"
TEXTS = ["Mia madre prepara la cena in cucina.", "cucina cena la in madre Mia prepara", "È già là 😀, perché?"]


def test_evaluate_load_and_compute(tiny_mlm):
    import math

    import evaluate

    from cerbero_hf.stages.quality.pll import PLLScorer

    metric = evaluate.load(str(MODULE))
    out = metric.compute(predictions=TEXTS, model_id=str(tiny_mlm), max_nll=4.0)
    direct = PLLScorer(tiny_mlm, device="cpu").score(TEXTS)
    assert out["nll"] == pytest.approx([s.nll for s in direct], abs=1e-5)
    assert out["n_tokens"] == [s.n_tokens for s in direct]
    assert out["mean_nll"] == pytest.approx(sum(s.nll for s in direct) / 3)
    token_mean = sum(s.nll * s.n_tokens for s in direct) / sum(s.n_tokens for s in direct)
    assert out["token_mean_nll"] == pytest.approx(token_mean)
    assert out["pseudo_perplexity"] == pytest.approx(math.exp(token_mean))
    assert out["share_under"] == pytest.approx(sum(s.nll < 4.0 for s in direct) / 3)
    l2r = metric.compute(predictions=TEXTS[:1], model_id=str(tiny_mlm), variant="word_l2r")
    assert l2r["nll"][0] == pytest.approx(PLLScorer(tiny_mlm, device="cpu", variant="word_l2r").score(TEXTS[:1])[0].nll)
    with pytest.raises(ValueError, match="no token to score"):  # the standalone module's own error type
        metric.compute(predictions=["Ciao", ""], model_id=str(tiny_mlm))
    # the code evaluate imported is the packaged core, byte for byte
    loaded = sys.modules[type(metric).__module__]
    core = sys.modules[loaded.PLLCore.__module__]
    assert Path(core.__file__).read_bytes() == resource("mlm_nll", "pll_core.py").read_bytes()
    assert Path(core.__file__).parent == Path(loaded.__file__).parent  # copied next to the script


def test_library_scorer_is_the_module_core():
    """One implementation: ``PLLScorer`` inherits its scoring from the module folder's ``pll_core.py``, and the
    summaries use that file's ``summarize``; the release folder is a byte-identical copy of it."""
    import inspect

    from cerbero_hf.resources.mlm_nll import pll_core
    from cerbero_hf.stages.quality import pll, summary

    core_file = resource("mlm_nll", "pll_core.py")
    assert Path(pll_core.__file__).resolve() == core_file.resolve()
    assert issubclass(pll.PLLScorer, pll_core.PLLCore)
    for name in ("score", "_score", "_load", "_copies", "_forward"):
        assert name not in vars(pll.PLLScorer), f"PLLScorer redefines {name}: it must run the module core"
        assert Path(inspect.getsourcefile(getattr(pll.PLLScorer, name))).resolve() == core_file.resolve()
    assert pll.window_plan is pll_core.window_plan and pll.VARIANTS is pll_core.VARIANTS
    assert pll.TextScore is pll_core.TextScore and summary.summarize is pll_core.summarize
    assert (MODULE / "pll_core.py").read_bytes() == core_file.read_bytes()
    # neither module file needs cerbero_hf: the core imports no project code, the script only its sibling
    for name in ("pll_core.py", "mlm_nll.py"):
        code = (MODULE / name).read_text()
        assert not re.findall(r"^\s*(?:import|from)\s+cerbero_hf", code, flags=re.M), name
    assert re.findall(r"^from \.pll_core import ", (MODULE / "mlm_nll.py").read_text(), flags=re.M)


def test_space_folder_works_alone(tmp_path, tiny_mlm):
    """Copied to a Space checkout (a folder not named after the module), app.py loads the metric."""
    space = shutil.copytree(MODULE, tmp_path / "app")
    spec = importlib.util.spec_from_file_location("space_app", space / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # loads the metric, does not launch the widget (not __main__)
    assert app.module.compute(predictions=TEXTS[:1], model_id=str(tiny_mlm))["n_tokens"][0] > 3


def test_card_and_script_follow_the_rules():
    card = (MODULE / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert {"evaluate", "metric"} <= set(header["tags"])
    for section in ("## Metric Description", "### Inputs", "### Output Values", "## Limitations", "## Citation"):
        assert section in card
    assert "Salazar" in card and "2311.15698" in card
    script = (MODULE / "mlm_nll.py").read_text()
    # evaluate reads the first module of an `import a, b` line only: one module per import statement
    assert not re.findall(r"^\s*import\s+[^\n]*,", script, flags=re.M)


def test_requirements_name_only_registry_packages_and_accept_the_tested_stack():
    """The Space installs requirements.txt: PyPI packages only (no cerbero-hf, no URL or path), and the versions
    this suite runs with satisfy every range."""
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.version import Version

    lines = [line.strip() for line in (MODULE / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line and not line.startswith("#")]
    names = {r.name.lower() for r in reqs}
    assert {"evaluate", "datasets", "transformers", "torch"} <= names and not {"cerbero-hf", "cerbero_hf"} & names
    for r in reqs:
        assert r.url is None and r.specifier, f"{r}: a registry package with a version range"
        assert r.specifier.contains(Version(version(r.name)).public), f"{r.name} {version(r.name)} is outside {r}"
