"""What an adapter yields for each unit of input (a line, a row, a record), and the run summary."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas import format_ms


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


def implausible(events: list[dict]) -> str | None:
    """Why a record's events cannot all be kept (one of its times is out of the validator's range), or
    None: a record is taken whole or not at all, so one broken field never leaves half a call."""
    from schemas import plausible_ms, time_ms

    for event in events:
        if not plausible_ms(time_ms(event["event_time"])):
            return f"{event['event_type']} at {event['event_time']} is implausible (before 2000, or in the future): record refused whole"
    return None
