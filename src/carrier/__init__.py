"""Carrier: a runtime for AI persona bots that live in group chats."""

__version__ = "0.1.0"
