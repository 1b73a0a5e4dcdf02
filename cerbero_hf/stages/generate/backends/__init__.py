"""Generator backends: one small async interface, ``await backend.generate(request) -> Result``.

- :mod:`.base`: :class:`Request`, :class:`Result`, :class:`GenerationError`, the replay-cache key.
- :mod:`.endpoint`: :class:`EndpointBackend`, a server behind ``huggingface_hub.AsyncInferenceClient``
  (``/v1/chat/completions`` or TGI ``text_generation``), with the retry policy of :mod:`cerbero_hf.retry`.
- :mod:`.local`: :class:`LocalBackend` over :class:`LocalLM`, an in-process transformers model that
  batches concurrent requests (no server).

Self-chat generation and evaluation (:mod:`cerbero_hf.stages.evaluate.generators`) both go through these.
Nothing here imports torch, transformers or huggingface_hub at module level.
"""

from cerbero_hf.stages.generate.backends.base import (
                                                      GenerationError,
                                                      GeneratorRejected,
                                                      MalformedResponse,
                                                      Request,
                                                      Result,
                                                      payload_dict,
                                                      payload_hash,
)
from cerbero_hf.stages.generate.backends.endpoint import EndpointBackend
from cerbero_hf.stages.generate.backends.local import LocalBackend, LocalLM

__all__ = ["EndpointBackend", "GenerationError", "GeneratorRejected", "LocalBackend", "LocalLM", "MalformedResponse",
           "Request", "Result", "payload_dict", "payload_hash"]
