"""A row the store refuses goes to the dead letters with the store's reason; it never blocks its batch.
(On the embedded ClickHouse engine; the server's reconnects are in test_writer_server.py.)"""
from __future__ import annotations

import json

import pytest

from sinks.store import StoreError
from sinks.writer import BatchWriter


@pytest.fixture
def store(embedded_store):
    embedded_store.execute("CREATE TABLE probe (id String, n UInt32) ENGINE = ReplacingMergeTree ORDER BY id")
    return embedded_store


def test_refused_rows_are_dead_letters_and_the_rest_is_written(store):
    writer = BatchWriter(store, max_rows=1000, max_seconds=60)
    good = [{"id": f"r{i}", "n": i} for i in range(40)]
    bad = [{"id": "bad-1", "n": "not a number"}, {"id": "bad-2", "n": -5}]
    for row in good[:17] + bad[:1] + good[17:30] + bad[1:] + good[30:]:
        writer.submit("probe", row)
    writer.flush()
    assert store.query("SELECT count(), sum(n) FROM probe FINAL")[1] == [(40, sum(range(40)))]
    dead = store.query("SELECT origin, reason, payload FROM dead_letters FINAL ORDER BY payload")[1]
    assert [json.loads(payload)["id"] for _, _, payload in dead] == ["bad-1", "bad-2"]
    assert all(origin == "store:probe" and reason for origin, reason, _ in dead)
    assert (writer.written["probe"], writer.written["dead_letters"], writer.refused) == (40, 2, 2)


def test_a_batch_is_due_at_its_size_in_text_and_written_in_inserts_of_about_that_size(store):
    """Rows that hold much text (dead letters keep payloads of up to CALLQA_MAX_EVENT_BYTES) make a batch due
    before its row count, and go in inserts of about ``max_bytes``: memory stays bounded."""
    writer = BatchWriter(store, max_rows=1000, max_seconds=60, max_bytes=10_000)
    inserts = []
    insert = store.insert
    store.insert = lambda table, rows: (inserts.append(len(rows)), insert(table, rows))
    rows = [{"id": f"r{i:02}" + "x" * 3000, "n": i} for i in range(10)]
    for row in rows[:3]:
        writer.submit("probe", row)
    assert not writer.due()
    writer.submit("probe", rows[3])
    assert writer.due()
    for row in rows[4:]:
        writer.submit("probe", row)
    writer.flush()
    assert inserts == [4, 4, 2] and store.query("SELECT count() FROM probe FINAL")[1] == [(10,)]


def test_a_lone_bad_row_and_a_row_with_an_unknown_field_are_dead_letters_not_a_stopped_sink(store):
    for bad in ({"id": "lone", "n": "not a number"}, {"id": "extra", "n": 1, "no_such_column": 2}):
        writer = BatchWriter(store, max_rows=1000, max_seconds=60)
        writer.submit("probe", bad)
        writer.flush()  # no exception: the sink goes on
        assert (writer.refused, writer.written["probe"]) == (1, 0)
    dead = store.query("SELECT origin, payload FROM dead_letters FINAL ORDER BY payload")[1]
    assert [json.loads(payload)["id"] for _, payload in dead] == ["extra", "lone"]
    assert store.query("SELECT count() FROM probe")[1] == [(0,)]  # the unknown field was not dropped silently


def test_a_batch_refused_as_a_whole_is_not_dead_lettered(store):
    writer = BatchWriter(store, max_rows=1000, max_seconds=60)
    for i in range(5):
        writer.submit("no_such_table", {"id": f"r{i}"})
    with pytest.raises(StoreError):
        writer.flush()
    assert writer.pending == 5  # kept for the next try
    assert store.query("SELECT count() FROM dead_letters")[1] == [(0,)]


def test_a_sink_that_cannot_go_on_stops_its_process_and_says_why():
    """`callqa run` supervises its in-process sink: when the sink's loop ends with an error, the
    reason is logged once and the process is told to stop (SIGTERM: the worker shuts down, exit 3)."""
    import subprocess
    import sys

    code = """
import signal, sys, threading, time
from callqa.cli.operate import _supervised
signal.signal(signal.SIGTERM, lambda *_: (print("stopping"), sys.exit(0)))
def run(stop):
    raise RuntimeError("store refused the batch")
failed = []
threading.Thread(target=_supervised, args=(run, threading.Event(), failed)).start()
time.sleep(5)
print("still running")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "stopping"
    assert "the ClickHouse sink stopped (RuntimeError: store refused the batch)" in done.stderr
    assert done.stderr.count("sink stopped") == 1


def test_the_metrics_endpoint_reports_what_the_writer_stored(store):
    """Scraped over HTTP as Prometheus does: rows per table, events by type, dead letters by kind of
    reason, refused rows, the last write and the store being up."""
    import socket
    import urllib.request

    from prometheus_client import REGISTRY

    from callqa import metrics
    from callqa.core.dead_letters import dead_letter, raw_event

    value = lambda name, **labels: REGISTRY.get_sample_value(name, labels) or 0.0
    before = {"rows": value("callqa_rows_written_total", table="probe"), "refused": value("callqa_rows_refused_total", table="probe"),
              "offered": value("callqa_events_total", type="call.offered"),
              "late": value("callqa_dead_letters_total", reason="late event")}
    writer = BatchWriter(store, max_rows=1000, max_seconds=60)
    for i in range(3):
        event = {"event_id": f"m{i}", "event_type": "call.offered", "site_id": "S", "source": "t",
                 "event_time": "2024-03-04T09:00:00.000Z", "call_id": f"c{i}"}
        writer.submit("raw_events", raw_event(event, "{}"))
    writer.submit("dead_letters", dead_letter("late event: 2024-03-04T08:00:00.000Z is more than ...", "{}", "t", "1"))
    for i in range(5):
        writer.submit("probe", {"id": f"p{i}", "n": i})
    writer.submit("probe", {"id": "bad", "n": "x"})
    writer.flush()
    assert value("callqa_rows_written_total", table="probe") - before["rows"] == 5
    assert value("callqa_rows_refused_total", table="probe") - before["refused"] == 1
    assert value("callqa_events_total", type="call.offered") - before["offered"] == 3
    assert value("callqa_dead_letters_total", reason="late event") - before["late"] == 1
    assert value("callqa_store_up") == 1 and value("callqa_last_write_timestamp_seconds") > 1.7e9
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics.serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    line = next(l for l in body.splitlines() if l.startswith('callqa_rows_written_total{table="probe"}'))
    assert float(line.split()[-1]) == value("callqa_rows_written_total", table="probe")
    for name in ("callqa_insert_seconds_bucket", "callqa_batch_rows_bucket", "callqa_consumer_lag",
                 "callqa_dead_letters_total", "callqa_last_write_timestamp_seconds"):
        assert name in body


def test_a_refusal_not_known_to_be_about_rows_dead_letters_nothing():
    """UNKNOWN_STATUS_OF_INSERT (319), a Keeper error (999): the store's trouble, not the rows'. The writer
    keeps the rows and raises (the sink stops; its input is read again), it never moves them to the dead
    letters."""
    from sinks.store import StatementRefused, _refusal

    class Flaky:
        def __init__(self):
            self.inserts = 0

        def insert(self, table, rows):
            self.inserts += 1
            raise _refusal("ClickHouse server: Code: 319. Unknown status, client must retry (UNKNOWN_STATUS_OF_INSERT)")

    store = Flaky()
    writer = BatchWriter(store, max_rows=1000, max_seconds=60)
    for i in range(10):
        writer.submit("call_records", {"id": f"r{i}"})
    with pytest.raises(StatementRefused):
        writer.flush()
    assert (writer.pending, writer.refused, store.inserts) == (10, 0, 1)
