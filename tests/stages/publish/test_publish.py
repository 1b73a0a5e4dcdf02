"""Publishing through the real clients against the Hub emulator (cerbero_hf.stages.publish.hub, ``cerbero-hf publish``).

Every publish runs the CLI in a subprocess with ``HF_ENDPOINT`` pointed at the emulator, and every load runs
in a fresh process with an empty ``HF_HOME``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, run_cli


def run_py(code: str, env: dict, timeout: int = 300) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    OUTPUTS.append(proc.stdout + proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def publish(args, env, ok=True):
    proc = run_cli(["publish", *map(str, args)], env=env)
    OUTPUTS.append(proc.stdout + proc.stderr)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


OUTPUTS: list[str] = []  # every subprocess output of this module, scanned for the token at the end


def fresh(env: dict, tmp_path: Path, name: str) -> dict:
    """The same environment with a new, empty HF_HOME: a fresh machine's cache."""
    home = tmp_path / name
    home.mkdir()
    return {**env, "HF_HOME": str(home)}


def rows(n: int, prefix: str = "g") -> list[dict]:
    from cerbero_hf.schema import make_row

    return [make_row(f"{prefix}{i}", [{"role": "user", "content": f"Come si cucina la pasta n. {i}?"},
                                      {"role": "assistant", "content": f"Si fa bollire l'acqua, poi {i} minuti."}],
                     "generated", {"nll": [1.0 + i / 10, 1.5]}) for i in range(n)]


def corpus_folder(path: Path, kept: list[dict], repo_id: str) -> Path:
    """A Hub-layout corpus: default + rejected configs, card rendered from dataset_scripts/generated_corpus."""
    from datasets import Dataset

    from cerbero_hf.cards import dataset_card
    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row, rejected_features

    rejected = [dict(make_row("r0", [{"role": "user", "content": "Ciao"}], "generated", {}),
                     rule="similarity", reason="cosine 0.95 > 0.9")]
    save_hub_folder(path, {"default": Dataset.from_list(kept, features=features()),
                           "rejected": Dataset.from_list(rejected, features=rejected_features())})
    dataset_card(path, repo_id=repo_id, models={"generator": "tiny-mistral@0123abc"},
                 recipe={"generate": {"temperature": 0.7, "max_turns": 3}}, thresholds={"similarity": 0.9},
                 seeds={"shuffle": 42}, stage_counts={"seeds": 4, "generated": len(kept) + 1,
                                                      "rejected by similarity": 1},
                 nll=[0.8, 1.2, 1.9, 2.4])
    return path


def test_publish_corpus_then_load_dataset_and_card_merge(hub_emulator, hub_env, tmp_path):
    repo = "user/corpus-roundtrip"
    folder = corpus_folder(tmp_path / "corpus", rows(5), repo)
    out = publish([repo, folder], hub_env)
    assert "README.md" in out.stdout and "data/train-00000-of-00001.parquet" in out.stdout
    assert "images/nll_histogram.png" in hub_emulator.files("dataset", repo)

    load = """
        import json
        from datasets import get_dataset_config_names, load_dataset
        kept = load_dataset("{repo}", split="train")
        rej = load_dataset("{repo}", "rejected", split="train")
        print(json.dumps(dict(configs=get_dataset_config_names("{repo}"), kept=kept.to_list(), rej=rej.to_list())))
    """.format(repo=repo)
    got = run_py(load, fresh(hub_env, tmp_path, "home1"))
    assert sorted(got["configs"]) == ["default", "rejected"]
    assert got["kept"] == rows(5)
    assert [(r["id"], r["rule"]) for r in got["rej"]] == [("r0", "similarity")]

    # A user edits the card on the Hub: new license, an extra key, an extra tag.
    from huggingface_hub import DatasetCard, HfApi

    api = HfApi(endpoint=hub_env["HF_ENDPOINT"], token=hub_env["HF_TOKEN"])
    card = DatasetCard((folder / "README.md").read_text())
    card.data.license = "cc-by-4.0"
    card.data.annotations_creators = ["machine-generated"]
    card.data.tags = [*card.data.tags, "italian-chat"]
    api.upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset")

    # Re-publish with more rows: our configs/stats replace ours, the user's edits stay.
    corpus_folder(folder, rows(7), repo)
    publish([repo, folder], hub_env)
    merged = DatasetCard(hub_emulator.files("dataset", repo)["README.md"].decode()).data.to_dict()
    assert merged["license"] == "cc-by-4.0"
    assert merged["annotations_creators"] == ["machine-generated"]
    assert {"synthetic", "cerbero-hf", "italian-chat"} <= set(merged["tags"])
    assert merged["cerbero_hf"]["rows"] == {"default": 7, "rejected": 1}
    got = run_py(load, fresh(hub_env, tmp_path, "home2"))
    assert got["kept"] == rows(7)
    _assert_no_token(hub_emulator, hub_env, [folder, Path(hub_env["HF_HOME"]), tmp_path / "home1"])


def test_transient_503_is_retried_and_rerun_after_hard_failure_does_not_duplicate(hub_emulator, hub_env, tmp_path):
    repo = "user/corpus-faults"
    folder = corpus_folder(tmp_path / "corpus", rows(4), repo)
    parquet = {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
    pngs = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    hub_emulator.reset_log()
    # Hard failure: every commit attempt gets 503, after the LFS uploads went through.
    hub_emulator.inject_fault(rf"/api/datasets/{repo}/commit/", status=503, count=100)
    out = publish([repo, folder, "--retries", "1", "--backoff", "0.05"], hub_env, ok=False)
    hub_emulator.clear_faults()
    assert out.returncode == 1
    assert out.stderr.strip().startswith("Error: publishing dataset") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert [r.status for r in hub_emulator.requests("POST", rf"/{repo}/commit/")] == [503, 503]
    first_puts = len(hub_emulator.lfs_uploads(repo))
    assert first_puts == len(parquet | pngs)

    # Re-run with one transient 503 on the commit: retried, and nothing is uploaded twice.
    hub_emulator.inject_fault(rf"/api/datasets/{repo}/commit/", status=503, count=1)
    out = publish([repo, folder, "--backoff", "0.05"], hub_env)
    assert "attempts 2" in out.stdout
    assert [r.status for r in hub_emulator.requests("POST", rf"/{repo}/commit/")] == [503, 503, 503, 200]
    assert len(hub_emulator.lfs_uploads(repo)) == first_puts  # LFS blobs already on the Hub were not re-sent
    committed = hub_emulator.committed_paths(repo)
    assert sorted(committed) == sorted(set(committed))  # every file committed exactly once
    assert parquet | pngs | {"README.md"} <= set(hub_emulator.files("dataset", repo))

    # A third run changes nothing: no commit, no upload.
    out = publish([repo, folder], hub_env)
    assert "nothing changed" in out.stdout
    assert len(hub_emulator.requests("POST", rf"/{repo}/commit/")) == 4
    assert len(hub_emulator.lfs_uploads(repo)) == first_puts

    # A transient 503 on an LFS upload is retried by the client.
    before = len(hub_emulator.requests("PUT", r"/lfs-upload/"))
    hub_emulator.inject_fault(r"/lfs-upload/", status=503, count=1)
    corpus_folder(folder, rows(6), repo)
    publish([repo, folder], hub_env)
    statuses = [r.status for r in hub_emulator.requests("PUT", r"/lfs-upload/")][before:]
    assert statuses.count(503) == 1 and statuses.count(200) == len(statuses) - 1 >= 1  # the failed one was sent again
    assert hub_emulator.committed_paths(repo).count("data/train-00000-of-00001.parquet") == 2
    _assert_no_token(hub_emulator, hub_env, [folder, Path(hub_env["HF_HOME"])])


def test_publish_bad_input_is_one_line(hub_env, tmp_path):
    out = publish(["user/x", tmp_path / "missing"], hub_env, ok=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such folder" in out.stderr
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "other.py").write_text("x = 1\n")
    out = publish(["user/mlm_nll", tmp_path / "m", "--repo-type", "space"], hub_env, ok=False)
    assert out.returncode == 2 and "mlm_nll.py" in out.stderr
    out = publish(["not-a-repo-id", tmp_path / "m"], hub_env, ok=False)
    assert out.returncode == 2 and "namespace/name" in out.stderr


def _assert_no_token(hub_emulator, hub_env, folders) -> None:
    """The token was used (writes carried it) yet is in no file, output or request body."""
    token = hub_env["HF_TOKEN"]
    writes = hub_emulator.requests("POST", r"/commit/")
    assert writes and all(r.headers.get("authorization") == f"Bearer {token}" for r in writes[-1:])
    assert not [r.path for r in hub_emulator.log if token.encode() in r.body or token in r.query]
    assert not [o for o in OUTPUTS if token in o]
    for repo in hub_emulator.repos.values():
        for commit in repo.commits:
            assert not [p for p, b in commit.files.items() if token.encode() in b.data]
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


METRIC = ROOT / "dataset_scripts" / "mlm_nll"


def test_publish_model_and_metric_then_load_them_from_the_hub(hub_emulator, hub_env, tiny_chat_lm, tiny_mlm,
                                                             tmp_path):
    """A tiny model reloads with the same logits; the mlm_nll Space computes what the local module does.

    Both loads share one fresh process (evaluate imports torch and transformers anyway).
    """
    assert (METRIC / "mlm_nll.py").is_file(), "dataset_scripts/mlm_nll is the quality stage's module"
    out = publish(["user/tiny-chat", tiny_chat_lm, "--repo-type", "model"], hub_env)
    assert "model.safetensors" in out.stdout
    assert hub_emulator.repos[("models", "user/tiny-chat")].private  # models default to private
    out = publish(["user/mlm_nll", METRIC, "--repo-type", "space"], hub_env)
    assert "mlm_nll.py" in out.stdout
    files = hub_emulator.files("space", "user/mlm_nll")
    assert b"sdk: gradio" in files["README.md"] and b"app_file: app.py" in files["README.md"]
    assert files["app.py"] == (METRIC / "app.py").read_bytes()  # the module's own Space app is kept
    texts = ["Mia madre prepara la cena in cucina.", "cucina la in madre cena Mia prepara."]
    got = run_py(f"""
        import json
        import evaluate
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        hub = AutoModelForCausalLM.from_pretrained("user/tiny-chat")
        local = AutoModelForCausalLM.from_pretrained({str(tiny_chat_lm)!r})
        tok = AutoTokenizer.from_pretrained("user/tiny-chat")
        ids = tok("Ciao, come stai?", return_tensors="pt").input_ids
        with torch.no_grad():
            same = torch.equal(hub(ids).logits, local(ids).logits)
        kw = dict(predictions={texts!r}, model_id={str(tiny_mlm)!r})
        metric = dict(hub=evaluate.load("user/mlm_nll").compute(**kw),
                      local=evaluate.load({str(METRIC)!r}).compute(**kw))
        print(json.dumps(dict(same=same, n=int(ids.shape[1]), template=bool(tok.chat_template), metric=metric)))
    """, fresh(hub_env, tmp_path, "home"))
    assert got["same"] and got["n"] > 2 and got["template"]
    assert got["metric"]["hub"] == got["metric"]["local"] and got["metric"]["hub"]
    paths = [r.path for r in hub_emulator.requests("GET", r"^/spaces/user/mlm_nll/resolve/")]
    assert "/spaces/user/mlm_nll/resolve/main/mlm_nll.py" in paths  # what evaluate.load asked the Hub for
    _assert_no_token(hub_emulator, hub_env, [Path(hub_env["HF_HOME"]), tmp_path / "home"])
