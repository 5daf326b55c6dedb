"""Run an adapter over a file and send what it makes to Kafka or through the embedded pipeline.

Every input unit is accounted for (``accounting``): the adapter's units (lines, rows, records) are
each one of with events, skipped (by verb), unreadable (a dead letter) or with nothing; the events it
made are each stored, a duplicate or refused (a dead letter) — or, to Kafka, published or refused by
Kafka as too large (a dead letter); and the dead letters, by kind of reason, are the store's rows of
this origin.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

import schemas

from sources.base import Converted, IngestSummary
from sources.lines import CHUNK

from .core.dead_letters import dead_letter
from .metrics import reason_kind


def follow(handle, on_idle: Callable[[], None], stop: Callable[[], bool], interval_s: float = 0.5,
           chunk: int = CHUNK) -> Iterator:
    """The text of a growing file, as ``tail -f`` shows it, until ``stop()`` is true: each line once it
    is complete — a line longer than ``chunk`` in pieces of at most that (never held whole; the
    adapters bound lines, ``sources.lines``)."""
    partial = None
    while not stop():
        line = handle.readline(chunk)
        if not line:
            on_idle()
            time.sleep(interval_s)
            continue
        partial = line if partial is None else partial + line
        if partial[-1:] in ("\n", b"\n") or len(partial) >= chunk:
            yield partial
            partial = None


class EmbeddedTarget:
    """Adapter output through the embedded pipeline into the embedded (or server) store; ``sent``:
    events handed over so far."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.sent = 0

    def accounting(self, summary: IngestSummary) -> dict:
        """What became of the events made and the dead letters, once closed (see ``accounting``)."""
        run = self.pipeline.summary
        return {"events_stored": run.events - run.duplicates, "duplicates": run.duplicates,
                "events_refused": run.dead_letters - summary.refused, "dead_letters": run.dead_letters,
                "dead_letters_by_reason": dict(sorted(run.dead_by_reason.items())), "expired_calls": run.expired}

    def reject(self, unit: Converted, origin: str) -> None:
        self.pipeline.reject(unit.error, unit.raw, origin, unit.position)

    def event(self, event: dict, origin: str, position: str) -> None:
        self.sent += 1
        self.pipeline.feed(event, origin, position)

    def idle(self) -> None:
        self.pipeline.flush()

    def close(self) -> None:
        self.pipeline.close()


class KafkaTarget:
    """Adapter output to the events topic; unreadable input to the dead-letter topic; ``sent``: events
    published so far."""

    def __init__(self, publisher):
        self.publisher = publisher
        self.sent = 0

    def accounting(self, summary: IngestSummary) -> dict:
        """What became of the events made and the dead letters, once flushed (see ``accounting``)."""
        dead = self.publisher.dead_letters
        return {"events_published": self.publisher.sent, "events_refused": self.publisher.refused,
                "dead_letters": sum(dead.values()), "dead_letters_by_reason": dict(sorted(dead.items()))}

    def reject(self, unit: Converted, origin: str) -> None:
        self.publisher.dead_letter(dead_letter(unit.error, unit.raw, origin, unit.position))

    def event(self, event: dict, origin: str, position: str) -> None:
        self.sent += 1
        self.publisher.event(orjson.dumps(event), origin, position)

    def idle(self) -> None:
        self.publisher.flush()

    close = idle


class FileTarget:
    """Events as JSON Lines in a file (``simulate --out``)."""

    def __init__(self, path: Path):
        self.handle = path.open("wb")

    def event(self, event: dict, origin: str, position: str) -> None:
        self.handle.write(orjson.dumps(event) + b"\n")

    def close(self) -> None:
        self.handle.close()


def ingest(units: Iterable[Converted], target, origin: Path | str, in_time_order: bool = False,
           scrub: Callable[[str], str] = lambda text: text) -> IngestSummary:
    """Send every unit's events (sorted by event time first when ``in_time_order``) and its errors (their
    raw text and reason through ``scrub``: the caller hasher's, so no number is kept in clear; a unit over the limit
    keeps its first 4 KiB, cut once scrubbed so that a number across the cut is hashed whole)."""
    summary, held = IngestSummary(), []
    try:
        for unit in units:
            if unit.error:  # scrubbed before the summary takes it: its reasons are printed
                unit.raw, unit.error = scrub(unit.raw), scrub(unit.error)  # a reason may quote the line
                if unit.size is not None:
                    unit.raw = schemas.payload_prefix(unit.raw)
            summary.add(unit)
            if unit.error:
                summary.dead_letters[reason_kind(unit.error)] += 1
                target.reject(unit, str(origin))
            for event in unit.events:
                if in_time_order:
                    held.append((event["event_time"], len(held), event, unit.position))
                else:
                    target.event(event, str(origin), unit.position)
        for _, _, event, position in sorted(held, key=lambda h: h[:2]):
            target.event(event, str(origin), position)
    finally:
        target.close()
    return summary


def accounting(summary: IngestSummary, target) -> dict:
    """Every input unit and event of an ingest, accounted for (the ``--json`` of ``callqa ingest``):

    - ``units`` = ``units_with_events`` + Σ ``skipped`` + ``unreadable`` + ``units_without_event``
      (``units_partly_refused``: units with events that also left a dead letter);
    - ``events_made`` (Σ ``events``, by type) = ``events_stored`` + ``duplicates`` + ``events_refused``
      (embedded), or ``events_published`` + ``events_refused`` (Kafka: refused by Kafka as too large);
    - ``dead_letters`` (Σ ``dead_letters_by_reason``) = ``unreadable`` + ``units_partly_refused`` +
      ``events_refused``: embedded, the store's ``dead_letters`` rows of this origin (not ``expiry``:
      ``expired_calls``); to Kafka, those sent to the dead-letter topic here (the worker may refuse
      published events later: late, duplicates)."""
    return {"units": summary.units, "units_with_events": summary.with_events,
            "units_partly_refused": summary.partly_refused, "skipped": dict(sorted(summary.skipped.items())),
            "unreadable": summary.unreadable, "units_without_event": summary.no_event,
            "events": dict(sorted(summary.events.items())), "events_made": sum(summary.events.values()),
            **target.accounting(summary)}
