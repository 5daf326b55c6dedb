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
    out = []
    try:
        for tp in partitions:
            low, high = reader.get_watermark_offsets(tp, timeout=timeout_s)
            start = committed.get((tp.topic, tp.partition), -1)
            start = low if start < 0 else start
            oldest = None
            if high > start:
                reader.assign([TopicPartition(tp.topic, tp.partition, start)])
                message = reader.poll(timeout_s / 2)
                if message is not None and message.error() is None:
                    oldest = max(0.0, time.time() - message.timestamp()[1] / 1000)
            out.append(Backlog(tp.topic, tp.partition, max(0, high - start), oldest))
    finally:
        reader.close()
    return out
