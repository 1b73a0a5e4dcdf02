"""``cerbero-hf publish``: upload a corpus, the metric module or a model folder to the Hub (cerbero_hf.hub)."""

from __future__ import annotations

from typing import Annotated

import typer

ORDER = 70


def register(app) -> None:
    @app.command()
    def publish(
        folder: Annotated[str, typer.Argument(help="Folder to upload: a Hub-layout dataset folder, an evaluate "
                                                   "module folder (kind metric) or a saved model (kind model).")],
        repo_id: Annotated[str, typer.Argument(help="Target repo, 'namespace/name'.")],
        kind: Annotated[str, typer.Option(help="dataset | metric (a Space that evaluate.load resolves) | model.")]
        = "dataset",
        private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a new repo "
                                                     "(default: public, private for models).")] = None,
        token_env: Annotated[str, typer.Option(help="Environment variable holding the Hub token (never "
                                                    "printed).")] = "HF_TOKEN",
        retries: Annotated[int, typer.Option(help="Retries on transient Hub errors (5xx, 429, dropped "
                                                  "connections), with exponential backoff.")] = 5,
        backoff: Annotated[float, typer.Option(help="First retry wait in seconds (doubles each time).")] = 1.0,
    ) -> None:
        """Publish FOLDER to REPO_ID on the Hub (HF_ENDPOINT); re-running finishes an interrupted upload."""
        import os

        from rich.console import Console
        from rich.table import Table

        from cerbero_hf.errors import InputError
        from cerbero_hf.hub import KINDS, PublishError, publish as do_publish

        if kind not in KINDS:
            raise InputError(f"unknown --kind {kind!r}; expected one of {', '.join(KINDS)}")
        token = os.environ.get(token_env) or None
        if token is None and token_env != "HF_TOKEN":
            raise InputError(f"environment variable {token_env} is not set")
        if private is None:
            private = kind == "model"
        console = Console(stderr=True)
        try:
            with console.status(f"Publishing {kind} {folder} -> {repo_id} ..."):
                result = do_publish(folder, repo_id, kind, private=private, token=token, retries=retries,
                                    backoff=backoff)
        except PublishError as err:  # the Hub refused: one line, exit 1 (bad input is InputError, exit 2)
            import sys

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
