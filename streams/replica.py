"""A worker's own copy of a small compacted topic (agents' profiles), read straight from Kafka.

faust 0.15 replicates a GlobalTable's partitions to the workers that do not write them as standbys,
and with two workers a standby was seen to miss every update of a partition for a whole run (all the
calls of that partition's agents lost their team). ``ChangelogReplica.catch_up`` reads whatever was
written since it last read, up to each partition's end, with a plain consumer: a profile is visible to
every worker once it is in Kafka.
"""
from __future__ import annotations

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
        self._consumer: Consumer | None = None

    def catch_up(self, timeout_s: float = 5.0) -> list[tuple[bytes, bytes | None]]:
        """The records written since the last call (tombstones as None values), in partition order.
        Blocking, bounded by ``timeout_s``; on a Kafka error, what was read so far."""
        if self._consumer is None:
            self._consumer = Consumer(self.config)
        consumer, out = self._consumer, []
        try:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s)[1]
                    for p in range(self.partitions)}
            behind = {p: end for p, end in ends.items() if self.next.get(p, 0) < end}
            if not behind:
                return out
            consumer.assign([TopicPartition(self.topic, p, self.next.get(p, OFFSET_BEGINNING)) for p in behind])
            for _ in range(int(timeout_s / 0.1)):
                if not behind:
                    break
                message = consumer.poll(0.1)
                if message is None or message.error():
                    continue
                p = message.partition()
                out.append((message.key(), message.value()))
                self.next[p] = message.offset() + 1
                if self.next[p] >= behind.get(p, 0):
                    behind.pop(p, None)
            return out
        except KafkaException:
            return out
        finally:
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
