"""discord.py imports the stdlib's audioop (voice), deprecated since Python 3.11; the suite
turns warnings into errors, so discord is imported once here with that warning ignored."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401
