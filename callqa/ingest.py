"""Run an adapter over a file and send what it makes to Kafka or through the embedded pipeline."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from sources.base import Converted, IngestSummary

from .core.dead_letters import dead_letter


def follow(handle, on_idle: Callable[[], None], stop: Callable[[], bool], interval_s: float = 0.5) -> Iterator[str]:
    """The lines of a growing file, as ``tail -f`` shows them, until ``stop()`` is true."""
    partial = ""
    while not stop():
        line = handle.readline()
        if not line:
            on_idle()
            time.sleep(interval_s)
            continue
        partial += line
        if partial.endswith("\n"):
            yield partial
            partial = ""


class EmbeddedTarget:
    """Adapter output through the embedded pipeline into the embedded (or server) store; ``sent``:
    events handed over so far."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.sent = 0

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

    def reject(self, unit: Converted, origin: str) -> None:
        self.publisher.dead_letter(dead_letter(unit.error, unit.raw, origin, unit.position))

    def event(self, event: dict, origin: str, position: str) -> None:
        self.sent += 1
        self.publisher.event(orjson.dumps(event))

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
    raw text through ``scrub``: the caller hasher's, so no number is kept in clear)."""
    summary, held = IngestSummary(), []
    try:
        for unit in units:
            summary.add(unit)
            if unit.error:
                unit.raw = scrub(unit.raw)
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
