"""Paper Fig. 1 in the report: nearest-neighbour embedding distances of the refined corpus before and after
refining, drawn with the run's embedder when it is on this machine, and a note (never a download) when not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset
from report_pages import read, rows

from cerbero_hf.io import save_hub_folder
from cerbero_hf.report.build import write_report
from cerbero_hf.report.neighbours import distances


def test_distances_are_the_k_nearest_others_with_identical_ones_ignored():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 8))
    v[7] = v[3]  # an exact copy: neither is the other's neighbour
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    got = distances(v, k=4)
    expected = []
    for i in range(len(v)):
        d = sorted(1 - float(v[i] @ v[j]) for j in range(len(v)) if 1 - float(v[i] @ v[j]) > 1e-6)
        expected += d[:4]
    assert got.shape == (30 * 4,)
    assert np.allclose(got, expected, atol=1e-5)
    assert distances(v[:1]).size == 0  # one message has no neighbour


def _refined_run(tmp_path, embedder) -> tuple:
    """A run whose refine stage kept distinct questions and rejected near-copies of them."""
    topics = ["il pane", "la pasta", "il treno", "la montagna", "il mare", "la musica", "il calcio", "la pioggia",
              "il gatto", "la scuola", "il lavoro", "la città"]
    kept = [{"id": f"k{i}", "messages": [{"role": "user", "content": f"Parlami di {t}."},
                                         {"role": "assistant", "content": f"Ecco cosa so su {t} e dintorni."}],
             "source": "fauno", "meta": "{}"} for i, t in enumerate(topics)]
    copies = [{**row, "id": f"r{i}-{j}", "messages": [{"role": m["role"], "content": m["content"] + " " + extra}
                                                     for m in row["messages"]], "rule": "duplicates",
               "reason": "near copy"} for i, row in enumerate(kept) for j, extra in enumerate(("Grazie!", "Ciao."))]
    folder = tmp_path / "run" / "refined"
    save_hub_folder(folder, {"default": Dataset.from_list(kept), "rejected": Dataset.from_list(copies)})
    manifest = {"stages": {"refine": {"status": "done", "outputs": {"refined": str(folder)},
                                      "counts": {"input": 36, "kept": 12, "rejected": 24},
                                      "config": {"language": "it"}},
                           "generate": {"status": "skipped", "config": {"embedder": str(embedder)}}}}
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "run", kept, copies


def test_fig1_embeds_the_refine_input_and_its_kept_rows_with_the_runs_embedder(tmp_path, tiny_embedder):
    run, kept, copies = _refined_run(tmp_path, tiny_embedder)
    html = write_report(run).read_text(encoding="utf-8")
    sides = {r["attrs"]["side"]: r for r in rows(html, "neighbours")}
    assert int(sides["before"]["attrs"]["messages"]) == 2 * (len(kept) + len(copies))
    assert int(sides["after"]["attrs"]["messages"]) == 2 * len(kept)
    assert sides["after"]["cells"][2] == f"{2 * len(kept) * 10:,}"  # 24 messages, 10 neighbours each
    before, after = (float(sides[s]["cells"][3]) for s in ("before", "after"))
    assert before < after  # the near-copies the refine stage removed sat close to their originals
    assert str(tiny_embedder) in html and "diversity" in read(html).sections


@pytest.mark.parametrize("embedder, why", [("nobody/not-on-this-machine", "is not on this machine"),
                                           ("none", "skipped (--embedder none)")])
def test_without_an_embedder_fig1_is_a_note_and_nothing_is_fetched(tmp_path, tiny_embedder, embedder, why):
    run, _, _ = _refined_run(tmp_path, tiny_embedder)
    html = write_report(run, embedder=embedder).read_text(encoding="utf-8")
    assert why in html and not rows(html, "neighbours")
    assert "funnel" in read(html).sections  # the rest of the report is there
