"""The start-up heap is frozen once, after start-up (in a child process: freezing the test
runner's own heap would outlive this test)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from carrier import heap
junk = [[i] for i in range(50_000)]
assert gc.get_freeze_count() == 0
before = gc.get_threshold()
assert heap.settle() is True
frozen = gc.get_freeze_count()
assert frozen >= 50_000, frozen
assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *before[1:]), gc.get_threshold()
assert heap.settle() is False  # once per process
assert gc.get_freeze_count() == frozen
print("ok", frozen)
"""


def test_settle_freezes_the_start_up_heap_once_and_makes_young_collections_rarer() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
