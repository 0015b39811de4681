"""Memory: the short-term log window, long-term facts, the archive and their search.

=================  ==========================================================================
``api``            :class:`~carrier.memory.api.Memory`, the Python API (clients, CLI, scripts)
``short_term``     the channel's last hours, token-budgeted (``redis_mirror``: its Redis copy)
``long_term``      facts: de-duplication, supersession (LLM judge or offline rule), ranking
``consolidation``  the daily move of the log into facts and the archive (crash-safe)
``llm_memory``     LLM fact extraction and contradiction judge, with offline fallbacks
``archive``        hybrid (full-text + vector) search of archived messages, fused by rank
``maintenance``    background work: a change of embedding model, the archive back-fill
``embeddings``     the ``Embedder`` interface and its providers
``vectors``        the ``VectorIndex`` interface and its backends (sqlite, pgvector, chroma)
``people``         what is kept about someone, "forget me", retraction
=================  ==========================================================================
"""
