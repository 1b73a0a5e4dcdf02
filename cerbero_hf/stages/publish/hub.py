"""Publishing to the Hugging Face Hub: corpora (datasets), the ``mlm_nll`` metric (a Space), models.

Every ``publish_*`` function uploads a local folder in one commit through ``HfApi.create_commit``
(the machinery under ``upload_folder``): the Hub is content-addressed, so files that are already there
(same git sha1, or same LFS sha256) are neither re-sent nor re-committed. A transient error (HTTP 408,
429, 5xx, a dropped connection) retries the whole publish with exponential backoff; a re-run after a
hard failure finishes the upload without duplicating anything (LFS blobs that reached the Hub are
skipped by the LFS batch API, unchanged files by the preupload ``oid``).

Card merge: when the Hub repo already has a ``README.md``, its YAML card data is merged into ours
before pushing. Keys we own (``configs``, ``dataset_info``, ``size_categories``, ``cerbero_hf``; the
Space keys ``sdk``/``app_file`` for a metric; ``model-index`` for a model) come from the local card; any
other key a user set or edited on the Hub wins; ``tags`` are the union. The Markdown body is ours.

What is uploaded: only the files the stage that made the folder wrote, plus what ``include`` (the CLI's
``--include``) matches; a symbolic link out of the folder, or a ``*.parquet`` that is not parquet, is refused with
one line before anything is sent (:mod:`~cerbero_hf.stages.publish.files`).

Models: the training state (:mod:`~cerbero_hf.stages.publish.training_state`) is not uploaded unless
``include_training_state=True``, and copies an earlier publish left on the Hub are deleted; a LoRA output is
published as the adapter, with a one-line hint (stderr and ``UploadResult.notes``) to the merged model.

The token comes from ``token=`` or huggingface_hub's usual lookup (``HF_TOKEN``, ``hf auth login``); it
is never printed, logged or written anywhere. The endpoint is ``HF_ENDPOINT`` (read at import by
huggingface_hub) unless ``endpoint=`` is given.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cerbero_hf.cards import dataset_card  # noqa: F401 - re-exported: build a card, then publish
from cerbero_hf.errors import InputError
from cerbero_hf.retry import call_with_retries, is_transient  # noqa: F401 - is_transient re-exported
from cerbero_hf.stages.publish.files import dataset_files, local_files, metric_files, model_files  # noqa: F401
from cerbero_hf.stages.publish.training_state import is_training_state, lora_hint

OWNED_KEYS = {
    "dataset": ("configs", "dataset_info", "size_categories", "cerbero_hf"),
    "space": ("sdk", "app_file"),
    "model": ("model-index",),
}
METRIC_APP = '''import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("{repo_id}")
launch_gradio_widget(module)
'''


class PublishError(RuntimeError):
    """The Hub refused the upload (after retries, for transient errors). One line, no token."""


@dataclass
class FileStatus:
    path: str
    size: int
    status: str  # "new" | "changed" | "unchanged" | "deleted"


@dataclass
class UploadResult:
    """What ``publish_*`` did: the repo, its commit (None when nothing changed) and each file's status."""

    repo_id: str
    repo_type: str
    url: str
    commit: str | None
    files: list[FileStatus] = field(default_factory=list)
    attempts: int = 1
    notes: list[str] = field(default_factory=list)  # one-line hints (e.g. a LoRA adapter was published)

    @property
    def uploaded(self) -> list[FileStatus]:
        return [f for f in self.files if f.status in ("new", "changed")]


def with_retries(fn, *, retries: int = 5, backoff: float = 1.0, max_wait: float = 30.0):
    """Call ``fn()``, retrying transient errors under the one policy of :mod:`cerbero_hf.retry`.

    Transient: HTTP 408/429/5xx, connection errors and timeouts (:func:`is_transient`); waits honour
    ``Retry-After``, else exponential backoff from ``backoff`` seconds with full jitter, at most ``max_wait``.
    Returns ``(result, attempts)``; the last error is re-raised once ``retries`` retries are spent.
    """
    return call_with_retries(fn, attempts=retries + 1, backoff=backoff, max_wait=max_wait)


def merge_card(local_text: str, remote_text: str, kind: str) -> str:
    """Merge a Hub README's card data into ours (see module docstring); returns the README text."""
    from huggingface_hub import RepoCard
    from huggingface_hub.repocard_data import CardData

    ours, theirs = RepoCard(local_text), RepoCard(remote_text)
    merged = ours.data.to_dict()
    for key, value in theirs.data.to_dict().items():
        if key in OWNED_KEYS[kind]:
            continue
        if key == "tags":
            merged["tags"] = list(dict.fromkeys([*(merged.get("tags") or []), *(value or [])]))
        else:
            merged[key] = value
    return f"---\n{CardData(**merged).to_yaml()}\n---\n{ours.text}"


def _size(src: bytes | Path) -> int:
    return len(src) if isinstance(src, bytes) else src.stat().st_size


def _status(src: bytes | Path, remote) -> str:
    """new / changed / unchanged against a remote ``RepoFile`` (LFS sha256 or git blob sha1), streaming."""
    if remote is None:
        return "new"
    digest = hashlib.sha256() if remote.lfs is not None else hashlib.sha1(b"blob %d\0" % _size(src))
    if isinstance(src, bytes):
        digest.update(src)
    else:
        with src.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    expected = remote.lfs.sha256 if remote.lfs is not None else remote.blob_id
    return "unchanged" if digest.hexdigest() == expected else "changed"


def _scrub(text: str, token: str | None) -> str:
    text = text.splitlines()[0] if text else ""
    return text.replace(token, "***") if token else text


def _check(folder, repo_id: str) -> None:
    if not Path(folder).is_dir():
        raise InputError("no such folder", file=str(folder))
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"repo id must be 'namespace/name', got {repo_id!r}")


def _publish(folder, repo_id: str, repo_type: str, *, files: dict[str, Path], private: bool | None,
             token: str | None, endpoint: str | None, retries: int, backoff: float, extra_files=None,
             delete_patterns: tuple[str, ...] = (), space_sdk: str | None = None,
             message: str = "Upload with cerbero-hf", delete_if=None) -> UploadResult:
    """Upload ``files`` (repo path -> local file, from :mod:`~cerbero_hf.stages.publish.files`) in one commit."""
    from huggingface_hub import CommitOperation, CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.hf_api import RepoFile

    folder = Path(folder)
    _check(folder, repo_id)
    if not files:
        raise InputError("folder is empty", file=str(folder))
    api = HfApi(endpoint=endpoint, token=token)
    kind = {"dataset": "dataset", "space": "space", "model": "model"}[repo_type]

    def attempt() -> UploadResult:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        remote = {e.path: e for e in api.list_repo_tree(repo_id, repo_type=repo_type, recursive=True)
                  if isinstance(e, RepoFile)}
        contents: dict[str, bytes | Path] = dict(files)
        contents.update(extra_files(contents) if extra_files else {})
        if "README.md" in remote and "README.md" in contents:
            readme = api.hf_hub_download(repo_id, "README.md", repo_type=repo_type)
            local = contents["README.md"]
            local_text = (local if isinstance(local, bytes) else local.read_bytes()).decode("utf-8")
            merged = merge_card(local_text, Path(readme).read_text(encoding="utf-8"), kind)
            contents["README.md"] = merged.encode("utf-8")
        statuses = [FileStatus(path, _size(src), _status(src, remote.get(path))) for path, src in contents.items()]
        stale = [path for path in remote if path not in contents
                 and (any(fnmatch.fnmatch(path, pattern) for pattern in delete_patterns)
                      or (delete_if is not None and delete_if(path)))]
        statuses += [FileStatus(path, remote[path].size, "deleted") for path in stale]
        if all(s.status == "unchanged" for s in statuses):
            return UploadResult(repo_id, repo_type, str(url), None, statuses)
        ops: list[CommitOperation] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=src if isinstance(src, bytes) else str(src))
            for path, src in contents.items()]
        ops += [CommitOperationDelete(path_in_repo=path) for path in stale]
        info = api.create_commit(repo_id, ops, commit_message=message, repo_type=repo_type)
        return UploadResult(repo_id, repo_type, str(url), info.oid, statuses)

    try:
        result, attempts = with_retries(attempt, retries=retries, backoff=backoff)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any Hub failure becomes one line without the token
        from huggingface_hub.utils import get_token

        secret = token or get_token()
        detail = _scrub(str(err) or type(err).__name__, secret)
        raise PublishError(f"publishing {repo_type} {repo_id} failed: {type(err).__name__}: {detail}") from None
    result.attempts = attempts
    return result


def publish_dataset(folder, repo_id: str, *, private: bool = False, token: str | None = None,
                    endpoint: str | None = None, retries: int = 5, backoff: float = 1.0, include=()) -> UploadResult:
    """Upload a Hub-layout dataset folder (``io.save_hub_folder`` output, card from ``dataset_card``).

    Uploads the card, the data files of the configs it declares and the card's image, plus the files the
    ``include`` globs match (:func:`~cerbero_hf.stages.publish.files.dataset_files`). Old parquet shards on the Hub
    that the folder no longer has are deleted in the same commit, so a re-published config never mixes old and
    new rows.

    Examples:
        >>> result = publish_dataset("out/filtered", "you/cerbero-chat-it", private=True)  # doctest: +SKIP
    """
    _check(folder, repo_id)
    if not (Path(folder) / "README.md").is_file():
        raise InputError("not a Hub-layout dataset folder: README.md with configs is missing", file=str(folder))
    return _publish(folder, repo_id, "dataset", files=dataset_files(folder, include), private=private, token=token,
                    endpoint=endpoint, retries=retries, backoff=backoff, delete_patterns=("*.parquet",),
                    message="Publish dataset with cerbero-hf")


def publish_metric(folder, repo_id: str, *, private: bool = False, token: str | None = None,
                   endpoint: str | None = None, retries: int = 5, backoff: float = 1.0, include=()) -> UploadResult:
    """Upload an evaluate module folder as a Gradio Space, what ``evaluate.load("<ns>/<name>")`` resolves.

    The folder must hold ``<name>.py`` where ``<name>`` is the repo name (evaluate fetches exactly that
    file). An ``app.py`` (the standard evaluate widget) and Space front-matter are added when missing. Uploads
    its ``*.py``, ``README.md`` and ``requirements.txt``, plus the files the ``include`` globs match.

    Examples:
        >>> result = publish_metric("out/metric/mlm_nll", "you/mlm_nll")  # then evaluate.load("you/mlm_nll")  # doctest: +SKIP
    """
    _check(folder, repo_id)
    name = repo_id.split("/")[-1]
    if not (Path(folder) / f"{name}.py").is_file():
        raise InputError(f"an evaluate module folder for {repo_id!r} must contain {name}.py", file=str(folder))

    def extras(contents: dict) -> dict[str, bytes]:
        from huggingface_hub import RepoCard
        from huggingface_hub.repocard_data import CardData

        out = {}
        if "app.py" not in contents:
            out["app.py"] = METRIC_APP.format(repo_id=repo_id).encode()
        readme = contents.get("README.md", b"")
        text = (readme if isinstance(readme, bytes) else readme.read_bytes()).decode("utf-8")
        card = RepoCard(text) if text.startswith("---") else None
        data = card.data.to_dict() if card else {"title": name}
        data.update(sdk="gradio", app_file="app.py")
        data["tags"] = list(dict.fromkeys([*(data.get("tags") or []), "evaluate", "metric", "cerbero-hf"]))
        body = card.text if card else (text or f"# {name}\n\nAn `evaluate` metric module: "
                                               f"`evaluate.load(\"{repo_id}\")`.\n")
        out["README.md"] = f"---\n{CardData(**data).to_yaml()}\n---\n{body}".encode()
        return out

    return _publish(folder, repo_id, "space", files=metric_files(folder, include), private=private, token=token,
                    endpoint=endpoint, retries=retries, backoff=backoff, extra_files=extras, space_sdk="gradio",
                    message="Publish metric with cerbero-hf")


def publish_model(folder, repo_id: str, *, private: bool = True, token: str | None = None,
                  endpoint: str | None = None, retries: int = 5, backoff: float = 1.0,
                  include_training_state: bool = False, include=()) -> UploadResult:
    """Upload a saved model folder (``save_pretrained`` output with its README model card), or a LoRA adapter.

    Uploads the model's files (:data:`~cerbero_hf.stages.publish.files.MODEL_FILES`), plus the files the
    ``include`` globs match. Weight shards on the Hub that the folder no longer has are deleted in the same commit.
    The training state (module docstring) is left out, and deleted from the Hub, unless ``include_training_state``.

    Examples:
        >>> result = publish_model("out/model", "you/cerbero-7b-repro")  # doctest: +SKIP
    """
    import sys

    _check(folder, repo_id)
    folder = Path(folder)
    adapter = not (folder / "config.json").is_file() and (folder / "adapter_config.json").is_file()
    if not (folder / "config.json").is_file() and not adapter:
        raise InputError("not a saved model folder: config.json (or a LoRA adapter's adapter_config.json) is "
                         "missing", file=str(folder))
    result = _publish(folder, repo_id, "model", files=model_files(folder, include_training_state, include),
                      private=private, token=token, endpoint=endpoint, retries=retries, backoff=backoff,
                      delete_patterns=("*.safetensors", "*.bin"),
                      delete_if=None if include_training_state else is_training_state,
                      message="Publish model with cerbero-hf")
    if adapter:
        result.notes.append(lora_hint(folder))
        print(result.notes[-1], file=sys.stderr)
    return result


KINDS = {"dataset": publish_dataset, "metric": publish_metric, "model": publish_model}


def publish(folder, repo_id: str, kind: str = "dataset", *, include_training_state: bool = False,
            **kwargs) -> UploadResult:
    """Dispatch to ``publish_dataset`` / ``publish_metric`` / ``publish_model`` (``include_training_state``: models
    only; ``include``, globs of extra files to upload: every kind)."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "model":
        kwargs["include_training_state"] = include_training_state
    return KINDS[kind](folder, repo_id, **kwargs)
