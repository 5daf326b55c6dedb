"""The embedded runner: canonical events through the stage graph in one process, into the configured store.

Used when no Kafka is configured (``replay``, ``ingest``, ``simulate``, ``demo``). It runs the graph
the faust worker runs (``callqa.core.graph``), split over the same number of partitions, and writes
through the same batching writer. Its state is saved in the data folder after each run, as the
worker's tables are in their changelogs, so runs add up like a stream. The end of a run is the end of
the input: stages that wait for every partition (drift charts, sampler, thresholds) catch up then.
With ``processes`` > 1 the events stage runs in that many worker processes (``callqa.backfill``): the
same results and saved state, on more cores.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import orjson

from sinks import rollups, tables
from sinks.writer import BatchWriter

from .backfill import EventProcesses
from .core.dead_letters import EXPIRY, dead_letter
from .core.graph import Output
from .core.kpi import KpiConfig
from .core.local import EventsHere, LocalGraph
from .core.sampling import PolicyConfig

BATCH_EVENTS = 5000  # events handed to the graph at a time


@dataclass
class RunSummary:
    events: int = 0
    by_type: Counter = field(default_factory=Counter)
    duplicates: int = 0
    dead_letters: int = 0  # input refused (an input line each)
    expired: int = 0  # calls expired with a dead letter (no end, or never reached the ACD): not input lines
    records: int = 0
    kpi_rows: int = 0
    alerts: int = 0
    rate_changes: int = 0
    selected: int = 0

    def add(self, out: Output) -> None:
        duplicates = out.counts.get("duplicates", 0)
        self.duplicates += duplicates
        self.events += sum(out.counts.values()) - duplicates
        self.by_type.update({k: v for k, v in out.counts.items() if k != "duplicates"})
        dead = out.rows.get(tables.DEAD_LETTERS, ())
        self.expired += sum(d["origin"] == EXPIRY for d in dead)
        self.dead_letters += sum(d["origin"] != EXPIRY for d in dead)
        self.records += len(out.rows.get(tables.CALL_RECORDS, ()))
        self.kpi_rows += len(out.rows.get(tables.KPI_WINDOWS, ()))
        self.alerts += sum(a["status"] == "open" for a in out.rows.get(tables.ALERTS, ()))
        self.rate_changes += len(out.rows.get(tables.SAMPLING_RATES, ()))
        reviews = out.rows.get(tables.REVIEW_QUEUE, ())
        self.selected += sum(r["status"] == "queued" for r in reviews) - sum(r["status"] == "dropped" for r in reviews)


class EmbeddedPipeline:
    def __init__(self, writer: BatchWriter, config: KpiConfig, state_path: Path | None = None,
                 policy: PolicyConfig = PolicyConfig(), sampling_key: bytes = b"callqa-development", partitions: int = 1,
                 processes: int = 1):
        self.writer = writer
        self.state_path = state_path
        state = orjson.loads(state_path.read_bytes()) if state_path and state_path.exists() else {}
        events = partial(EventProcesses, processes) if processes > 1 else EventsHere
        self.graph = LocalGraph(state, config, policy, sampling_key, partitions, store_raw=True, events=events)
        self.summary = RunSummary()

    def feed(self, raw: bytes | str | dict, origin: str, position: str) -> None:
        """One event, serialized or made by an adapter (validated in the graph either way); invalid
        input becomes a dead letter."""
        self.graph.feed(raw, origin, position)
        if self.graph.pending >= BATCH_EVENTS:
            self._write(self.graph.advance())

    def reject(self, reason: str, raw: bytes | str, origin: str, position: str) -> None:
        """Keep input an adapter could not read as a dead letter, with the reason."""
        self.summary.dead_letters += 1
        self.writer.submit(tables.DEAD_LETTERS, dead_letter(reason, raw, origin, position))

    def flush(self) -> None:
        """Run what has been fed through the graph and write the rows."""
        self._write(self.graph.flush())

    def _write(self, out: Output) -> None:
        self.summary.add(out)
        for table, rows in out.rows.items():
            for row in rows:
                self.writer.submit(table, row)
        if self.writer.due():
            self.writer.flush()

    def close(self) -> None:
        """The end of the input: catch every stage up, write, roll the history up, save the state.
        Raises ``WorkerFailed`` when a worker process died (nothing saved)."""
        self._write(self.graph.idle())
        self.graph.close()
        self.writer.flush()
        rollups.refresh(self.writer.store)
        if self.state_path:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(self.graph.state))
            os.replace(tmp, self.state_path)

    def run(self, lines: Iterable[bytes], origin: str) -> RunSummary:
        """Feed JSON Lines (blank lines skipped), flush everything to the store and save the state."""
        for number, line in enumerate(lines, 1):
            if line.strip():
                self.feed(line.rstrip(b"\r\n"), origin, str(number))
        self.close()
        return self.summary
