"""Process settings of the long-running runners (the embedded replay, the faust worker)."""
from __future__ import annotations

import faulthandler
import gc
import signal
import sys

# The state a runner holds (calls, windows, charts) is hundreds of thousands of long-lived containers, walked
# again by every full collection of the cyclic garbage collector: one every this many middle-generation
# collections (CPython's default: 10, which took a sixth of a replay's time).
FULL_COLLECTION_EVERY = 100


def fewer_full_collections() -> None:
    """Collect the oldest generation every ``FULL_COLLECTION_EVERY`` middle collections (never more often
    than already set). For the whole process: call it where a runner starts."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))


STACKS_SIGNAL = signal.SIGUSR2  # SIGUSR1: the faust worker's own (its asyncio tasks, when the loop is free)


def stacks_on_signal() -> None:
    """``kill -USR2 <pid>`` writes the stack of every thread of this process to stderr, and it goes on:
    where a worker or sink that stopped making progress waits. For the long-running processes."""
    faulthandler.unregister(STACKS_SIGNAL)  # registered again: installed anew (after a handler replaced it)
    faulthandler.register(STACKS_SIGNAL, file=sys.__stderr__, all_threads=True, chain=False)  # not a logging proxy
