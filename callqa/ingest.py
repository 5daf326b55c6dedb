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
    """Adapter output through the embedded pipeline into the embedded (or server) store."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def send(self, unit: Converted, origin: str) -> None:
        if unit.error:
            self.pipeline.reject(unit.error, unit.raw, origin, unit.position)
        for event in unit.events:
            self.pipeline.feed_event(event, origin, unit.position)

    def idle(self) -> None:
        if self.pipeline.writer.pending:
            self.pipeline.writer.flush()

    def close(self) -> None:
        self.pipeline.writer.flush()


class KafkaTarget:
    """Adapter output to the events topic; unreadable input to the dead-letter topic."""

    def __init__(self, publisher):
        self.publisher = publisher

    def send(self, unit: Converted, origin: str) -> None:
        if unit.error:
            self.publisher.dead_letter(dead_letter(unit.error, unit.raw, origin, unit.position))
        for event in unit.events:
            self.publisher.event(orjson.dumps(event))

    def idle(self) -> None:
        self.publisher.flush()

    close = idle


def ingest(units: Iterable[Converted], target, origin: Path | str) -> IngestSummary:
    summary = IngestSummary()
    try:
        for unit in units:
            summary.add(unit)
            target.send(unit, str(origin))
    finally:
        target.close()
    return summary
