"""``cerbero-hf demo`` end to end: every stage of the recipe offline, on tiny models.

The demo runs once per test run (the ``demo_run`` fixture, tests/support/fixtures_demo.py, offline with
``HF_HUB_OFFLINE=1``): this file checks the run, tests/report/ checks its report.
"""

import json
import subprocess
import sys

from conftest import ROOT

STAGES = ("seeds", "generate", "refine", "score", "filter", "train", "evaluate", "publish")


def test_demo_runs_every_stage_offline(demo_run, cli_env):
    env = dict(cli_env, HF_HUB_OFFLINE="1")
    stdout, stderr = demo_run["stdout"], demo_run["stderr"]  # the demo exited 0 (the fixture checks)
    run = demo_run["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in STAGES:
        entry = manifest["stages"][stage]
        assert entry["status"] == "done", stage
        assert entry["outputs"], stage
    counts = {s: manifest["stages"][s]["counts"] for s in STAGES}
    assert counts["seeds"]["paths"] == 63
    assert counts["generate"]["conversations"] == 16

    # The refinement of the bundled sample removes exactly the defects the builder planted.
    expected = json.loads((ROOT / "cerbero_hf" / "data" / "fauno_sample_expected.json").read_text())
    assert counts["refine"]["kept"] == expected["kept"]
    report = json.loads((run / "refined" / "refine_report.json").read_text())
    assert report["removed"] == {k: v for k, v in expected["removed"].items() if v}

    # Published outputs load with the real libraries in a fresh process (no network).
    hub = demo_run["out"] / "hub"
    check = f"""
import json, sys
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
kept = load_dataset(r"{hub}/datasets/cerbero-chat-it-demo-refined", split="train")
rej = load_dataset(r"{hub}/datasets/cerbero-chat-it-demo-refined", "rejected", split="train")
gen = load_dataset(r"{hub}/datasets/cerbero-chat-it-demo-generated", split="train")
tok = AutoTokenizer.from_pretrained(r"{hub}/models/cerbero-tiny-demo")
model = AutoModelForCausalLM.from_pretrained(r"{hub}/models/cerbero-tiny-demo")
text = tok.apply_chat_template([{{"role": "user", "content": "Ciao"}}], tokenize=False, add_generation_prompt=True)
annotated = all(len(json.loads(r["meta"])["foreign_language"]) == len(r["messages"]) for r in gen)  # D13
print(json.dumps({{"kept": len(kept), "rejected": len(rej), "generated": len(gen), "prompt": text,
                  "annotated": annotated}}))
"""
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["kept"] > 0 and loaded["generated"] > 0
    assert loaded["prompt"] == "<s>[|Umano|] Ciao\n[|Assistente|] "
    assert loaded["annotated"]  # every generated message carries its language flag (D13)
    assert (hub / "spaces" / "mlm_nll" / "mlm_nll.py").exists()
    card = (hub / "models" / "cerbero-tiny-demo" / "README.md").read_text()
    assert "model-index" in card and "squad_it" in card.lower()

    # Every stage's table row is printed, with the paths to look at.
    for stage in STAGES:
        assert stage in stdout
    assert "manifest.json" in stdout

    # A calm console: one line per stage, the trainer's logs as our rows; no library bars, dicts or warnings.
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/8] {stage:<8} done " in stderr, stage
    assert "  loss " in stderr and " tokens/s" in stderr
    for noise in ("{'loss'", "Loading weights", "Writing model shards", "it/s]", "Warning"):
        assert noise not in stdout + stderr, noise
