"""Due-time index for state that leaves when the watermark passes it (call states, FCR callers, windows).

Entries are checked lazily: ``due(watermark)`` yields keys whose recorded due time has passed; the
caller re-reads the state and re-``push``es it if it has since moved later. The index lives in
memory; ``rebuild`` restores it from the state after a restart.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator


class Expiry:
    def __init__(self):
        self._heap: list[tuple[int, str]] = []

    def push(self, key: str, due_ms: int) -> None:
        heapq.heappush(self._heap, (due_ms, key))

    def rebuild(self, items: Iterable[tuple[str, int]]) -> None:
        self._heap = [(due, key) for key, due in items]
        heapq.heapify(self._heap)

    def due(self, watermark_ms: int) -> Iterator[str]:
        while self._heap and self._heap[0][0] <= watermark_ms:
            yield heapq.heappop(self._heap)[1]

    def __len__(self) -> int:
        return len(self._heap)
