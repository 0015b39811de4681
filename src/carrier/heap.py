"""The garbage collector and a long-running bot.

Start-up leaves a large heap that lives as long as the process: SQLAlchemy's metadata and
compiled statements, pydantic models, the SDKs' types, discord.py, the embedding model's
tokenizer.  Python's full collections walk all of it again and again - a pause of ~100 ms on
this heap, landing on whichever reply is being made.  Once start-up is done, :func:`settle`
moves it to the permanent generation (``gc.freeze``), so later collections only walk what
was allocated since.

It also makes young collections rarer (:data:`YOUNG_THRESHOLD` net allocations instead of
700).  A busy server allocates thousands of objects per request, most freed by reference
counting within it; at 700 the collector ran several times per request and kept promoting
the objects of requests still in flight, so full collections followed about every second.
Measured under ``bench/bench_api.py --workers 2`` (300 chats/s, 20 s): per worker 7,415 young
and 61 full collections, the full ones up to 34 ms on the event loop; at 20,000: 8 and 2.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("carrier.heap")

_settled = False

YOUNG_THRESHOLD = 20_000
"""Net allocations of container objects between two young collections (CPython's default
is 700); the older generations keep their defaults."""


def settle() -> bool:
    """Start-up is done (models loaded, engine built): collect once, freeze what is left,
    and make young collections rarer.  Once per process (later calls do nothing, so that a
    process running several clients does not freeze the garbage of one into the next);
    returns whether it froze."""
    global _settled
    if _settled:
        return False
    _settled = True
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    log.info("start-up heap settled: %d objects frozen", gc.get_freeze_count())
    return True
