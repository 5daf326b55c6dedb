"""Publish canonical events (keyed by their contract key) and dead letters to Kafka."""
from __future__ import annotations

from collections.abc import Iterable

import orjson
from confluent_kafka import KafkaException, Producer

from schemas import key_field


def event_key(line: bytes) -> bytes | None:
    """The Kafka key of a serialized event (call id, agent id, ...); None if it cannot be read."""
    try:
        event = orjson.loads(line)
        return str(event[key_field(event["event_type"])]).encode()
    except (ValueError, KeyError, TypeError):
        return None  # the worker validates it and dead-letters it


class Publisher:
    """A producer that partitions like the Java client (murmur2), as faust and Kafka Streams do."""

    def __init__(self, bootstrap_servers: str, events_topic: str, dead_letters_topic: str | None = None,
                 security: dict | None = None):
        """``security``: the TLS and SASL keys of the producer (``kafka_security.librdkafka``)."""
        self.events_topic = events_topic
        self.dead_letters_topic = dead_letters_topic
        self.sent = 0
        self._failures: list = []
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                                   "linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random",
                                   **(security or {})})

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._failures.append(err)

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def event(self, line: bytes) -> None:
        self._produce(self.events_topic, line, event_key(line))
        self.sent += 1

    def dead_letter(self, row: dict) -> None:
        self._produce(self.dead_letters_topic, orjson.dumps(row), None)

    def flush(self, timeout_s: float = 60) -> None:
        """Wait for every message to be acknowledged; raises KafkaException otherwise."""
        left = self._producer.flush(timeout_s)
        if left or self._failures:
            raise KafkaException(self._failures[0] if self._failures else f"{left} messages not delivered in {timeout_s}s")


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
