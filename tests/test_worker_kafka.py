"""End to end on real servers: confluent-kafka producer → Kafka → faust worker → ClickHouse (chdb store).

The worker runs as `callqa run` in its own process, exactly as deployed; its store is the
embedded engine (the same DDL the server gets), read here after the worker stops.
"""
import signal
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from callqa.publish import event_key
from tests.conftest import FIXTURES, ROOT, callqa_env, run_callqa, wait_for
from tests.test_cli_embedded import store_snapshot

pytestmark = pytest.mark.services

DAY = FIXTURES / "day.jsonl"


def produce(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap})
    lines = DAY.read_bytes().splitlines()
    for line in lines:
        producer.produce(topic, line, key=event_key(line))
    assert producer.flush(30) == 0
    return len(lines)


def lag(bootstrap, group, topics, transactional=False):
    """Messages not yet committed by ``group``; in transactional topics the trailing commit marker
    of each partition occupies an offset that no consumer commits past, so it counts as none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        total = 0
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            for tp in committed:
                high = consumer.get_watermark_offsets(tp, timeout=10)[1]
                done = max(tp.offset, 0)
                total += max(0, high - done - (1 if transactional and high > done else 0))
        return total
    finally:
        consumer.close()


class Worker:
    def __init__(self, env, log):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "callqa.cli", "run"], env=env, cwd=ROOT,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) is not None


def run_until_caught_up(env, tmp_path, bootstrap):
    tmp_path.mkdir(exist_ok=True)
    worker = Worker(env, tmp_path / "worker.log")
    try:
        produce(bootstrap, env["CALLQA_TOPIC_EVENTS"])
        events = [env["CALLQA_TOPIC_EVENTS"]]
        wait_for(lambda: lag(bootstrap, env["CALLQA_APP_ID"], events) == 0, 120, what="worker caught up")
        outputs = [env["CALLQA_TOPIC_CALL_RECORDS"], env["CALLQA_TOPIC_KPIS"], env["CALLQA_TOPIC_DEAD_LETTERS"]]
        wait_for(lambda: lag(bootstrap, env["CALLQA_APP_ID"] + "-sink", outputs, transactional=True) == 0, 60,
                 what="sink caught up")
    finally:
        worker.stop()
    return store_snapshot(tmp_path / "data")


def test_kafka_faust_clickhouse_end_to_end(kafka, tmp_path):
    env = callqa_env(tmp_path / "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka)
    first = run_until_caught_up(env, tmp_path / "kafka", kafka)

    # the same input on the embedded path gives identical rows
    embedded_env = callqa_env(tmp_path / "embedded")
    assert run_callqa(["replay", str(DAY)], embedded_env).returncode == 0
    embedded = store_snapshot(tmp_path / "embedded" / "data")
    assert first["kpi"] == embedded["kpi"] and first["calls"] == embedded["calls"]
    assert len(first["calls"]) == 13 and len(first["kpi"]) == 8

    # the poison messages are in the dead letters with reason and raw payload; everything else arrived
    raw = DAY.read_text().splitlines()
    assert sorted(r[3] for r in first["dead"]) == sorted([raw[5], raw[9]])
    assert all(r[0].startswith(env["CALLQA_TOPIC_EVENTS"] + "/") and r[2] for r in first["dead"])

    # the same events again, through a restarted worker: nothing changes
    second = run_until_caught_up(env, tmp_path / "kafka", kafka)
    assert second["kpi"] == first["kpi"] and second["calls"] == first["calls"]
    assert len(second["dead"]) == 4  # the second copies sit at new offsets: nothing is lost
