"""The ``generate`` stage: self-chat generation with the embedding diversity filter (paper §3.3).

- :mod:`~cerbero_hf.stages.generate.config`: :class:`GenerateConfig` (every setting, the recipe's ``generate:``
  keys and the CLI's flags).
- :mod:`~cerbero_hf.stages.generate.stage`: :class:`GenerateResult`, ``run_generate`` and ``STAGE``.
- :mod:`~cerbero_hf.stages.generate.backends`: one async interface, ``await backend.generate(request) -> Result``,
  over an OpenAI-compatible / TGI endpoint (``huggingface_hub.AsyncInferenceClient``) or an in-process
  transformers model that batches concurrent requests; retries (:mod:`cerbero_hf.retry`), timeouts and a
  concurrency bound.
- :mod:`~cerbero_hf.stages.generate.selfchat`: ``SelfChat``, an async picklable row transform for ``Dataset.map``.
- :mod:`~cerbero_hf.stages.generate.corpus`: ``generate_corpus``, seeds -> a Hub-layout corpus folder.
- :mod:`~cerbero_hf.stages.generate.embedder` / :mod:`~cerbero_hf.stages.generate.store`: sentence embeddings and
  the diversity store; :mod:`~cerbero_hf.stages.generate.dedup`: the order-aware pass over merged corpora.
- :mod:`~cerbero_hf.stages.generate.cache`: the sqlite request-replay cache that makes runs resumable.

Nothing here imports torch, transformers or datasets at module level.
"""
