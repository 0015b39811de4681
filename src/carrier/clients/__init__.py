"""Clients: terminal (and later Discord, HTTP, Instagram)."""
