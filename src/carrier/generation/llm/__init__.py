"""LLM providers behind one interface, prompt assembly and the LLM generator.

=================  ===========================================================================
module             concept
=================  ===========================================================================
``base``           the ``LLM`` protocol, ``Prompt``/``ChatMessage``/``Completion``, the errors
``openai_chat``    OpenAI-compatible chat completions (OpenAI, Ollama, llama.cpp, vLLM)
``anthropic_chat`` Anthropic's Messages API
``registry``       provider kind -> ``module:Class``, imported lazily
``circuit``        a circuit breaker per provider (and Retry-After holds)
``tokens``         offline token counting for budgets
``prompt``         prompts for replies, proactive messages and status lines
``extraction``     the fact-extraction prompt and its validated JSON answer
``transport``      deadlines and transport errors shared by the providers
``generator``      ``LLMGenerator``: the chain of providers as a responder ``Generator``
=================  ===========================================================================

Importing this package loads no provider SDK; the registry imports one when it is configured.
"""
