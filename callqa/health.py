"""How far the ClickHouse sink is behind its topics, from outside it (``callqa check``).

For each partition the sink reads: its lag (messages after the sink group's committed offset) and the
age of the oldest message not yet stored (its Kafka timestamp). A sink that stopped, or that cannot
write, leaves that age growing; a running sink keeps it within its batch interval.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

from .config import Config
from .kafka_security import librdkafka
from .topics import admin_client, sink_group, sink_routes


@dataclass
class Backlog:
    topic: str
    partition: int
    lag: int
    oldest_s: float | None  # age of the oldest message not yet stored; None when there is none


def sink_backlog(config: Config, timeout_s: float = 10) -> list[Backlog]:
    """The backlog of every partition of the sink's topics; raises KafkaException when Kafka does not answer."""
    admin = admin_client(config.kafka_bootstrap_servers, librdkafka(config))
    listed = admin.list_topics(timeout=timeout_s).topics
    partitions = [TopicPartition(topic, p) for topic in sink_routes(config) if topic in listed for p in listed[topic].partitions]
    group = sink_group(config)
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in admin.list_consumer_group_offsets(request)[group].result(timeout_s).topic_partitions}
    reader = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": f"{group}-check",
                       "enable.auto.commit": False, "isolation.level": "read_committed", "log_level": 2,
                       **librdkafka(config)})
    now = time.time()  # ages as of the committed offsets read above, not of when each message is read
    out, behind = [], {}
    try:
        for tp in partitions:
            low, high = reader.get_watermark_offsets(tp, timeout=timeout_s)
            start = committed.get((tp.topic, tp.partition), -1)
            start = low if start < 0 else start
            out.append(Backlog(tp.topic, tp.partition, max(0, high - start), None))
            if high > start:
                behind[(tp.topic, tp.partition)] = (start, len(out) - 1)
        if behind:  # the first message not stored of every partition behind, read at once
            reader.assign([TopicPartition(topic, partition, start) for (topic, partition), (start, _) in behind.items()])
            deadline = time.monotonic() + timeout_s / 2
            while behind and time.monotonic() < deadline:
                for message in reader.consume(len(behind), timeout=0.2):
                    where = (message.topic(), message.partition())
                    if message.error() is None and where in behind:
                        _, i = behind.pop(where)
                        out[i].oldest_s = max(0.0, now - message.timestamp()[1] / 1000)
    finally:
        reader.close()
    return out
