"""``cerbero-hf score``: scoring + filtering to a Hub-layout folder, ``--compare`` with a plot, bad flags."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from cerbero_hf.cli.score import _compare
from cerbero_hf.errors import InputError
from cerbero_hf.schema import get_meta, make_row
from cerbero_hf.tiny_models import italian_sentences

UNSCORABLE = ""  # an empty message: no token to score ([UNK] is scored, test_pll_unknown_tokens.py)


def _corpus(path):
    s = italian_sentences(40)
    noise = ["zq ##xx 😀 qwk", "ppp lll zzz kkk", "Roma Roma Roma Roma", UNSCORABLE]
    rows = []
    for i in range(12):
        msgs = [{"role": "user", "content": s[i]}, {"role": "assistant", "content": s[i + 12]},
                {"role": "user", "content": noise[i % 4] if i % 3 == 0 else s[i + 24]},
                {"role": "assistant", "content": s[(i + 5) % 40]}]
        rows.append(make_row(f"c{i}", msgs, source="test"))
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def test_score_then_compare(tmp_path, tiny_mlm, cli_env):
    import datasets
    import matplotlib.image

    from cerbero_hf.stages.quality.pll import PLLScorer

    rows = _corpus(tmp_path / "in.jsonl")
    texts = sorted({m["content"] for r in rows for m in r["messages"]} - {UNSCORABLE})
    expected = dict(zip(texts, (s.nll for s in PLLScorer(tiny_mlm, device="cpu").score(texts))), **{UNSCORABLE: None})
    threshold = sorted(expected[t] for t in texts)[len(texts) // 2]  # about half the messages fail
    cli_env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "scored"
    res = run_cli(["score", tmp_path / "in.jsonl", out, "--model", tiny_mlm, "--max-nll", threshold,
                   "--chunk-rows", 5], env=cli_env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "conversations kept" in res.stdout and "share < max" in res.stdout
    kept = datasets.load_dataset(str(out), split="train")
    rejected = datasets.load_dataset(str(out), "rejected", split="train")
    assert len(kept) and len(rejected) and not (out / ".score-partial").exists()
    by_id = {r["id"]: r for r in rows}
    seen = {i: [] for i in by_id}
    for r in list(kept) + list(rejected):
        seen[r["id"]] += [m["content"] for m in r["messages"]]
        for m, v in zip(r["messages"], get_meta(r)["nll"]):  # the CLI's scores are the library's
            assert v == pytest.approx(expected[m["content"]], abs=1e-5)
    assert {i: sorted(v) for i, v in seen.items()} == {i: sorted(m["content"] for m in r["messages"])
                                                       for i, r in by_id.items()}
    for r in kept:
        assert all(v < threshold for v in get_meta(r)["nll"]) and r["messages"][-1]["role"] == "assistant"
    assert all(r["rule"] == "mlm_nll" and r["reason"].startswith("message ") for r in rejected)
    assert any(UNSCORABLE in [m["content"] for m in r["messages"]] for r in rejected)
    assert "policy `truncate`" in (out / "README.md").read_text()

    png = tmp_path / "fig" / "nll.png"
    with pytest.raises(InputError, match="no per-message NLL"):  # an unscored corpus is refused
        _compare([str(out), str(tmp_path / "in.jsonl")], png, threshold, False)
    res = run_cli(["score", "--compare", out, "--include-rejected", "--max-nll", threshold, "--plot", png],
                  env=cli_env)
    assert res.returncode == 0, res.stderr[-2000:]
    scored_messages = sum(len(r["messages"]) for r in rows) - 1  # every message but the unscorable one
    assert "scored" in res.stdout and f"{scored_messages} " in res.stdout
    assert matplotlib.image.imread(png).shape[:2] == (480, 840)


def test_score_bad_usage(tmp_path, cli_env):
    res = run_cli(["score", tmp_path / "only-one"], env=cli_env)
    assert res.returncode == 2 and "expected INPUT OUTPUT" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["score", tmp_path / "missing.jsonl", tmp_path / "out", "--policy", "cut"], env=cli_env)
    assert res.returncode == 2 and "--policy must be truncate, drop_conversation or drop_message" in res.stderr
    for flag, value in (("--max-nll", "-1"), ("--variant", "l2r"), ("--batch-tokens", "0"), ("--chunk-rows", "0")):
        res = run_cli(["score", tmp_path / "in.jsonl", tmp_path / "out", flag, value], env=cli_env)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and flag in lines[0], (flag, res.stderr)
    assert not (tmp_path / "out").exists()  # refused before reading anything
