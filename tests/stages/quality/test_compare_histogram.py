"""``cerbero-hf score --compare --plot``: the histograms share one range fitted to the data, with the threshold.

Before, every summary used the fixed range [0, 5] and clipped the rest into the end bins: the demo's NLLs (5.5 to
7.5 for its tiny BERT) all piled into the last bin, one spike.
"""

from __future__ import annotations

import random

from cerbero_hf.cli.score import BINS, _compare, histogram_range


def scored_folder(path, values, source):
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"{source}{i}", [{"role": "user", "content": f"Domanda {i}?"},
                                      {"role": "assistant", "content": f"Risposta {i}."}], source, {"nll": pair})
            for i, pair in enumerate(zip(values[::2], values[1::2]))]
    return str(save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())}))


def test_compared_histograms_fit_the_data_and_share_their_bins(tmp_path):
    rng = random.Random(0)
    demo_like = [rng.uniform(5.6, 7.4) for _ in range(60)]
    wider = [rng.uniform(6.0, 9.3) for _ in range(40)]
    dirs = [scored_folder(tmp_path / "generated", demo_like, "gen"), scored_folder(tmp_path / "refined", wider, "ref")]
    summaries = _compare(dirs, None, 6.5, False)
    edges = [s["histogram"]["edges"] for s in summaries.values()]
    assert edges[0] == edges[1]  # the same bins for every corpus: the outlines compare
    lo, hi = edges[0][0], edges[0][-1]
    assert (lo, hi) == (5.5, 9.5) and len(edges[0]) == BINS + 1
    for values, s in zip((demo_like, wider), summaries.values()):
        counts = s["histogram"]["counts"]
        assert sum(counts) == len(values)
        assert max(counts) < len(values) / 4  # spread over the bins, not one spike at the edge
        assert sum(c > 0 for c in counts) > BINS / 4


def test_the_range_includes_the_threshold_and_ignores_missing_scores():
    assert histogram_range([[5.6, 7.4, None, float("nan")]], 2.0) == (2.0, 7.5)
    assert histogram_range([[0.31, 1.2]], 2.0) == (0.0, 2.0)
    assert histogram_range([[3.0, 3.0]], None) == (2.5, 3.5)  # one value: a unit around it
    assert histogram_range([[None]], None) == (0.0, 5.0)  # nothing to fit: the paper's axis
