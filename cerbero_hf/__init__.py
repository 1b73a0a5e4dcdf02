"""cerbero-hf."""

# The project's home and its documentation, linked from every published card (cerbero_hf.cards).
REPO_URL = "https://github.com/cerbero-hf/cerbero-hf"
DOCS_URL = f"{REPO_URL}/blob/main/docs"
