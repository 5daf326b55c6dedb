"""Process settings of the long-running runners (the embedded replay, the faust worker)."""
from __future__ import annotations

import gc

# The state a runner holds (calls, windows, charts) is hundreds of thousands of long-lived containers, walked
# again by every full collection of the cyclic garbage collector: one every this many middle-generation
# collections (CPython's default: 10, which took a sixth of a replay's time).
FULL_COLLECTION_EVERY = 100


def fewer_full_collections() -> None:
    """Collect the oldest generation every ``FULL_COLLECTION_EVERY`` middle collections (never more often
    than already set). For the whole process: call it where a runner starts."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
