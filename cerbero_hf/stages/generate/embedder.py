"""Sentence embeddings for the diversity store (paper §3.3): a sentence-transformers model, loaded lazily.

The generate stage's default is the language pack's ``embedder`` (a multilingual SBERT for Italian).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cerbero_hf.stages.generate.store import normalise

_MODELS: dict[tuple[str, str], Any] = {}  # loaded SentenceTransformers, shared by pickled copies
_MODELS_LOCK = threading.Lock()


class Embedder:
    """Sentence embeddings, L2-normalised float32.

    The model is loaded on first use, once per process (a module-level cache keyed by model and
    device), and is not pickled: a copy sent to a ``datasets.map`` worker reloads it there.

    Args:
        model_id_or_path: a local SentenceTransformer folder or a Hub id. ``None`` takes the built-in
            Italian pack's (``distiluse-base-multilingual-cased-v2``); :meth:`for_language` takes any
            pack's. Offline runs must pass a local path.
        device: torch device string.
        batch_size: encode batch size.
    """

    def __init__(self, model_id_or_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64):
        if model_id_or_path is None:
            from cerbero_hf.languages import load_language

            model_id_or_path = load_language("it").embedder
        self.model_id = str(model_id_or_path)
        self.device = device
        self.batch_size = batch_size

    @property
    def model(self):
        key = (self.model_id, self.device)
        with _MODELS_LOCK:
            if key not in _MODELS:
                from sentence_transformers import SentenceTransformer

                _MODELS[key] = SentenceTransformer(self.model_id, device=self.device)
            return _MODELS[key]

    def load(self) -> "Embedder":
        """Load the model now (it is otherwise loaded on first use); returns ``self``."""
        self.model  # noqa: B018 - the property loads and caches it
        return self

    @property
    def dim(self) -> int:
        """Embedding dimension of the model."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array of unit rows (a 1-row array for one string)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return normalise(out)

    @classmethod
    def for_language(cls, language: Any = "it", **kw) -> "Embedder":
        """The embedder named by a language pack (code, YAML path or ``LanguagePack``)."""
        from cerbero_hf.languages import load_language

        return cls(load_language(language).embedder, **kw)

    def __getstate__(self):
        return {"model_id": self.model_id, "device": self.device, "batch_size": self.batch_size}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, device={self.device!r})"
