"""Publish serialized canonical events to the events topic, keyed by their contract key."""
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


def producer(bootstrap_servers: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                     "linger.ms": 20, "compression.type": "lz4"})


def publish(lines: Iterable[bytes], bootstrap_servers: str, topic: str, timeout_s: float = 60) -> int:
    """Send every non-blank line; returns how many were sent. Raises KafkaException on failure."""
    prod = producer(bootstrap_servers)
    failures: list = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    sent = 0
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        while True:
            try:
                prod.produce(topic, line, key=event_key(line), on_delivery=on_delivery)
                break
            except BufferError:
                prod.poll(0.1)
        sent += 1
        prod.poll(0)
    if prod.flush(timeout_s) or failures:
        raise KafkaException(failures[0] if failures else f"{len(prod)} events not delivered in {timeout_s}s")
    return sent
