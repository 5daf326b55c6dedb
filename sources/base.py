"""What an adapter yields for each unit of input (a line, a row, a record), and the run summary."""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field

from schemas import format_ms

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


@dataclass
class IngestSummary:
    units: int = 0
    events: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def add(self, unit: Converted) -> None:
        self.units += 1
        for event in unit.events:
            self.events[event["event_type"]] += 1
        if unit.skipped:
            self.skipped[unit.skipped] += 1
        if unit.error:
            self.errors.append(f"{unit.position}: {unit.error}")


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
