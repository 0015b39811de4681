"""Memory: the short-term log window (and, later, long-term facts)."""
