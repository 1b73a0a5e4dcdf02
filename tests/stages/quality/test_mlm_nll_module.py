"""The ``mlm_nll`` evaluate module (dataset_scripts/mlm_nll/) loaded through the real ``evaluate.load``."""

from __future__ import annotations

import importlib.util
import re
import shutil

import pytest
import yaml
from conftest import ROOT

MODULE = ROOT / "dataset_scripts" / "mlm_nll"
TEXTS = ["Mia madre prepara la cena in cucina.", "cucina cena la in madre Mia prepara", "È già là 😀, perché?"]


def test_evaluate_load_and_compute(tiny_mlm):
    import math

    import evaluate

    from cerbero_hf.errors import InputError
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
    with pytest.raises(InputError, match="no token to score"):
        metric.compute(predictions=["Ciao", ""], model_id=str(tiny_mlm))


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
    assert not re.findall(r"^\s*(?:import|from)\s+[^\n]*,", script, flags=re.M)  # one import per line
    reqs = (MODULE / "requirements.txt").read_text()
    assert "cerbero-hf==" in reqs and "evaluate==" in reqs
