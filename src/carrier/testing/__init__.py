"""Test adapters that ship with Carrier: real implementations of its outside world, used
by its own tests and benchmarks (and usable by anyone building on Carrier).

* :mod:`carrier.testing.llm_server` — a scripted OpenAI- and Anthropic-compatible LLM server
  over real HTTP on 127.0.0.1 (needs the ``test`` extra: aiohttp).
"""
