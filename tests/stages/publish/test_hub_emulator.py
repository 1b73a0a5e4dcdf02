"""The Hub emulator itself, driven by the real huggingface_hub / datasets clients in subprocesses."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_py(code: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_upload_folder_history_and_download(hub_emulator, hub_env, tmp_path):
    """create_repo (200 then 409), upload_folder with LFS + regular files, tree, resolve by sha, deletes."""
    folder = tmp_path / "repo"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# hello\n")
    (folder / "sub" / "data.txt").write_text("first")
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 4)
    hub_emulator.reset_log()
    out = run_py(f"""
        import json
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
        api = HfApi()
        api.create_repo("user/emu-model", exist_ok=False)
        api.create_repo("user/emu-model", exist_ok=True)  # 409 handled
        first = api.upload_folder(repo_id="user/emu-model", folder_path={str(folder)!r}).oid
        open({str(folder / "sub" / "data.txt")!r}, "w").write("second")
        second = api.upload_folder(repo_id="user/emu-model", folder_path={str(folder)!r}).oid
        old = open(hf_hub_download("user/emu-model", "sub/data.txt", revision=first)).read()
        new = open(hf_hub_download("user/emu-model", "sub/data.txt")).read()
        files = sorted(api.list_repo_files("user/emu-model"))
        top = sorted(e.path for e in api.list_repo_tree("user/emu-model"))
        api.delete_folder("sub", repo_id="user/emu-model")
        try:
            api.list_repo_tree("user/emu-model", path_in_repo="sub").__next__()
            missing = "listed"
        except EntryNotFoundError:
            missing = "EntryNotFound"
        try:
            hf_hub_download("user/emu-model", "README.md", revision="v9.9.9")
            badrev = "found"
        except RevisionNotFoundError:
            badrev = "RevisionNotFound"
        info = api.model_info("user/emu-model", revision=first)
        print(json.dumps(dict(old=old, new=new, files=files, top=top, missing=missing, badrev=badrev,
                              first=first, second=second, info_sha=info.sha, whoami=api.whoami()["name"],
                              branches=[b.name for b in api.list_repo_refs("user/emu-model").branches],
                              after=sorted(api.list_repo_files("user/emu-model")))))
    """, hub_env)
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["old"] == "first" and res["new"] == "second"
    assert res["first"] != res["second"] and res["info_sha"] == res["first"]
    assert res["files"] == [".gitattributes", "README.md", "sub/data.txt", "weights.bin"]
    assert res["top"] == [".gitattributes", "README.md", "sub", "weights.bin"]
    assert res["after"] == [".gitattributes", "README.md", "weights.bin"]
    assert res["missing"] == "EntryNotFound" and res["badrev"] == "RevisionNotFound"
    assert res["whoami"] == "user" and res["branches"] == ["main"]
    # The binary file went through LFS once; the unchanged one was not re-sent on the second upload.
    assert len(hub_emulator.lfs_uploads()) == 1
    assert hub_emulator.committed_paths().count("weights.bin") == 1
    assert hub_emulator.files("model", "user/emu-model", res["first"])["sub/data.txt"] == b"first"
    token = hub_env["HF_TOKEN"].encode()
    assert all(token not in r.body for r in hub_emulator.log)


def test_push_to_hub_then_load_dataset_fresh_process(hub_emulator, hub_env):
    """Dataset.push_to_hub, then load_dataset in another process with an empty cache."""
    run_py("""
        from datasets import Dataset
        Dataset.from_dict({"text": ["a", "b", "c"], "n": [1, 2, 3]}).push_to_hub("user/emu-ds")
    """, hub_env)
    out = run_py("""
        from datasets import load_dataset
        ds = load_dataset("user/emu-ds", split="train")
        print(list(ds["text"]), list(ds["n"]))
    """, hub_env)
    assert out.stdout.strip().splitlines()[-1] == "['a', 'b', 'c'] [1, 2, 3]"


def test_injected_faults_are_served_then_cleared(hub_emulator, hub_env):
    """inject_fault answers the next N matching requests with the status; the client's backoff retries."""
    hub_emulator.reset_log()
    hub_emulator.inject_fault(r"/preupload/", status=503, count=1)
    run_py("""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("user/emu-fault", repo_type="space", space_sdk="gradio")
        api.upload_file(path_or_fileobj=b"print(1)", path_in_repo="app.py", repo_id="user/emu-fault",
                        repo_type="space")
    """, hub_env)
    statuses = [r.status for r in hub_emulator.requests("POST", r"/api/spaces/user/emu-fault/preupload/")]
    assert statuses == [503, 200]
    assert hub_emulator.files("space", "user/emu-fault")["app.py"] == b"print(1)"
