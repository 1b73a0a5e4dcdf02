"""The published ``mlm_nll`` metric runs without cerbero-hf: loaded from the Hub emulator in a process that cannot
import ``cerbero_hf``, it gives the library's scores."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from cerbero_hf.resources import resource

MODULE = ROOT / "dataset_scripts" / "mlm_nll"
REPO = "alone/mlm_nll"  # its own namespace: the emulator's store is shared by the session's tests
TEXTS = ["Mia madre prepara la cena in cucina.", "cucina cena la in madre Mia prepara", "È già là 😀, perché?",
         " ".join(["La nonna racconta una storia lunga ai nipoti la sera."] * 8)]  # past the 64-token window

CHILD = """
import hashlib
import json
import sys

sys.modules["cerbero_hf"] = None  # any import of cerbero_hf (or of a submodule) now raises ImportError
try:
    import cerbero_hf  # noqa: F401
except ImportError:
    blocked = True
else:
    blocked = False

import evaluate
import torch

torch.set_num_threads(1)  # as in the test process: the same float reduction order
metric = evaluate.load(REPO)
out = {v: metric.compute(predictions=TEXTS, model_id=MODEL, variant=v) for v in ("pll", "word_l2r")}
script = sys.modules[type(metric).__module__]
core = sys.modules[script.PLLCore.__module__]
project = sorted(n for n, m in sys.modules.items() if n.split(".")[0] == "cerbero_hf" and m is not None)
print(json.dumps(dict(blocked=blocked, project=project, out=out, core=core.__file__,
                      core_sha=hashlib.sha256(open(core.__file__, "rb").read()).hexdigest())))
"""


def test_published_metric_scores_like_the_library_without_cerbero_hf(hub_emulator, hub_env, tiny_mlm, tmp_path):
    from cerbero_hf.stages.publish.hub import publish_metric
    from cerbero_hf.stages.quality.pll import PLLScorer

    result = publish_metric(MODULE, REPO, endpoint=hub_env["HF_ENDPOINT"], token=hub_env["HF_TOKEN"], retries=0)
    assert {"mlm_nll.py", "pll_core.py", "requirements.txt"} <= {s.path for s in result.files}
    space = hub_emulator.files("space", REPO)
    assert space["pll_core.py"] == resource("mlm_nll", "pll_core.py").read_bytes()
    assert space["requirements.txt"] == (MODULE / "requirements.txt").read_bytes()  # PyPI names only: see
    # test_mlm_nll_module.py::test_requirements_name_only_registry_packages_and_accept_the_tested_stack

    # A fresh interpreter: no PYTHONPATH (hub_env puts the repository on it), started in an empty folder, with
    # cerbero_hf blocked in sys.modules, whatever way the package is installed here.
    env = {k: v for k, v in hub_env.items() if k != "PYTHONPATH"}
    code = f"REPO, TEXTS, MODEL = {REPO!r}, {TEXTS!r}, {str(tiny_mlm)!r}\n" + textwrap.dedent(CHILD)
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["blocked"] and got["project"] == []
    assert got["core_sha"] == hashlib.sha256(resource("mlm_nll", "pll_core.py").read_bytes()).hexdigest()
    assert not Path(got["core"]).resolve().is_relative_to(ROOT)  # evaluate's downloaded copy, not the repository's
    paths = [r.path for r in hub_emulator.requests("GET", rf"^/spaces/{REPO}/resolve/")]
    assert f"/spaces/{REPO}/resolve/main/pll_core.py" in paths  # fetched from the Space with the script

    for variant, out in got["out"].items():
        lib = PLLScorer(tiny_mlm, device="cpu", variant=variant).score(TEXTS)
        assert out["nll"] == pytest.approx([s.nll for s in lib], abs=1e-6, rel=0), variant
        assert out["n_tokens"] == [s.n_tokens for s in lib], variant
    assert got["out"]["pll"]["n_tokens"][-1] > 64  # the long text went through the sliding windows
