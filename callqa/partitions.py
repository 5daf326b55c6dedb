"""Kafka's default partitioning (murmur2, as the Java client, faust and Kafka Streams do), shared by the
faust worker and the embedded runner so both split keyed state the same way."""
from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
