"""The run report's fixtures (auto-loaded by conftest.py as a pytest plugin), shared by tests/report/.

* ``demo_run`` (fixtures_demo.py): the whole demo, run once per test run;
* ``planted_run`` (session, shared like ``report_demo_run``): a partial run of the real recipe, ``seeds`` and
  ``refine`` only, on inputs with planted HTML (``<script>``, ``<img onerror>``, an id with tags), so the report
  has untrusted text to escape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, built_once

DATA = ROOT / "cerbero_hf" / "data"
SCRIPT = "<script>document.title='pwned';document.body.innerHTML='PWNED'</script>"
IMG = '<img src="http://127.0.0.1:9/planted.png" onerror="document.title=\'pwned-img\'">'
PLANTED_ID = "<i>planted-id</i>"


def _planted_inputs(folder: Path) -> tuple[Path, Path]:
    """An OASST-shaped file (the packaged sample plus a planted tree) and a Fauno-shaped file with planted rows."""
    seeds = folder / "oasst.jsonl"
    tree = "00000000-0000-4000-8000-000000000001"
    planted = [
        {"message_id": tree, "parent_id": None, "message_tree_id": tree, "role": "prompter", "lang": "it",
         "text": f"Come si scrive {SCRIPT} in una pagina?", "deleted": False, "rank": None, "review_result": True},
        {"message_id": "00000000-0000-4000-8000-000000000002", "parent_id": tree, "message_tree_id": tree,
         "role": "assistant", "lang": "it", "text": f"Così: {IMG} e poi </details></div>", "deleted": False,
         "rank": None, "review_result": True},
        {"message_id": "00000000-0000-4000-8000-000000000003", "parent_id": tree, "message_tree_id": tree,
         "role": "assistant", "lang": "en", "text": f"In English: {SCRIPT}", "deleted": False, "rank": None,
         "review_result": True},
    ]
    seeds.write_text((DATA / "oasst_sample_it.jsonl").read_text() + "".join(json.dumps(r) + "\n" for r in planted))
    lines = (DATA / "fauno_sample.jsonl").read_text().splitlines()[:40]
    extra = [
        {"id": PLANTED_ID, "input": f"[|Umano|] Cosa fa {SCRIPT}?\n[|AI|] Niente di buono: {IMG}\n"},
        {"id": "planted-order", "input": f"[|AI|] {SCRIPT} risposta senza domanda\n[|Umano|] {IMG}\n"},
        {"id": "planted-long", "input": "[|Umano|] Raccontami una storia lunga.\n[|AI|] " + "C'era una volta un "
                                        "re che amava le mappe e i viaggi lontani. " * 30 + SCRIPT + "\n"},
    ]
    refine = folder / "fauno.jsonl"
    refine.write_text("\n".join(lines) + "\n" + "".join(json.dumps(r) + "\n" for r in extra))
    return seeds, refine


def planted_recipe(folder: Path) -> Path:
    """A recipe running ``seeds`` and ``refine`` on the planted inputs into ``folder/run``."""
    seeds, refine = _planted_inputs(folder)
    recipe = folder / "recipe.yaml"
    off = "".join(f"{s}:\n  enabled: false\n" for s in ("generate", "score", "filter", "train", "evaluate", "publish"))
    recipe.write_text(f"output_dir: {folder / 'run'}\nlanguage: it\nseed: 42\nseeds:\n  input: {seeds}\n"
                      f"refine:\n  inputs: [{refine}]\n  lang_action: flag\n  num_proc: 1\n{off}")
    return recipe


@pytest.fixture(scope="session")
def planted_run(tiny_models_dir) -> Path:
    """The output_dir of the planted partial run (seeds and refine done, nothing else), made once per test run."""
    from cerbero_hf.recipe import load_recipe, run_recipe

    def build(path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        run_recipe(load_recipe(planted_recipe(path)))

    return built_once(tiny_models_dir.parent / "report-planted", build) / "run"
