"""Batching writer: buffers rows per table and writes them in one insert per table.

A batch is due when any table holds ``max_rows`` rows or about ``max_bytes`` of text (dead letters keep
payloads of up to CALLQA_MAX_EVENT_BYTES: memory stays bounded whatever the rows hold), or the oldest
buffered row has waited ``max_seconds``; a flush writes inserts of at most both. Rows stay buffered until a write succeeds, so the caller commits its input offsets
only after ``flush()`` returned:

- a store that cannot take the rows now (unreachable, disk full, out of memory, too many parts:
  ``StoreUnavailable``) is retried with exponential backoff (``retries`` times; None: until it takes
  them), with one warning when it goes away and one when it is back;
- a batch the store refuses for what its rows hold (a wrong type, an unknown field) is split to find the
  rows it refuses — down to one row, even a batch of one: those go to the dead letters with the store's
  reason and the row, the rest is written. A refusal of the statement itself (no such table, no right to
  write), or for a reason not known to be about rows (``StatementRefused``), dead-letters nothing:
  ``flush()`` raises it with the rows kept.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, defaultdict

import orjson

from callqa import metrics
from callqa.core.dead_letters import dead_letter

from . import tables
from .store import StatementRefused, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
MAX_BYTES = 32 << 20  # text buffered before a batch is due


def _text_bytes(row: dict) -> int:
    """About the size of a row: its strings' lengths (the large values are strings) and 16 a value else."""
    size = 0
    for value in row.values():  # a plain loop: every row the writer buffers passes here
        size += len(value) if value.__class__ is str or value.__class__ is bytes else 16
    return size


class BatchWriter:
    def __init__(self, store: Store, max_rows: int, max_seconds: float,
                 retries: int | None = None, backoff_s: float = 0.2, max_backoff_s: float = 10.0,
                 max_bytes: int = MAX_BYTES):
        self.store = store
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._bytes = 0
        self.max_seconds = max_seconds
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._rows: dict[str, list[dict]] = defaultdict(list)
        self._sizes: dict[str, list[int]] = defaultdict(list)  # of each buffered row: its ``_text_bytes``
        self._oldest: float | None = None
        self.written: dict[str, int] = defaultdict(int)
        self.refused = 0  # rows the store refused, now dead letters

    def submit(self, table: str, row: dict) -> None:
        size = _text_bytes(row)
        self._rows[table].append(row)
        self._sizes[table].append(size)
        self._bytes += size
        if self._oldest is None:
            self._oldest = time.monotonic()

    @property
    def pending(self) -> int:
        return sum(len(r) for r in self._rows.values())

    def due(self) -> bool:
        if self._oldest is None:
            return False
        return (time.monotonic() - self._oldest >= self.max_seconds or self._bytes >= self.max_bytes
                or any(len(r) >= self.max_rows for r in self._rows.values()))

    def flush(self) -> None:
        """Write every buffered row; raises StoreError when the retries are spent (rows kept)."""
        for table in list(self._rows):
            rows, sizes = self._rows[table], self._sizes[table]
            while rows:
                n = size = 0
                while n < len(rows) and n < self.max_rows and (not n or size < self.max_bytes):
                    size += sizes[n]
                    n += 1
                self.written[table] += n - self._write(table, rows[:n])
                del rows[:n], sizes[:n]  # written: a retry spent later keeps only what is left
            del self._rows[table], self._sizes[table]
        self._oldest = None
        self._bytes = 0

    def _write(self, table: str, rows: list[dict]) -> int:
        """Write one batch; returns how many of its rows the store refused (now dead letters)."""
        try:
            self._insert(table, rows)
            return 0
        except (StoreUnavailable, StatementRefused):
            raise
        except StoreError as exc:
            refused: list[tuple[dict, str]] = []
            if len(rows) == 1:
                refused.append((rows[0], str(exc)))
            else:
                half = len(rows) // 2
                for part in (rows[:half], rows[half:]):
                    self._split(table, part, refused)
            if not refused:
                return 0  # both halves went in: the refusal passed
            self.refused += len(refused)
            metrics.REFUSED.labels(table).inc(len(refused))
            log.error("%s refused %d of %d rows (e.g. %s); they are in the dead letters", table, len(refused),
                      len(rows), refused[0][1])
            self._insert(tables.DEAD_LETTERS, [dead_letter(reason, orjson.dumps(row), f"store:{table}",
                                                           hashlib.sha1(orjson.dumps(row)).hexdigest()[:16])
                                               for row, reason in refused])
            self.written[tables.DEAD_LETTERS] += len(refused)
            return len(refused)

    def _split(self, table: str, rows: list[dict], refused: list[tuple[dict, str]]) -> None:
        """Write what the store takes of ``rows``, halving refused batches down to single rows (kept in
        ``refused`` with the store's reason)."""
        try:
            self._insert(table, rows)
        except (StoreUnavailable, StatementRefused):
            raise
        except StoreError as exc:
            if len(rows) == 1:
                refused.append((rows[0], str(exc)))
                return
            half = len(rows) // 2
            self._split(table, rows[:half], refused)
            self._split(table, rows[half:], refused)

    def _insert(self, table: str, rows: list[dict]) -> None:
        """One insert; a store that cannot take it now is retried with backoff."""
        delay, attempt = self.backoff_s, 0
        while True:
            try:
                started = time.monotonic()
                self.store.insert(table, rows)
                _count(table, rows, time.monotonic() - started)
                if attempt:
                    log.warning("the store is back after %d retries", attempt)
                return
            except StoreUnavailable as exc:
                metrics.STORE_UP.set(0)
                attempt += 1
                if self.retries is not None and attempt > self.retries:
                    raise
                if attempt == 1:
                    log.warning("write of %d rows to %s failed (%s); retrying every %.1f-%.0fs until the store answers",
                                len(rows), table, exc, delay, self.max_backoff_s)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)


def _count(table: str, rows: list[dict], seconds: float) -> None:
    """The metrics of one successful insert."""
    metrics.ROWS.labels(table).inc(len(rows))
    metrics.INSERT_SECONDS.labels(table).observe(seconds)
    metrics.BATCH_ROWS.labels(table).observe(len(rows))
    metrics.LAST_WRITE.set_to_current_time()
    metrics.STORE_UP.set(1)
    if table == tables.RAW_EVENTS:
        for kind, n in Counter(r.get("event_type", "") for r in rows).items():
            metrics.EVENTS.labels(kind).inc(n)
    elif table == tables.DEAD_LETTERS:
        for kind, n in Counter(metrics.reason_kind(r.get("reason", "")) for r in rows).items():
            metrics.DEAD_LETTERS.labels(kind).inc(n)
