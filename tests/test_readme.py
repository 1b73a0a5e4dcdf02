"""README.md's code blocks run as written, so a snippet that drifts from the code fails here.

Every ```bash and ```python block runs, in the README's order, in one scratch folder holding a copy of the
checkout's ``configs/`` and ``dataset_scripts/`` (the README is read in a clone), so a block may use what
an earlier one wrote (``out/seeds`` -> ``out/generated`` -> ...), and what a bash block exports holds for
the blocks after it, as in one terminal. Bash blocks find ``cerbero-hf`` on PATH (this interpreter's
``-m cerbero_hf``); the Python blocks run one after the other in one interpreter, each with fresh globals
(a name the block does not define fails), so the heavy imports are paid once. A block that cannot run on
a CPU test machine carries a visible marker on the line before it, ``<!-- not-run: why -->``, and
:data:`NOT_RUN` is exactly the list of those.

What stands in for the outside world is declared here and nowhere else:

* every Hub id the README names (and the ``configs/cerbero-7b.yaml`` it runs) is a repo on the Hub emulator
  (tests/support/hub_emulator.py) holding a small stand-in: :func:`hub_datasets` the bundled OASST, Fauno
  and evaluation samples, :func:`hub_models` tiny models. The blocks create the ``you/...`` repos themselves;
* the generator endpoint is a real ``transformers serve`` that loads the generator by its README id from
  the emulator (a tiny random Mistral that samples, so its messages differ);
* :data:`SUBSTITUTIONS`: text replaced in the blocks before they run: the endpoint's URL, and flags that
  keep the run short on tiny models. Each one must still match the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

README = ROOT / "README.md"
DATA = ROOT / "cerbero_hf" / "data"
LANGS = {"bash": "bash", "sh": "bash", "python": "python"}  # fenced languages that run
NOT_CODE = {"text", "bibtex"}  # fenced languages that are not run (a tree, a citation)
MARKER = re.compile(r"<!-- not-run: (.+?) -->")

# The blocks marked not-run, by their first command, in README order.
NOT_RUN = [
    "make demo",  # the entry points themselves: tests/test_demo.py runs the demo, `make test` runs this file
    "cerbero-hf run configs/cerbero-7b.yaml",  # the paper's whole run: a 70B generator and 8 GPUs
    "accelerate launch --config_file configs/accelerate/zero1.yaml -m cerbero_hf train \\",  # 8 GPUs
]

GENERATOR = "meta-llama/Llama-2-70b-chat-hf"  # the README's generator id, served by `transformers serve`
FAUNO = ["andreabac3/Quora-Italian-Fauno-Baize", "andreabac3/StackOverflow-Italian-Fauno-Baize",
         "andreabac3/MedQuaAD-Italian-Fauno-Baize"]
FAUNO_ROWS = 40  # each Fauno id holds its own 40 rows of the bundled 400-row sample

# (README text, replacement, why). {endpoint} and {generator_dir} are filled in by the test.
SUBSTITUTIONS = [
    ("http://host:8080", "{endpoint}", "the README's generator server: transformers serve on this machine"),
    ("http://my-tgi:8080", "{endpoint}", "the same server, for the recipe"),
    ("--max-conversations 358", "--max-conversations 2 --max-new-tokens 8 --keep-truncated",
     "two conversations of short messages"),
    ("--only seeds,generate", "--only seeds,generate --set generate.max_conversations=2 "
     "--set generate.max_new_tokens=8 --set generate.keep_truncated=true", "the same, through the recipe"),
    ("--model path/to/causal-lm", "--model {generator_dir} --max-conversations 2 --max-new-tokens 8 --keep-truncated",
     "a local causal LM folder: the served generator's files; two short conversations"),
    ('load_dataset("out/seeds", split="train")', 'load_dataset("out/seeds", split="train[:2]")',
     "self-chat from two seeds"),
    ("seed_texts=seed_messages(seeds))", "seed_texts=seed_messages(seeds), max_new_tokens=8, reject_truncated=False)",
     "short messages"),
    ("--max-nll 2 ", "--max-nll 10 ", "the tiny MLM's NLLs sit near ln(vocabulary) = 6.9: keep its messages"),
    ("--condition full", "--condition full --max-steps 2 --max-length 256", "two training steps"),
    ('condition="full",', 'condition="full", max_steps=2, max_length=256,', "two training steps"),
    ("cerbero-hf evaluate ", "cerbero-hf evaluate --limit 2 ", "two items per task"),
    ('prompt_format("chat")', 'prompt_format("chat"), limit=2', "two items per task"),
]


@dataclass
class Block:
    line: int  # of the opening fence
    lang: str
    code: str
    not_run: str | None  # the marker's reason

    @property
    def first(self) -> str:
        return self.code.splitlines()[0].split("  #")[0].strip()


def readme_blocks(text: str) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.fullmatch(before.strip())
            blocks.append(Block(i + 1, lines[i][3:].strip(), "\n".join(lines[i + 1:end]),
                                marker.group(1) if marker else None))
            i = end + 1
        else:
            i += 1
    return blocks


def test_every_block_runs_unless_marked_and_the_marked_ones_are_these():
    text = README.read_text(encoding="utf-8")
    blocks = readme_blocks(text)
    assert {b.lang for b in blocks} <= set(LANGS) | NOT_CODE  # every fence names its language
    assert [b.first for b in blocks if b.not_run] == NOT_RUN
    assert all(b.lang in LANGS and len(b.not_run) > 10 for b in blocks if b.not_run)
    assert len(MARKER.findall(text)) == len(NOT_RUN)  # no marker left before prose or another marker
    runnable = "\n".join(b.code for b in blocks if b.lang in LANGS and not b.not_run)
    for old, _, why in SUBSTITUTIONS:
        assert old in runnable, f"substitution no longer matches the README: {old!r} ({why})"


# ---- the stand-ins -------------------------------------------------------------------------------------------

def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def configs_card(configs: dict[str, dict[str, str]]) -> bytes:
    """A dataset README whose ``configs:`` name each config's split files."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return ("\n".join(lines) + "\n---\n").encode()


def hub_datasets() -> dict[str, dict[str, bytes]]:
    """Dataset repo id -> files: OASST (its trees split into train and validation), Fauno, the evaluation tasks."""
    from cerbero_hf.stages.evaluate import evaluation_settings

    oasst = [json.loads(line) for line in (DATA / "oasst_sample_it.jsonl").read_text(encoding="utf-8").splitlines()]
    trees = list(dict.fromkeys(r["message_tree_id"] for r in oasst))
    validation = set(trees[::3])
    repos = {"OpenAssistant/oasst1": {
        "data/train.jsonl": jsonl([r for r in oasst if r["message_tree_id"] not in validation]),
        "data/validation.jsonl": jsonl([r for r in oasst if r["message_tree_id"] in validation])}}
    fauno = (DATA / "fauno_sample.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    for i, repo in enumerate(FAUNO):
        repos[repo] = {"data/train.jsonl": "".join(fauno[i * FAUNO_ROWS:(i + 1) * FAUNO_ROWS]).encode()}
    configs: dict[str, dict] = {}
    for task, spec in evaluation_settings("it")["tasks"].items():  # each task where the settings look for it
        folder = spec["config"] or "data"
        files = repos.setdefault(spec["dataset"], {})
        for split in (spec["eval_split"], spec["shot_split"]):
            files[f"{folder}/{split}.jsonl"] = (DATA / "eval" / task / f"{split}.jsonl").read_bytes()
        configs.setdefault(spec["dataset"], {})[spec["config"] or "default"] = {
            split: f"{folder}/{split}.jsonl" for split in (spec["eval_split"], spec["shot_split"])}
    for repo, named in configs.items():
        repos[repo]["README.md"] = configs_card(named)
    return repos


def hub_models(generator: Path, tiny_chat_lm: Path, tiny_mlm: Path, minilm: Path) -> dict[str, Path]:
    """Model repo id -> the folder standing in for it."""
    return {GENERATOR: generator,  # served, and in-process as a local folder
            "mistralai/Mistral-7B-v0.1": tiny_chat_lm,  # the base model of train
            "dbmdz/bert-base-italian-xxl-cased": tiny_mlm,  # the language pack's MLM
            "sentence-transformers/distiluse-base-multilingual-cased-v2": minilm}  # the language pack's embedder


def put_repo(hub, repo_type: str, repo_id: str, files: dict[str, bytes]) -> None:
    """Create ``repo_id`` on the emulator with ``files`` in one commit (the store, not the HTTP API: setup only)."""
    from hub_emulator import GITATTRIBUTES, TEXT_SUFFIXES, TYPE_OF, Blob, Repo

    kind = TYPE_OF[repo_type]
    with hub.lock:
        repo = Repo(kind, repo_id, False, None)
        hub.new_commit(repo, "initial commit", {".gitattributes": Blob(GITATTRIBUTES, False)})
        blobs = {".gitattributes": Blob(GITATTRIBUTES, False)}
        blobs.update({path: Blob(data, not path.endswith(TEXT_SUFFIXES)) for path, data in files.items()})
        hub.new_commit(repo, "stand-in", blobs)
        hub.repos[(kind, repo_id)] = repo


def sampling_copy(model: Path, dest: Path) -> Path:
    """``model`` with ``do_sample`` in its generation config (transformers serve decodes as the config says)."""
    shutil.copytree(model, dest)
    config = json.loads((dest / "generation_config.json").read_text())
    (dest / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}, indent=2))
    return dest


@pytest.fixture
def readme_world(hub_emulator, hub_env, tiny_chat_lm, tiny_mlm, minilm_path, tmp_path):
    """The stand-ins on the emulator, the generator served, and the scratch folder: ``(work, env, values)``."""
    from fixtures_servers import free_port, wait_http

    generator = sampling_copy(tiny_chat_lm, tmp_path / "generator")
    for repo, files in hub_datasets().items():
        put_repo(hub_emulator, "dataset", repo, files)
    for repo, folder in hub_models(generator, tiny_chat_lm, tiny_mlm, minilm_path).items():
        put_repo(hub_emulator, "model", repo, {p.relative_to(folder).as_posix(): p.read_bytes()
                                               for p in sorted(folder.rglob("*")) if p.is_file()})
    work = tmp_path / "work"
    for name in ("configs", "dataset_scripts"):
        shutil.copytree(ROOT / name, work / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cerbero-hf").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cerbero_hf "$@"\n')
    (bin_dir / "cerbero-hf").chmod(0o755)
    env = dict(hub_env, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", TERM="dumb", PYTHONUNBUFFERED="1")

    port = free_port()
    log_path = tmp_path / "transformers-serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("transformers")), "serve", GENERATOR, "--host",
                                   "127.0.0.1", "--port", str(port), "--device", "cpu"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=300, proc=server)
        yield work, env, {"endpoint": f"http://127.0.0.1:{port}", "generator_dir": str(generator),
                          "server_log": log_path}
    finally:
        server.kill()
        server.wait(timeout=30)


DRIVER = r"""
import json, os, runpy, sys, traceback
for line in sys.stdin:  # one request per line: {"script": path, "env": {...}}; each block gets fresh globals
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    code = 0
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    print("\n" + SENTINEL + json.dumps(code), flush=True)
"""
SENTINEL = "@@readme-block-exit "


class PythonBlocks:
    """One interpreter that runs Python blocks one after the other, each with fresh globals (imports are paid once,
    as in a notebook): ``run(script, env) -> (exit code, output)``."""

    def __init__(self, cwd: Path, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", f"SENTINEL = {SENTINEL!r}\n" + DRIVER], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)

    def run(self, script: Path, env: dict) -> tuple[int, str]:
        self.proc.stdin.write(json.dumps({"script": str(script), "env": env}) + "\n")
        self.proc.stdin.flush()
        out = []
        for line in self.proc.stdout:
            if line.startswith(SENTINEL):
                return json.loads(line[len(SENTINEL):]), "".join(out)
            out.append(line)
        return self.proc.wait(), "".join(out) + "\n(the interpreter exited)"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def substitute(code: str, values: dict, used: set) -> str:
    for old, new, _ in SUBSTITUTIONS:
        if old in code:
            used.add(old)
            code = code.replace(old, new.format(**values))
    return code


def test_readme_blocks_run_as_written(readme_world, hub_emulator):
    work, env, values = readme_world
    used: set[str] = set()
    seconds = {}
    python = PythonBlocks(work, env)
    try:
        for block in readme_blocks(README.read_text(encoding="utf-8")):
            if block.lang not in LANGS or block.not_run:
                continue
            code = substitute(block.code, values, used)
            bash = LANGS[block.lang] == "bash"
            script = work / f".readme-block-{block.line}.{'sh' if bash else 'py'}"
            exported = work / f".readme-block-{block.line}.env"
            # one terminal session: what a bash block exports (TGI_URL) holds for the blocks after it
            script.write_text(code + (f'\nenv -0 > "{exported}"\n' if bash else "\n"), encoding="utf-8")
            start = time.monotonic()
            if bash:
                proc = subprocess.run(["bash", "-eo", "pipefail", str(script)], cwd=work, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
                returncode, output = proc.returncode, proc.stdout
            else:
                returncode, output = python.run(script, env)
            seconds[block.line] = round(time.monotonic() - start, 1)
            print(f"README.md line {block.line} ({block.lang}): exit {returncode} in {seconds[block.line]} s",
                  flush=True)
            if returncode != 0:
                pytest.fail(f"README.md line {block.line} ({block.lang}) exited {returncode}:\n{code}\n"
                            f"--- output ---\n{output[-6000:]}\n--- transformers serve (last lines) ---\n"
                            f"{values['server_log'].read_text(errors='replace')[-1500:]}")
            if bash:
                env = dict(item.split("=", 1) for item in exported.read_text().split("\0") if "=" in item)
    finally:
        python.close()
    print(f"README blocks: {round(sum(seconds.values()), 1)} s in all")
    assert used == {old for old, _, _ in SUBSTITUTIONS}

    # The server answered every request the blocks sent (a request without the served model's name gets a 400,
    # and the generator records the row as failed instead of stopping).
    answers = re.findall(r'"POST (\S+) HTTP/1.1" (\d+)', values["server_log"].read_text(errors="replace"))
    assert answers and {status for _, status in answers} == {"200"}, [a for a in answers if a[1] != "200"][:5]

    # What the chain left behind: the corpora, the model with its evaluation, the published repos.
    from cerbero_hf.io import load_table

    assert len(load_table(work / "out" / "generated")) == 2
    assert len(load_table(work / "out" / "refined-filtered")) > 0
    assert "model-index" in (work / "out" / "model" / "README.md").read_text(encoding="utf-8")
    assert (work / "nll.png").stat().st_size > 1000
    assert "data/train-00000-of-00001.parquet" in hub_emulator.files("dataset", "you/cerbero-generated-it")
    assert "mlm_nll.py" in hub_emulator.files("space", "you/mlm_nll")
    assert hub_emulator.repos[("models", "you/cerbero-7b-it")].private
    assert "adapter_config.json" in hub_emulator.files("model", "you/cerbero-7b-it-lora")  # pushed while training
