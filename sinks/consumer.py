"""Kafka topics → ClickHouse, in Snuba's order: consume, batch, write, then commit. The worker's output
topics' rows (a JSON object, or an array of them, per message) go to their tables as they are.

``KafkaSink`` follows Arroyo's step shape: ``submit`` one message, ``poll`` to write and commit
when a batch is due, ``join`` to write and commit what is left. Offsets are committed only after
the rows they carry are in the store; a crash in between replays them, and the dedup engines
(ReplacingMergeTree keyed by the row's identity) make the replay harmless.
"""
from __future__ import annotations

import logging
import threading
import time

import orjson
from confluent_kafka import Consumer, KafkaException, Message

from callqa import metrics
from callqa.core.dead_letters import dead_letter
from callqa.logs import KAFKA_LOG

from . import tables
from .writer import BatchWriter

log = logging.getLogger(__name__)


class KafkaSink:
    def __init__(self, consumer: Consumer, routes: dict[str, str], writer: BatchWriter):
        self.consumer = consumer
        self.routes = routes
        self.writer = writer
        self._reported: set[tuple[str, str]] = set()  # (topic, partition) of the lag metric set here
        consumer.subscribe(list(routes))

    def submit(self, message: Message) -> None:
        table = self.routes[message.topic()]
        try:
            rows = orjson.loads(message.value())
            rows = [rows] if isinstance(rows, dict) else rows
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("expected a JSON object or an array of objects")
        except ValueError as exc:
            origin = f"{message.topic()}/{message.partition()}"
            rows, table = [dead_letter(f"undecodable row for {table}: {exc}", message.value(), origin,
                                       str(message.offset()))], tables.DEAD_LETTERS
        for row in rows:
            self.writer.submit(table, row)

    def poll(self) -> None:
        if self.writer.due():
            self._write_and_commit()

    def join(self) -> None:
        self._write_and_commit()

    def _write_and_commit(self) -> None:
        if self.writer.pending:
            self.writer.flush()
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():
                    raise
                # the rows are written: uncommitted input only comes again (the tables are idempotent),
                # and the next commit covers it (e.g. "not coordinator" while the broker restarts)
                log.warning("sink commit failed (%s): the next commit covers it", error)

    def lag(self) -> None:
        """Messages behind the end of each assigned partition, as the ``callqa_consumer_lag`` metric (a
        partition not yet read: from its committed offset). The end is the one the last fetch reported
        (asking the broker would wait behind this consumer's own fetch, up to fetch.wait.max.ms per
        partition: 20 s for 40 partitions, every 5 s, with nothing consumed meanwhile). A partition not
        fetched yet, or that Kafka does not answer for, keeps its last value; one moved to another sink
        stops reporting here."""
        try:
            positions = self.consumer.position(self.consumer.assignment())
            unread = [tp for tp in positions if tp.offset < 0]
            starts = {(tp.topic, tp.partition): tp.offset
                      for tp in [*positions, *(self.consumer.committed(unread, timeout=1.0) if unread else [])]
                      if tp.offset >= 0}
        except KafkaException as exc:  # a broker away
            log.debug("consumer lag not measured: %s", exc)
            return
        reported = set()
        for tp in positions:
            labels = (tp.topic, str(tp.partition))
            reported.add(labels)
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException as exc:
                log.debug("consumer lag of %s not measured: %s", labels, exc)
                continue
            if high < 0:  # no fetch answered yet
                continue
            metrics.LAG.labels(*labels).set(max(0, high - starts.get((tp.topic, tp.partition), max(low, 0))))
        for labels in self._reported - reported:
            metrics.LAG.remove(*labels)
        self._reported = reported

    def run(self, stop: threading.Event, poll_timeout: float = 0.2, lag_every_s: float = 5.0) -> None:
        """Loop until ``stop`` is set; then write and commit what is buffered and close."""
        measured = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - measured >= lag_every_s:
                    self.lag()
                    measured = time.monotonic()
                for message in self.consumer.consume(num_messages=1000, timeout=poll_timeout):
                    error = message.error()
                    if error is None:
                        self.submit(message)
                    elif error.fatal():
                        raise KafkaException(error)
                    else:  # e.g. a topic the worker has not created yet; librdkafka retries
                        log.warning("sink consumer: %s", error)
                self.poll()
            self.join()
        finally:
            self.consumer.close()


def consumer_config(bootstrap_servers: str, group_id: str, security: dict | None = None) -> dict:
    """The sink consumer's configuration; ``security``: the TLS and SASL keys (``callqa.kafka_security.librdkafka``)."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
        "session.timeout.ms": 10000,  # a killed sink's partitions move to its replacement within seconds
        "heartbeat.interval.ms": 1000,
        "logger": KAFKA_LOG,  # librdkafka's lines through Python logging: repeats held back (callqa.logs)
        **(security or {}),
    }
