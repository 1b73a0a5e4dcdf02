"""cerbero-hf."""

# The project's home and its documentation, linked from every published card (cerbero_hf.cards).
REPO_URL = "https://github.com/cerbero-hf/cerbero-hf"
DOCS_URL = f"{REPO_URL}/blob/main/docs"


def __getattr__(name: str):
    """``__version__``: the installed distribution's version (pyproject.toml is the one source), read on first use."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("cerbero-hf")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'cerbero_hf' has no attribute {name!r}")
