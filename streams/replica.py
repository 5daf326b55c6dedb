"""A worker's own copy of a small compacted topic (agents' profiles), read straight from Kafka.

faust 0.15 replicates a GlobalTable's partitions to the workers that do not write them as standbys,
and with two workers a standby was seen to miss every update of a partition for a whole run (all the
calls of that partition's agents lost their team). ``ChangelogReplica.catch_up`` reads whatever was
written since it last read, up to each partition's end, with a plain consumer: a profile is visible to
every worker once it is in Kafka.
"""
from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from callqa.logs import KAFKA_LOG


class ChangelogReplica:
    """Reads a topic's records (key, value) from where it stopped, until every partition's end."""

    def __init__(self, bootstrap_servers: str, topic: str, group: str, partitions: int, security: dict | None = None):
        self.topic, self.partitions = topic, partitions
        self.config = {"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False,
                       "auto.offset.reset": "earliest", "enable.partition.eof": False, "logger": KAFKA_LOG,
                       **(security or {})}
        self.next: dict[int, int] = {}  # partition -> next offset to read
        self.stalled = False  # the last catch_up failed, or read nothing of what it was behind
        self._consumer: Consumer | None = None

    def catch_up(self, timeout_s: float = 2.0) -> list[tuple[bytes, bytes | None]]:
        """The records written since the last call (tombstones as None values), in partition order.
        Blocking, ``timeout_s`` at most in all; on a Kafka error, with the broker away or reading nothing
        where records were due, what was read so far, and ``stalled`` is set until a catch-up gets on."""
        if self._consumer is None:
            self._consumer = Consumer(self.config)
        consumer, out, deadline = self._consumer, [], time.monotonic() + timeout_s
        self.stalled = True
        try:
            ends = {}
            for p in range(self.partitions):
                left = deadline - time.monotonic()
                if left <= 0:
                    return out
                ends[p] = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=left)[1]
            behind = {p: end for p, end in ends.items() if self.next.get(p, 0) < end}
            if behind:
                consumer.assign([TopicPartition(self.topic, p, self.next.get(p, OFFSET_BEGINNING)) for p in behind])
            while behind and time.monotonic() < deadline:
                message = consumer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
                if message is None or message.error():
                    continue
                p = message.partition()
                out.append((message.key(), message.value()))
                self.next[p] = message.offset() + 1
                if self.next[p] >= behind.get(p, 0):
                    behind.pop(p, None)
            self.stalled = bool(behind) and not out
            return out
        except KafkaException:
            return out
        finally:
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
