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
from sources.lines import Oversized

from .backfill import EventProcesses
from .core.dead_letters import EXPIRY, dead_letter
from .core.graph import Output
from .core.kpi import KpiConfig
from .core.local import EventsHere, LocalGraph
from .core.sampling import PolicyConfig
from .metrics import reason_kind
from .runtime import fewer_full_collections

BATCH_EVENTS = 5000  # events handed to the graph at a time
BATCH_BYTES = 32 << 20  # or events of this much text (lines up to CALLQA_MAX_EVENT_BYTES: memory stays bounded)


@dataclass
class RunSummary:
    """What a run did with its input. Fed lines (``run``): ``lines`` = ``blank`` + ``events`` +
    ``dead_letters``, each non-blank line exactly one of the two; of the events, ``duplicates`` were
    already applied (not stored again: ``raw_events`` gets ``events`` − ``duplicates`` rows).
    ``dead_by_reason`` splits ``dead_letters`` by kind of reason (``callqa.metrics.reason_kind``, as the
    store's ``sinks.queries.DEAD_LETTER_KIND`` groups them): the store's dead letters of the run's origin."""

    lines: int = 0  # read by ``run``
    blank: int = 0
    events: int = 0  # valid events (a duplicate too)
    by_type: Counter = field(default_factory=Counter)
    duplicates: int = 0  # call events already applied
    dead_letters: int = 0  # input refused (an input line, or an adapter's event, each)
    dead_by_reason: Counter = field(default_factory=Counter)
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
        for d in out.rows.get(tables.DEAD_LETTERS, ()):
            if d["origin"] == EXPIRY:
                self.expired += 1
            else:
                self.dead_letters += 1
                self.dead_by_reason[reason_kind(d["reason"])] += 1
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
        fewer_full_collections()
        self.writer = writer
        self.state_path = state_path
        state = orjson.loads(state_path.read_bytes()) if state_path and state_path.exists() else {}
        events = partial(EventProcesses, processes) if processes > 1 else EventsHere
        self.graph = LocalGraph(state, config, policy, sampling_key, partitions, store_raw=True, events=events)
        self.summary = RunSummary()
        self._fed_bytes = 0

    def feed(self, raw: bytes | str | dict, origin: str, position: str) -> None:
        """One event, serialized or made by an adapter (validated in the graph either way); invalid
        input becomes a dead letter."""
        self.graph.feed(raw, origin, position)
        self._fed_bytes += len(raw) if isinstance(raw, (bytes, str)) else 0
        if self.graph.pending >= BATCH_EVENTS or self._fed_bytes >= BATCH_BYTES:
            self._fed_bytes = 0
            self._write(self.graph.advance())

    def reject(self, reason: str, raw: bytes | str, origin: str, position: str) -> None:
        """Keep input an adapter could not read as a dead letter, with the reason."""
        self.summary.dead_letters += 1
        self.summary.dead_by_reason[reason_kind(reason)] += 1
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

    def run(self, lines: Iterable[bytes | Oversized], origin: str) -> RunSummary:
        """Feed JSON Lines (blank lines skipped; a line over CALLQA_MAX_EVENT_BYTES — an ``Oversized`` of
        ``sources.lines.bounded_lines``, or a line given whole, which the graph refuses — is a dead letter
        with its first 4 KiB, not parsed), flush everything to the store and save the state."""
        summary = self.summary
        for number, line in enumerate(lines, 1):
            summary.lines = number
            if isinstance(line, Oversized):
                self.reject(line.reason, line.payload(), origin, str(number))
                continue
            line = line.rstrip(b"\r\n")
            if not line.strip():
                summary.blank += 1
            else:
                self.feed(line, origin, str(number))
        self.close()
        return summary
