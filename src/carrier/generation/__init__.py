"""Reply generation: Markov chains, (later) LLM providers and the responder chain."""
