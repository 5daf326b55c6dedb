"""Publish canonical events (keyed by their contract key) and dead letters to Kafka.

Nothing over the limit is sent: a line over ``CALLQA_MAX_EVENT_BYTES`` is never read whole
(``sources.lines``) and goes to the dead-letter topic with its first 4 KiB and its size; an event Kafka
itself refuses as too large (``MSG_SIZE_TOO_LARGE``: the producer's ``message.max.bytes``, or the topic's
``max.message.bytes`` on the broker) goes there too, the same way, instead of failing the run.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

import schemas
from schemas import key_field
from sources.lines import Oversized

from .core.dead_letters import dead_letter
from .metrics import reason_kind


def event_key(line: bytes) -> bytes | None:
    """The Kafka key of a serialized event (call id, agent id, ...); None if it cannot be read."""
    return _routing(line)[0]


def _routing(line: bytes) -> tuple[bytes | None, bool]:
    """The Kafka key of a serialized event, and whether it goes to every partition (``schemas.BROADCAST``)."""
    try:
        event = orjson.loads(line)
        return str(event[key_field(event["event_type"])]).encode(), event["event_type"] in schemas.BROADCAST
    except (ValueError, KeyError, TypeError):
        return None, False  # the worker validates it and dead-letters it


class Publisher:
    """A producer that partitions like the Java client (murmur2), as faust and Kafka Streams do.

    ``sent``: events Kafka took; ``refused``: events it refused as too large (each a dead letter when
    there is a dead-letter topic, else the run fails); ``dead_letters``: dead letters sent, by kind of
    reason (``callqa.metrics.reason_kind``)."""

    def __init__(self, bootstrap_servers: str, events_topic: str, dead_letters_topic: str | None = None,
                 security: dict | None = None):
        """``security``: the TLS and SASL keys of the producer (``kafka_security.librdkafka``)."""
        self.events_topic = events_topic
        self.dead_letters_topic = dead_letters_topic
        self.sent = 0
        self.refused = 0
        self.dead_letters: Counter = Counter()
        self._failures: list = []
        self._refusals: list[dict] = []  # dead letters of events refused on delivery, to send
        self._events_partitions: int | None = None
        # an event within CALLQA_MAX_EVENT_BYTES, with its key (one of its fields), is not refused by the producer
        max_bytes = max(1_000_000, 2 * schemas.MAX_EVENT_BYTES + 65_536)
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                                   "linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random",
                                   "message.max.bytes": max_bytes, **(security or {})})

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._failures.append(err)

    def _on_event_delivery(self, origin: str, position: str, err, msg) -> None:
        if err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE and self.dead_letters_topic:
            self.sent -= 1
            self.refused += 1
            self._refusals.append(_refused(msg.value(), origin, position))
        elif err is not None:
            self._failures.append(err)

    def _produce(self, topic: str, value: bytes, key: bytes | None, on_delivery=None, partition: int = -1) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key=key, on_delivery=on_delivery or self._on_delivery,
                                       partition=partition)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _partitions(self) -> int:
        if self._events_partitions is None:
            topic = self._producer.list_topics(self.events_topic, timeout=30).topics[self.events_topic]
            if topic.error is not None:
                raise KafkaException(topic.error)
            self._events_partitions = len(topic.partitions)
        return self._events_partitions

    def event(self, line: bytes, origin: str | None = None, position: str | None = None) -> None:
        """Publish one serialized event (reference data, ``schemas.BROADCAST``, to every partition: it
        counts once); with ``origin`` and ``position`` (where it was read) and a dead-letter topic, one
        Kafka refuses as too large becomes a dead letter."""
        key, everywhere = _routing(line)
        if everywhere:
            for p in range(1, self._partitions()):  # partition 0 below, with the event's own delivery report
                self._produce(self.events_topic, line, key, partition=p)
        if origin is None or not self.dead_letters_topic:
            self._produce(self.events_topic, line, key, partition=0 if everywhere else -1)
            self.sent += 1
            return
        try:
            self._produce(self.events_topic, line, key, partial(self._on_event_delivery, origin, position),
                          partition=0 if everywhere else -1)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            self.refused += 1
            self.dead_letter(_refused(line, origin, position))
            return
        self.sent += 1

    def dead_letter(self, row: dict) -> None:
        self._produce(self.dead_letters_topic, orjson.dumps(row), None)
        self.dead_letters[reason_kind(row["reason"])] += 1

    def flush(self, timeout_s: float = 60) -> None:
        """Wait for every message to be acknowledged (the dead letters of refused events sent too);
        raises KafkaException otherwise."""
        left = self._producer.flush(timeout_s)
        while self._refusals and not left:
            refusals, self._refusals = self._refusals, []
            for row in refusals:
                self.dead_letter(row)
            left = self._producer.flush(timeout_s)
        if left or self._failures:
            raise KafkaException(self._failures[0] if self._failures else f"{left} messages not delivered in {timeout_s}s")


def _refused(value: bytes, origin: str, position: str) -> dict:
    """The dead letter of an event Kafka refused as too large: its first 4 KiB, the reason with its size."""
    return dead_letter(schemas.too_large(len(value), schemas.PAYLOAD_PREFIX_BYTES, "Kafka (MSG_SIZE_TOO_LARGE)"),
                       schemas.payload_prefix(value), origin, position)


@dataclass
class Replayed:
    """What ``publish_lines`` read: ``lines`` = ``blank`` + events published + events refused by Kafka +
    lines over the limit (``oversized``); the two last are dead letters (``Publisher.dead_letters``)."""

    lines: int = 0
    blank: int = 0
    oversized: int = 0


def publish_lines(lines: Iterable[bytes | Oversized], publisher: Publisher, origin: str) -> Replayed:
    """Publish JSON Lines (``sources.lines.bounded_lines`` of a file) as events, position = line number:
    blank lines are skipped, a line over the limit is a dead letter. Flushes at the end."""
    counts = Replayed()
    for number, line in enumerate(lines, 1):
        counts.lines = number
        if isinstance(line, Oversized):
            counts.oversized += 1
            publisher.dead_letter(dead_letter(line.reason, line.payload(), origin, str(number)))
            continue
        line = line.rstrip(b"\r\n")
        if not line.strip():
            counts.blank += 1
            continue
        publisher.event(line, origin, str(number))
    publisher.flush()
    return counts


def publish(lines: Iterable[bytes], bootstrap_servers: str, topic: str, timeout_s: float = 60,
            security: dict | None = None) -> int:
    """Send every non-blank line as an event; returns how many were sent."""
    publisher = Publisher(bootstrap_servers, topic, security=security)
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line.strip():
            publisher.event(line)
    publisher.flush(timeout_s)
    return publisher.sent
