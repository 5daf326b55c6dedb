"""Batching writer: buffers rows per table and writes them in one insert per table.

A batch is due when any table holds ``max_rows`` rows or the oldest buffered row has waited
``max_seconds``. A failed write is retried with exponential backoff; rows stay buffered until a
write succeeds, so the caller commits its input offsets only after ``flush()`` returned.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

from .store import Store, StoreError

log = logging.getLogger(__name__)


class BatchWriter:
    def __init__(self, store: Store, max_rows: int, max_seconds: float,
                 retries: int = 8, backoff_s: float = 0.2, max_backoff_s: float = 10.0):
        self.store = store
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._rows: dict[str, list[dict]] = defaultdict(list)
        self._oldest: float | None = None
        self.written: dict[str, int] = defaultdict(int)

    def submit(self, table: str, row: dict) -> None:
        rows = self._rows[table]
        rows.append(row)
        if self._oldest is None:
            self._oldest = time.monotonic()

    @property
    def pending(self) -> int:
        return sum(len(r) for r in self._rows.values())

    def due(self) -> bool:
        if self._oldest is None:
            return False
        return (time.monotonic() - self._oldest >= self.max_seconds
                or any(len(r) >= self.max_rows for r in self._rows.values()))

    def flush(self) -> None:
        """Write every buffered row; raises StoreError when the retries are spent (rows kept)."""
        for table in list(self._rows):
            rows = self._rows[table]
            for start in range(0, len(rows), self.max_rows):
                self._write(table, rows[start:start + self.max_rows])
            self.written[table] += len(rows)
            del self._rows[table]
        self._oldest = None

    def _write(self, table: str, rows: list[dict]) -> None:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                self.store.insert(table, rows)
                return
            except StoreError as exc:
                if attempt == self.retries:
                    raise
                log.warning("write of %d rows to %s failed (%s); retry %d in %.1fs",
                            len(rows), table, exc, attempt + 1, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
