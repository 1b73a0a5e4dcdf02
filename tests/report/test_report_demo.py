"""The report of the whole demo run (every stage, tiny models): written at the end of ``demo``, its numbers equal
the manifest's and the stages' outputs, and the published corpus cards carry the funnel and NLL images."""

from __future__ import annotations

import json

import pytest
from report_pages import read, rows

STAGES = ("seeds", "generate", "refine", "score", "filter", "train", "evaluate", "publish")


@pytest.fixture(scope="module")
def demo(demo_run):
    run = demo_run["run"]
    text = (run / "report.html").read_text(encoding="utf-8")
    return {**demo_run, "manifest": json.loads((run / "manifest.json").read_text()), "html": text}


def test_demo_writes_the_report_and_prints_its_path_last(demo):
    path = demo["run"] / "report.html"
    assert demo["stdout"].strip().splitlines()[-1] == f"Report: {path}"
    page = read(demo["html"])
    assert page.sections == ["funnel", "examples", "quality", "diversity", "lengths", "training", "evaluation",
                             "details"]
    # funnel, NLL, Fig. 1, similarity, lengths, loss: inline, nothing to fetch
    assert demo["html"].count("<svg") == 6
    assert "src=" not in demo["html"] and "href=\"http" not in demo["html"]
    assert demo["manifest"]["command"].startswith("cerbero-hf demo --output ")


def test_funnel_and_rules_equal_the_manifest(demo):
    counts = {s: demo["manifest"]["stages"][s]["counts"] for s in STAGES}
    funnel = {(r["attrs"]["stage"], r["attrs"]["corpus"], r["attrs"]["unit"]): {k: int(r["attrs"][k]) for k in
              ("in", "kept", "rejected")} for r in rows(demo["html"], "funnel")}
    g, f = counts["generate"], counts["filter"]
    assert funnel[("seeds", "seeds", "messages")] == {"in": counts["seeds"]["messages"] + 15, "kept": 126,
                                                      "rejected": sum(counts["seeds"]["rejected"].values())}
    assert funnel[("generate", "generated", "conversations")] == {
        "in": g["conversations"], "kept": g["complete"] + g["short"], "rejected": g["failed"]}
    assert funnel[("generate", "generated", "candidate messages")] == {
        "in": g["accepted_messages"] + g["rejected_messages"], "kept": g["accepted_messages"],
        "rejected": g["rejected_messages"]}
    assert funnel[("refine", "refined", "conversations")] == {k: counts["refine"][v] for k, v in (
        ("in", "input"), ("kept", "kept"), ("rejected", "rejected"))}
    for corpus in ("generated", "refined"):
        assert funnel[("score", corpus, "messages scored")]["kept"] == counts["score"][f"{corpus}_messages"]
        row = funnel[("filter", corpus, "conversations")]
        assert (row["kept"], row["rejected"]) == (f[f"{corpus}_kept"], f[f"{corpus}_rejected"])
    assert funnel[("train", "training mix", "rows")]["kept"] == counts["train"]["rows"]

    rules = {(r["attrs"]["stage"], r["attrs"]["corpus"], r["attrs"]["rule"]): int(r["attrs"]["rows"])
             for r in rows(demo["html"], "rules")}
    expected = {("seeds", "seeds", k): v for k, v in counts["seeds"]["rejected"].items() if v}
    expected |= {("refine", "refined", k): v for k, v in counts["refine"]["removed"].items() if v}
    expected |= {("filter", c, "mlm_nll"): f[f"{c}_rejected"] for c in ("generated", "refined") if f[f"{c}_rejected"]}
    expected |= {("generate", "generated", "selfchat"): g["failed"]} if g["failed"] else {}
    assert rules == expected
    assert "message N (user): NLL N is not &lt; N" in demo["html"]  # a reason pattern of the NLL filter


def test_distributions_are_read_from_the_stages_outputs(demo):
    from cerbero_hf.io import load_config
    from cerbero_hf.stages.quality.summary import message_nlls, summarize

    manifest = demo["manifest"]
    score = manifest["stages"]["score"]["counts"]
    threshold = manifest["stages"]["filter"]["config"]["max_nll"]
    nll = {r["attrs"]["corpus"]: r for r in rows(demo["html"], "nll")}
    for corpus in ("generated", "refined"):
        attrs = nll[corpus]["attrs"]
        assert int(attrs["messages"]) == score[f"{corpus}_messages"]
        assert float(attrs["mean"]) == pytest.approx(score[f"{corpus}_mean_nll"], abs=1e-4)  # the stage's mean
        scored = manifest["stages"]["score"]["outputs"][corpus]
        share = summarize(message_nlls(load_config(scored)), threshold=threshold)["share_under"]
        assert nll[corpus]["cells"][4] == f"{100 * share:.1f} %"  # the same summary the score stage writes
        kept = load_config(manifest["stages"]["filter"]["outputs"][corpus])
        assert nll[corpus]["cells"][5] == f"{sum(len(m) for m in kept['messages']):,}"
    fig1 = {r["attrs"]["side"]: int(r["attrs"]["messages"]) for r in rows(demo["html"], "neighbours")}
    assert fig1 == {"before": 250, "after": 250}  # sampled from the refine stage's input and kept rows
    assert manifest["stages"]["generate"]["config"]["embedder"] in demo["html"]  # with the run's embedder
    rejected = manifest["stages"]["generate"]["counts"]["rejected_similar"]
    assert f'data-rejected-similar="{rejected}"' in demo["html"]
    generated = load_config(manifest["stages"]["generate"]["outputs"]["generated"])
    lengths = {int(r["cells"][0]): int(r["cells"][1]) for r in rows(demo["html"], "lengths")}
    assert lengths == {n: sum(len(m) == n for m in generated["messages"]) for n in lengths}
    assert sum(lengths.values()) == len(generated)


def test_training_and_evaluation_beside_the_papers_numbers(demo):
    manifest = demo["manifest"]
    model = manifest["stages"]["train"]["outputs"]["model"]
    from pathlib import Path

    state = max(Path(model).glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    history = [h for h in json.loads(state.read_text())["log_history"] if "loss" in h]
    loss = [(int(r["cells"][0]), float(r["cells"][1])) for r in rows(demo["html"], "loss") if r["cells"][0] != "step"]
    assert [s for s, _ in loss] == [h["step"] for h in history]
    assert [v for _, v in loss] == pytest.approx([h["loss"] for h in history], rel=1e-3)
    assert "learning_rate" in demo["html"] and "paper (Table 1" in demo["html"]

    scores = rows(demo["html"], "scores")
    ours = next(r for r in scores if r["attrs"]["source"] == "run")
    headline = manifest["stages"]["evaluate"]["counts"]["scores"]
    assert ours["cells"][1] == f"{headline['squad_it']:.2f}" and ours["cells"][3] == f"{headline['sentipolc']:.2f}"
    paper = [r for r in scores if r["attrs"]["source"] == "paper"]
    assert paper[0]["cells"][:2] == ["paper: Mistral-7B f.t.w. Full (cerbero-7b)", "72.55"] and len(paper) == 6
    assert "for 7B models" in demo["html"]


def test_published_corpus_cards_carry_the_funnel_and_nll_images(demo):
    from pathlib import Path

    from cerbero_hf.stages.publish.files import dataset_files

    hub = Path(demo["manifest"]["stages"]["publish"]["outputs"]["local_dir"])
    for corpus in sorted((hub / "datasets").iterdir()):
        card = (corpus / "README.md").read_text()
        assert "](images/funnel.png)" in card and "](images/nll_histogram.png)" in card
        assert (corpus / "images" / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert {"images/funnel.png", "images/nll_histogram.png"} <= set(dataset_files(corpus))  # uploaded with it
