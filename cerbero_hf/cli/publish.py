"""``cerbero-hf publish FOLDER REPO_ID``: upload a corpus, the metric module or a model folder to the Hub.

Upload flags come from :class:`cerbero_hf.stages.publish.stage.PublishConfig` (the recipe's ``publish:``
keys); ``--kind`` and ``--private/--public`` are this command's own.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Optional

import typer

from cerbero_hf.cli._config import config_command
from cerbero_hf.stages.publish.stage import PublishConfig

ORDER = 70

EXTRA = [
    inspect.Parameter("kind", inspect.Parameter.KEYWORD_ONLY, default="dataset", annotation=Annotated[
        str, typer.Option(help="dataset | metric (a Space that evaluate.load resolves) | model.")]),
    inspect.Parameter("private", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[bool], typer.Option("--private/--public", help="Visibility of a new repo (default: public, "
                                                                 "private for models).")]),
]


def register(app) -> None:
    @config_command(app, "publish", PublishConfig, extra=EXTRA, arguments=[
        ("folder", "Folder to upload: a Hub-layout dataset folder, an evaluate module folder (kind metric) or a "
                   "saved model (kind model)."),
        ("repo_id", "Target repo, 'namespace/name'.")])
    def publish(config: PublishConfig, folder: str, repo_id: str, kind: str = "dataset",
                private: bool | None = None) -> None:
        """Publish FOLDER to REPO_ID on the Hub (HF_ENDPOINT); re-running finishes an interrupted upload."""
        import sys

        from rich.console import Console
        from rich.table import Table

        from cerbero_hf.errors import InputError
        from cerbero_hf.stages.publish.hub import KINDS, PublishError
        from cerbero_hf.stages.publish.hub import publish as do_publish
        from cerbero_hf.stages.publish.stage import token

        if kind not in KINDS:
            raise InputError(f"unknown --kind {kind!r}; expected one of {', '.join(KINDS)}")
        try:
            secret = token(config)
        except InputError as err:
            raise InputError(err.message) from None
        if private is None:  # this command's own default (a recipe's is publish.private)
            private = kind == "model"
        console = Console(stderr=True)
        try:
            with console.status(f"Publishing {kind} {folder} -> {repo_id} ..."):
                result = do_publish(folder, repo_id, kind, private=private, token=secret, endpoint=config.endpoint,
                                    retries=config.retries, backoff=config.backoff)
        except PublishError as err:  # the Hub refused: one line, exit 1 (bad input is InputError, exit 2)
            typer.echo(f"Error: {err}", err=True)
            sys.exit(1)
        table = Table(title=f"publish {kind} -> {result.url}")
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
