"""Build the training-mix dataset folder (Cerbero-7B §4, D28) ready for ``cerbero-hf publish``.

The ``full`` condition concatenates the NLL-filtered refined (Fauno) and generated corpora and shuffles them
with a recorded seed, exactly as ``cerbero-hf train`` does before fine-tuning
(``cerbero_hf.stages.train.data.build_training_set``). Conversations that cannot be trained on (no assistant
reply, unknown role) go to the ``rejected`` config with ``rule`` and ``reason``; the card is rendered from
``README.md.j2`` beside this file.

    python dataset_scripts/training_mix/build.py fauno=work/refined-scored generated=work/generated-scored \
        --out work/training-mix --seed 42
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build(corpora: list[str], out, *, condition: str = "full", seed: int = 42, language: str = "it",
          repo_id: str | None = None, license: str = "cc-by-nc-4.0") -> dict:
    """Write ``out`` (configs ``default`` and ``rejected``, README card); returns the mix report."""
    from datasets import Dataset

    from cerbero_hf.cards import dataset_card
    from cerbero_hf.io import load_table, save_hub_folder
    from cerbero_hf.schema import features, make_row, rejected_features
    from cerbero_hf.stages.train.data import Corpus, build_training_set

    ds, report = build_training_set(corpora, condition=condition, seed=seed, language=language)
    by_corpus: dict[str, dict[str, str]] = {}
    for s in report["skipped"]:
        by_corpus.setdefault(s["corpus"], {})[s["id"]] = s["reason"]
    rejected = []
    for c in map(Corpus.parse, corpora):
        reasons = by_corpus.get(c.name, {})
        for i, row in enumerate(load_table(c.path, config=c.config, split=c.split) if reasons else []):
            rid = str(row.get("id") or f"{c.name}-{i}")
            if rid in reasons:
                rejected.append({**make_row(rid, row["messages"], row.get("source") or c.name, {}),
                                 "rule": "trainable", "reason": reasons[rid]})
    kept = [make_row(r["id"], r["messages"], r["source"], {"mix_seed": seed}) for r in ds]
    save_hub_folder(out, {"default": Dataset.from_list(kept, features=features()),
                          "rejected": Dataset.from_list(rejected, features=rejected_features())})
    counts = {f"{c['name']} rows in": c["rows_in"] for c in report["corpora"]}
    counts |= {f"{c['name']} rows used": c["rows_used"] for c in report["corpora"]}
    counts["not trainable (rejected)"] = len(rejected)
    counts["training mix"] = len(kept)
    dataset_card(out, template=Path(__file__).with_name("README.md.j2"), repo_id=repo_id,
                 pretty_name="Cerbero training mix", language=language, license=license,
                 recipe={"condition": condition, "corpora": {c["name"]: {"path": c["hub_id"] or Path(c["path"]).name,
                                                                         "weight": c["weight"]}
                                                             for c in report["corpora"]}},
                 seeds={"shuffle": seed}, stage_counts=counts, tags=("conversational", "sft"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", help="NAME=PATH[@WEIGHT]: fauno=... generated=...")
    parser.add_argument("--out", required=True)
    parser.add_argument("--condition", default="full")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--language", default="it")
    parser.add_argument("--repo-id", default=None, help="Hub id shown in the card's loading snippet.")
    args = parser.parse_args()
    report = build(args.corpora, args.out, condition=args.condition, seed=args.seed, language=args.language,
                   repo_id=args.repo_id)
    print(json.dumps({k: v for k, v in report.items() if k != "skipped"}, indent=1))


if __name__ == "__main__":
    main()
