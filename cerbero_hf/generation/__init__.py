"""Self-chat generation (METHOD.md §3): generator backends, the request replay cache, the SelfChat transform.

- :mod:`cerbero_hf.generation.backends`: one async interface, ``await backend.generate(request) -> Result``,
  over an OpenAI-compatible / TGI endpoint (``huggingface_hub.AsyncInferenceClient``) or an in-process
  transformers model that batches concurrent requests; retries, timeouts and a concurrency bound (D11).
- :mod:`cerbero_hf.generation.cache`: the sqlite request-replay cache that makes runs resumable (D12).
- :mod:`cerbero_hf.generation.selfchat`: ``SelfChat``, an async picklable row transform for ``Dataset.map``,
  and ``generate_corpus`` (the Python API behind ``cerbero-hf generate``).

Nothing here imports torch, transformers or datasets at module level.
"""
