"""The embedded runner: canonical events through the core in one process, into the configured store.

Used when no Kafka is configured (``replay``, ``ingest``, ``simulate``). It runs the same core code as
the faust worker, chaining the keyed stages directly, and writes through the same batching writer.
Its state (open calls, agent marks, FCR callers, open windows, watermarks) is saved in the data
folder after each run, as the worker's tables are in their changelogs, so runs add up like a stream.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from schemas import InvalidEvent, validate, validate_dict
from sinks import rollups, tables
from sinks.writer import BatchWriter

from .core.dead_letters import dead_letter
from .core.kpi import KpiConfig
from .core.pipeline import Chain
from .core.sampling import PolicyConfig
from .partitions import partition_of


@dataclass
class RunSummary:
    events: int = 0
    by_type: Counter = field(default_factory=Counter)
    duplicates: int = 0
    dead_letters: int = 0
    records: int = 0
    kpi_rows: int = 0
    alerts: int = 0
    rate_changes: int = 0
    selected: int = 0


class EmbeddedPipeline:
    def __init__(self, writer: BatchWriter, config: KpiConfig, state_path: Path | None = None,
                 policy: PolicyConfig = PolicyConfig(), sampling_key: bytes = b"callqa-development", partitions: int = 1):
        self.writer = writer
        self.state_path = state_path
        state = orjson.loads(state_path.read_bytes()) if state_path and state_path.exists() else {}
        self.chain = Chain(state, config, policy, sampling_key, partitions, partition_of)
        self.summary = RunSummary()

    def feed(self, raw: bytes | str, origin: str, position: str) -> None:
        """Validate and process one serialized event; invalid input becomes a dead letter."""
        try:
            event = validate(raw)
        except InvalidEvent as exc:
            self.reject(str(exc), raw, origin, position)
            return
        self.writer.submit(tables.RAW_EVENTS, tables.raw_event(event, raw))
        self._process(event, raw, origin, position)

    def feed_event(self, event: dict, origin: str, position: str) -> None:
        """Validate and process an event an adapter made."""
        try:
            validate_dict(event)
        except InvalidEvent as exc:
            self.reject(str(exc), orjson.dumps(event), origin, position)
            return
        self.writer.submit(tables.RAW_EVENTS, tables.raw_event(event, orjson.dumps(event)))
        self._process(event, None, origin, position)

    def reject(self, reason: str, raw: bytes | str, origin: str, position: str) -> None:
        """Keep input that cannot be used as a dead letter, with the reason."""
        self.summary.dead_letters += 1
        self.writer.submit(tables.DEAD_LETTERS, dead_letter(reason, raw, origin, position))

    def _process(self, event: dict, raw, origin: str, position: str) -> None:
        s = self.summary
        s.events += 1
        s.by_type[event["event_type"]] += 1
        update = self.chain.process(event)
        if update is None:
            s.duplicates += event["event_type"].startswith("call.")
            return
        if update.refused:
            self.reject(update.refused, raw if raw is not None else orjson.dumps(event), origin, position)
            return
        for record in update.records:
            s.records += 1
            self.writer.submit(tables.CALL_RECORDS, record)
        for evaluation in update.evaluations:
            self.writer.submit(tables.EVALUATIONS, evaluation)
        self._alerts(update.alerts)
        sampled = update.sampled
        s.rate_changes += len(sampled.rates)
        s.selected += sum(r["status"] == "queued" for r in sampled.reviews) - sum(r["status"] == "dropped" for r in sampled.reviews)
        for table, rows in ((tables.SAMPLING_RATES, sampled.rates), (tables.SAMPLING_DECISIONS, sampled.decisions),
                            (tables.REVIEW_QUEUE, sampled.reviews)):
            for row in rows:
                self.writer.submit(table, row)
        if self.writer.due():
            self.flush()

    def flush(self) -> None:
        """Write the changed windows' rows (and the threshold alerts they raise) and everything buffered."""
        rows, alerts = self.chain.drain()
        for row in rows:
            self.summary.kpi_rows += 1
            self.writer.submit(tables.KPI_WINDOWS, row)
        self._alerts(alerts)
        self.writer.flush()

    def _alerts(self, alerts: list[dict]) -> None:
        self.summary.alerts += sum(a["status"] == "open" for a in alerts)
        for alert in alerts:
            self.writer.submit(tables.ALERTS, alert)

    def close(self) -> None:
        """Flush, roll the history up, then save the state for the next run."""
        self.flush()
        rollups.refresh(self.writer.store)
        if self.state_path:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(self.chain.state))
            os.replace(tmp, self.state_path)

    def run(self, lines: Iterable[bytes], origin: str) -> RunSummary:
        """Feed JSON Lines (blank lines skipped), flush everything to the store and save the state."""
        for number, line in enumerate(lines, 1):
            if line.strip():
                self.feed(line.rstrip(b"\r\n"), origin, str(number))
        self.close()
        return self.summary
