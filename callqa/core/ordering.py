"""Inputs from several sources, applied once each and in one order, whatever the interleaving.

A stage fed by several partitions of an upstream stage sees their messages interleaved differently on
every run. Stages whose state depends on order (drift charts, the sampler) therefore hold items back
and release them in ``(at, rank, id)`` order once every source's watermark, less the allowed
lateness, has passed them: the same items then give the same state on any runner, any number of
workers and after any restart (for input whose lateness stays within the allowance).

Each source says how far it has got with *marks*: its event-time watermark, and whether it is busy,
caught up (nothing more for now) or finished (the end of an embedded run: a live partition, even one
empty so far, is only ever caught up). A finished source no longer holds the others back; when no
source is busy, everything held is released (the frontier drops back when input resumes: items then
wait again).

Items carry a *tag*, ``[input offset, n]`` of the source; an item whose tag is not above the last one
taken from its source is a repeat (a replay after a restart) and is dropped.

The state is one JSON-able dict, kept by the stage in the same value as what the items change, so the
two are saved together.

>>> o = Ordered({}, sources=["a", "b"], slack_ms=0)
>>> o.offer("a", [1, 0], (5, 0, "x"), "late"), o.offer("a", [1, 0], (5, 0, "x"), "late")
(True, False)
>>> o.mark("a", 10), o.release()
(None, [])
>>> o.mark("b", 3), o.release(), o.mark("b", 9, idle=FINISHED), o.release()
(None, [], None, ['late'])
"""
from __future__ import annotations

import heapq

END = 2**62
BUSY, CAUGHT_UP, FINISHED = 0, 1, 2


class Ordered:
    def __init__(self, state: dict, sources: list[str], slack_ms: int):
        """``state``: where the pending items, marks and last tags live (filled in place)."""
        self.s = state
        state.setdefault("marks", {})  # source -> [watermark, idle]
        state.setdefault("tags", {})  # source -> last tag taken
        state.setdefault("pending", [])  # heap of [at, rank, id, item]
        state.setdefault("frontier", 0)
        self.sources = sources
        self.slack_ms = slack_ms

    def offer(self, source: str, tag: list[int], order: tuple, item) -> bool:
        """Hold ``item`` until its turn; False (and dropped) when the tag was already taken."""
        last = self.s["tags"].get(source)
        if last is not None and tag <= last:
            return False
        self.s["tags"][source] = tag
        heapq.heappush(self.s["pending"], [*order, source, tag, item])  # source, tag: a total order
        return True

    def mark(self, source: str, watermark_ms: int, idle: int = BUSY) -> None:
        """How far ``source`` has got, and whether it is ``BUSY``, ``CAUGHT_UP`` (nothing more for now)
        or ``FINISHED`` (nothing more at all: the end of an embedded run)."""
        held = self.s["marks"].get(source)
        self.s["marks"][source] = [max(watermark_ms, held[0] if held else 0), int(idle)]

    def state(self) -> int:
        """The least settled state of the sources (a source not heard from is busy)."""
        marks = self.s["marks"]
        return min((marks[s][1] if s in marks else BUSY) for s in self.sources)

    def frontier(self) -> int:
        """How far every source has got: the lowest watermark, less the slack, of the sources not
        finished (a source not heard from holds everything back); when no source is busy any more,
        everything has arrived (``END``)."""
        marks = self.s["marks"]
        if self.sources and self.state() > BUSY:
            self.s["frontier"] = END
            return END
        low = [marks[s][0] - self.slack_ms if s in marks else -1 for s in self.sources
               if s not in marks or marks[s][1] != FINISHED]
        self.s["frontier"] = min(low) if low else END
        return self.s["frontier"]

    def time(self) -> int:
        """The frontier as an event time (never past the highest watermark): for expiring state."""
        return min(self.frontier(), max((m[0] for m in self.s["marks"].values()), default=0))

    def release(self) -> list:
        """The items whose time has come, in order: strictly before the frontier (a source at the
        frontier may still send items of that very time)."""
        frontier, pending, out = self.frontier(), self.s["pending"], []
        while pending and pending[0][0] < frontier:
            out.append(heapq.heappop(pending)[-1])
        return out
