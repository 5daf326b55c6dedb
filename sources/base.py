"""What an adapter yields for each unit of input (a line, a row, a record), and the run summary.

An adapter reads its input (``lines``: the file's text in pieces — its lines, or chunks of it) through
``sources.lines``: a line or record over ``CALLQA_MAX_EVENT_BYTES`` is never held whole; it is one unit
that is a dead letter (``too_large``).
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas import format_ms

from .lines import Oversized, bounded_lines

# A CSV field over the csv module's default limit (131,072 characters) would stop the reader with an
# exception: it is read, and the row refused for what it holds, with its line in the dead letters.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


@dataclass
class Converted:
    """The canonical events made from one input unit; or why it was skipped; or why it failed."""

    position: str  # "file:line" (or "file:record N")
    raw: str
    events: list[dict] = field(default_factory=list)
    skipped: str | None = None  # a verb the canonical model has no event for
    error: str | None = None
    size: int | None = None  # a unit over CALLQA_MAX_EVENT_BYTES: its size in bytes (``raw``: its start only)


def too_large(position: str, line: Oversized) -> Converted:
    """The unit of a line (or record) over the limit: a dead letter with its start and the reason (its size).
    ``raw`` keeps a margin past the payload's 4 KiB: it is cut once scrubbed (``callqa.ingest``)."""
    return Converted(position, line.prefix, error=line.reason, size=line.size)


class BoundedLines:
    """An adapter's input as lines for ``csv.reader`` (universal newlines, as a file opened with
    ``newline=""`` reads): a line over the limit is set aside (``aside``: its unit) and an empty line is
    read in its place."""

    def __init__(self, pieces: Iterable[str], name: str):
        self._lines = bounded_lines(pieces, universal=True)
        self.name = name
        self.number = 0  # lines read
        self._aside: list[Converted] = []

    def __iter__(self) -> "BoundedLines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        if isinstance(line, Oversized):
            self._aside.append(too_large(f"{self.name}:{self.number}", line))
            return "\n"
        return line

    def aside(self) -> list[Converted]:
        """The units of the lines over the limit read since last asked."""
        aside, self._aside = self._aside, []
        return aside


ERRORS_LISTED = 100  # the first reasons kept for the summary (every unreadable unit is counted)


@dataclass
class IngestSummary:
    """What an adapter made of its input, unit by unit. Each unit is exactly one of: with events
    (``with_events``; of them ``partly_refused`` also left a dead letter — a contact record whose survey
    could not be read), skipped (by verb), unreadable (refused whole: a dead letter) or with nothing
    (``no_event``). ``dead_letters``: the dead letters made at the edge by kind of reason (filled by
    ``callqa.ingest.ingest``)."""

    units: int = 0
    events: Counter = field(default_factory=Counter)  # made, by type
    skipped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # the first ERRORS_LISTED: "position: reason"
    unreadable: int = 0
    with_events: int = 0
    partly_refused: int = 0
    no_event: int = 0
    dead_letters: Counter = field(default_factory=Counter)

    def add(self, unit: Converted) -> None:
        self.units += 1
        for event in unit.events:
            self.events[event["event_type"]] += 1
        if unit.events:
            self.with_events += 1
            self.partly_refused += bool(unit.error)
        elif unit.error:
            self.unreadable += 1
        elif unit.skipped:
            self.skipped[unit.skipped] += 1
        else:
            self.no_event += 1
        if unit.error and len(self.errors) < ERRORS_LISTED:
            self.errors.append(f"{unit.position}: {unit.error}")

    @property
    def refused(self) -> int:
        """Units that left a dead letter (unreadable, or partly refused)."""
        return self.unreadable + self.partly_refused


def envelope(event_id: str, event_type: str, time_ms: int, site_id: str, source: str, **fields) -> dict:
    """A canonical event (fields that are None are left out)."""
    return {"event_id": event_id, "event_type": event_type, "schema_version": 1, "event_time": format_ms(time_ms),
            "site_id": site_id, "source": source, **{k: v for k, v in fields.items() if v is not None}}


def invalid(events: list[dict]) -> str | None:
    """Why a record's events cannot all be kept (one breaks the event contract: a time out of the
    validator's range, an id with '|' or too long, a value of the wrong type), or None: a record is taken
    whole or not at all, so one broken field never leaves half a call, and is one dead letter."""
    from schemas import InvalidEvent, validate_dict

    for event in events:
        try:
            validate_dict(event)
        except InvalidEvent as exc:
            return f"{exc}: record refused whole"
    return None
