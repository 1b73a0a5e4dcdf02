"""cerbero-hf."""
