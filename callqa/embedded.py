"""The embedded runner: canonical events through the core in one process, into the configured store.

Used by ``callqa replay`` when no Kafka is configured. It runs the same core code as the faust
worker (stage one and two chained directly) and writes through the same batching writer.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from schemas import InvalidEvent, validate, validate_dict
from sinks import tables
from sinks.writer import BatchWriter

from .core.dead_letters import dead_letter
from .core.kpi import KpiAggregator
from .core.pipeline import Processor


@dataclass
class RunSummary:
    events: int = 0
    by_type: Counter = field(default_factory=Counter)
    duplicates: int = 0
    dead_letters: int = 0
    records: int = 0
    kpi_rows: int = 0


class EmbeddedPipeline:
    def __init__(self, writer: BatchWriter, window_sizes_s: tuple[int, ...]):
        self.writer = writer
        self.processor = Processor({}, window_sizes_s)
        self.kpis = KpiAggregator({})
        self.summary = RunSummary()

    def feed(self, raw: bytes | str, origin: str, position: str) -> None:
        """Validate and process one serialized event; invalid input becomes a dead letter."""
        try:
            event = validate(raw)
        except InvalidEvent as exc:
            self.reject(str(exc), raw, origin, position)
            return
        self._process(event)

    def feed_event(self, event: dict, origin: str, position: str) -> None:
        """Validate and process an event an adapter made."""
        try:
            validate_dict(event)
        except InvalidEvent as exc:
            self.reject(str(exc), orjson.dumps(event), origin, position)
            return
        self._process(event)

    def reject(self, reason: str, raw: bytes | str, origin: str, position: str) -> None:
        """Keep input that cannot be used as a dead letter, with the reason."""
        self.summary.dead_letters += 1
        self.writer.submit(tables.DEAD_LETTERS, dead_letter(reason, raw, origin, position))

    def _process(self, event: dict) -> None:
        s = self.summary
        s.events += 1
        s.by_type[event["event_type"]] += 1
        update = self.processor.process(event)
        if update is None:
            s.duplicates += event["event_type"].startswith("call.")
            return
        if update.record is not None:
            s.records += 1
            self.writer.submit(tables.CALL_RECORDS, update.record)
        for key, delta in update.deltas:
            s.kpi_rows += 1
            self.writer.submit(tables.KPI_WINDOWS, self.kpis.apply(key, delta))
        if self.writer.due():
            self.writer.flush()

    def run(self, lines: Iterable[bytes], origin: str) -> RunSummary:
        """Feed JSON Lines (blank lines skipped) and flush everything to the store."""
        for number, line in enumerate(lines, 1):
            if line.strip():
                self.feed(line.rstrip(b"\r\n"), origin, str(number))
        self.writer.flush()
        return self.summary
