"""The garbage collector and a long-running bot.

Start-up leaves a large heap that lives as long as the process: SQLAlchemy's metadata and
compiled statements, pydantic models, the SDKs' types, discord.py, the embedding model's
tokenizer.  Python's full collections walk all of it again and again - a pause of ~100 ms on
this heap, landing on whichever reply is being made.  Once start-up is done, :func:`settle`
moves it to the permanent generation (``gc.freeze``), so later collections only walk what
was allocated since.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("carrier.heap")

_settled = False


def settle() -> bool:
    """Start-up is done (models loaded, engine built): collect once, then freeze what is
    left.  Once per process (later calls do nothing, so that a process running several
    clients does not freeze the garbage of one into the next); returns whether it froze."""
    global _settled
    if _settled:
        return False
    _settled = True
    gc.collect()
    gc.freeze()
    log.info("start-up heap settled: %d objects frozen", gc.get_freeze_count())
    return True
