"""``cerbero-hf publish REPO_ID PATH``: upload a corpus, a model or the metric module to the Hub.

The shape of ``hf upload``: the repo first, then the local folder, and ``--repo-type dataset|model|space``
(default ``dataset``, the corpora being what this command publishes most). A ``space`` is an ``evaluate``
module folder (the ``mlm_nll`` metric), published as the Gradio Space that ``evaluate.load`` resolves.
Upload flags come from :class:`cerbero_hf.stages.publish.stage.PublishConfig` (the recipe's ``publish:``
keys); ``--repo-type``, ``--private/--public`` and ``--include`` are this command's own. Only the files the stage
wrote are uploaded, plus those a repeatable ``--include PATTERN`` matches; a symbolic link out of PATH is refused
(:mod:`cerbero_hf.stages.publish.files`).

The earlier shape, ``publish FOLDER REPO_ID [--kind dataset|metric|model]``, still works and prints one
deprecation line: the arguments are swapped when the first one is an existing path and the second is not.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Optional

import typer

from cerbero_hf.cli._config import config_command
from cerbero_hf.stages.publish.stage import PublishConfig

ORDER = 70

# --repo-type -> the kind cerbero_hf.stages.publish.hub.publish uploads (a Space is the metric module)
REPO_TYPES = {"dataset": "dataset", "model": "model", "space": "metric"}
OLD_KINDS = {kind: repo_type for repo_type, kind in REPO_TYPES.items()}  # deprecated --kind -> --repo-type

EXTRA = [
    inspect.Parameter("repo_type", inspect.Parameter.KEYWORD_ONLY, default="dataset", annotation=Annotated[
        str, typer.Option("--repo-type", help="What PATH is, as in `hf upload`: dataset (a Hub-layout corpus "
                                              "folder), model (a saved model) or space (an evaluate module folder, "
                                              "published as the Space that evaluate.load resolves). One of: "
                                              f"{', '.join(REPO_TYPES)}.")]),
    inspect.Parameter("private", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[bool], typer.Option("--private/--public", help="Visibility of a new repo (default: public, "
                                                                 "private for models).")]),
    inspect.Parameter("include", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[list[str]], typer.Option("--include", metavar="PATTERN", help=(
            "Also upload the files matching PATTERN, a glob relative to PATH as in `hf upload --include` (repeatable). "
            "Without it only the files the stage wrote are uploaded: the card and the configs' data files of a "
            "dataset, the model's own files, the module's .py files; a link out of PATH is refused."))]),
    inspect.Parameter("kind", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[str], typer.Option("--kind", hidden=True, help="Deprecated: --repo-type.")]),
]


def warn(message: str) -> None:
    typer.echo(f"Deprecated: {message}", err=True)


def resolve_arguments(repo_id: str, path: str, repo_type: str, kind: str | None) -> tuple[str, str, str]:
    """``(repo_id, path, hub kind)`` from the command line, accepting the earlier shape with a deprecation line."""
    from pathlib import Path

    from cerbero_hf.errors import InputError

    if Path(repo_id).exists() and not Path(path).exists():
        warn(f"`publish {repo_id} {path}` (FOLDER REPO_ID); write `publish {path} {repo_id}` (REPO_ID PATH, as "
             "`hf upload`).")
        repo_id, path = path, repo_id
    if kind is not None:
        if kind not in OLD_KINDS:
            raise InputError(f"--kind must be {_one_of(OLD_KINDS)}, got {kind!r} (deprecated: use --repo-type)")
        warn(f"--kind {kind}; write --repo-type {OLD_KINDS[kind]}.")
        repo_type = OLD_KINDS[kind]
    if repo_type not in REPO_TYPES:
        raise InputError(f"--repo-type must be {_one_of(REPO_TYPES)}, got {repo_type!r}")
    return repo_id, path, REPO_TYPES[repo_type]


def _one_of(names) -> str:
    names = list(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def register(app) -> None:
    @config_command(app, "publish", PublishConfig, extra=EXTRA, arguments=[
        ("repo_id", "Target repo, 'namespace/name' (created when missing)."),
        ("path", "Local folder to upload: a Hub-layout dataset folder, a saved model or an evaluate module "
                 "folder (see --repo-type).")])
    def publish(config: PublishConfig, repo_id: str, path: str, repo_type: str = "dataset",
                private: bool | None = None, include: list[str] | None = None, kind: str | None = None) -> None:
        """Publish PATH to REPO_ID on the Hub (HF_ENDPOINT); re-running finishes an interrupted upload."""
        import sys

        from rich.console import Console
        from rich.table import Table

        from cerbero_hf.errors import InputError
        from cerbero_hf.stages.publish.hub import PublishError
        from cerbero_hf.stages.publish.hub import publish as do_publish
        from cerbero_hf.stages.publish.stage import token

        repo_id, path, hub_kind = resolve_arguments(repo_id, path, repo_type, kind)
        try:
            secret = token(config)
        except InputError as err:
            raise InputError(err.message) from None
        if private is None:  # this command's own default (a recipe's is publish.private)
            private = hub_kind == "model"
        console = Console(stderr=True)
        try:
            with console.status(f"Publishing {path} -> {repo_id} ..."):
                result = do_publish(path, repo_id, hub_kind, private=private, token=secret, endpoint=config.endpoint,
                                    retries=config.retries, backoff=config.backoff,
                                    include_training_state=config.include_training_state, include=include or ())
        except PublishError as err:  # the Hub refused: one line, exit 1 (bad input is InputError, exit 2)
            typer.echo(f"Error: {err}", err=True)
            sys.exit(1)
        table = Table(title=f"publish {result.repo_type} -> {result.url}")
        table.add_column("file")
        table.add_column("bytes", justify="right")
        table.add_column("status")
        for f in result.files:
            table.add_row(f.path, str(f.size), f.status)
        Console().print(table)
        uploaded = len(result.uploaded)
        commit = result.commit[:10] if result.commit else "none (nothing changed)"
        Console().print(f"{uploaded} of {len(result.files)} files uploaded; commit {commit}; "
                        f"attempts {result.attempts}.")
