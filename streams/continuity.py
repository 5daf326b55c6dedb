"""Input without holes: each stage partition applies its input offsets in order, none skipped.

faust 0.15 sometimes drops records it fetched (around a rebalance, e.g. when a worker takes over a
killed one's partitions) while the fetch position moves on. It takes the jump for a gap in the log
(transaction markers, compaction), marks the missing offsets acked and commits past them: the
input is never processed and nothing is logged. A stage partition knows the last input offset it
applied (``meta["through"]``, saved with its state), so its next input must start right after it.
``Continuity.cut`` keeps the messages up to the first hole; the worker asks the log itself
(``LogProbe``) once whether the missing offsets exist: if they do, it re-reads from the hole (the
commit cannot pass it: nothing after it was applied); offsets truly absent (transaction markers,
compaction, retention) are skipped, and nothing else is.

>>> c = Continuity()
>>> c.cut(9, [8, 9, 10, 11])  # repeats are the core's to drop; 10 and 11 continue
(4, None)
>>> c.cut(9, [10, 13, 14])  # 11 and 12 were never delivered
(1, 11)
>>> c.absent[11] = 13  # the log says 11 and 12 do not exist
>>> c.cut(9, [10, 13, 14])
(3, None)
"""
from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from callqa.logs import KAFKA_LOG


class Continuity:
    """One stage partition's check that its input has no holes."""

    def __init__(self):
        self.absent: dict[int, int] = {}  # first absent offset -> the next offset present in the log
        self.present: set[int] = set()  # holes the log holds (faust dropped them): re-read

    def cut(self, through: int, offsets: list[int]) -> tuple[int, int | None]:
        """(how many of ``offsets`` (in order) continue input applied through ``through``, the first
        missing offset or None). A stage partition with nothing applied yet (-1) starts at offset 0."""
        expected = through + 1
        for i, offset in enumerate(offsets):
            expected = self.absent.get(expected, expected)
            if offset < expected:
                continue
            if offset > expected:
                return i, expected
            expected += 1
        return len(offsets), None


class LogProbe:
    """Asks Kafka for the first offset present in a partition at or after a given one (a plain
    consumer with no group commits: it only reads). Safe to call from several threads."""

    def __init__(self, bootstrap_servers: str, group: str, security: dict | None = None):
        self.config = {"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False,
                       "auto.offset.reset": "earliest", "enable.partition.eof": True, "logger": KAFKA_LOG,
                       **(security or {})}
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def first_offset(self, topic: str, partition: int, offset: int, timeout_s: float = 10.0) -> int | None:
        """The offset of the first record at or after ``offset`` (the log start when ``offset`` is
        below it); None when Kafka does not answer in time (the caller re-reads and asks again later).
        Blocking: run it in a thread."""
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self.config)
            try:
                low, _ = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                if offset < low:
                    return low
                self._consumer.assign([TopicPartition(topic, partition, offset)])
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    message = self._consumer.poll(0.5)
                    if message is None or message.topic() != topic or message.partition() != partition:
                        continue
                    return None if message.error() else message.offset()
                return None
            except KafkaException:
                return None
            finally:
                self._consumer.unassign()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
