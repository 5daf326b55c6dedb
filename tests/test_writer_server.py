"""The native-protocol writer against a real clickhouse-server (Debian's 18.16, simple tables)."""
import threading
import time

import pytest

from sinks.store import ServerStore, StoreError
from sinks.writer import BatchWriter
from tests.conftest import services

pytestmark = pytest.mark.services

TABLE = "writer_probe"


@pytest.fixture
def store(clickhouse):
    server = clickhouse["server"]
    store = ServerStore(f"clickhouse://default@127.0.0.1:{server.port}/default")
    store.execute(f"DROP TABLE IF EXISTS {TABLE}")
    store.execute(f"CREATE TABLE {TABLE} (id String, n UInt32, at DateTime) "
                  "ENGINE = ReplacingMergeTree ORDER BY id")
    yield store
    store.close()


def rows(start, count):
    return [{"id": f"r{i}", "n": i, "at": f"2024-03-04T09:{i // 60 % 60:02d}:{i % 60:02d}.000Z"}
            for i in range(start, start + count)]


def count(store):
    return store.query(f"SELECT count(), sum(n) FROM {TABLE} FINAL")[1][0]


def test_a_read_only_connection_refuses_ddl_writes_and_settings(store):
    store.insert(TABLE, rows(0, 3))
    store.read_only()
    assert count(store) == (3, 3)
    for statement in (f"DROP TABLE {TABLE}", f"INSERT INTO {TABLE} SELECT * FROM {TABLE}", f"TRUNCATE TABLE {TABLE}",
                      "SELECT 1 SETTINGS readonly = 0"):
        with pytest.raises(StoreError, match="(?i)readonly"):
            store.query(statement)
    assert count(store) == (3, 3)


def test_batches_by_size_and_by_age(store):
    writer = BatchWriter(store, max_rows=100, max_seconds=0.3)
    for row in rows(0, 99):
        writer.submit(TABLE, row)
    assert not writer.due()
    writer.submit(TABLE, rows(99, 1)[0])
    assert writer.due()
    for row in rows(100, 150):
        writer.submit(TABLE, row)
    writer.flush()
    assert count(store) == (250, sum(range(250)))
    assert writer.pending == 0 and writer.written[TABLE] == 250
    writer.submit(TABLE, rows(250, 1)[0])
    assert not writer.due()
    time.sleep(0.35)
    assert writer.due()
    writer.flush()
    assert count(store)[0] == 251


def test_rows_of_one_batch_with_other_columns_are_stored_whole(store):
    """A batch whose rows name different columns (a row from a newer worker among older ones): each row
    keeps every value it carries (the columns of the batch's first row were used for all: the rest lost)."""
    store.insert(TABLE, [{"id": "short", "n": 1}, {"id": "long", "n": 2, "at": "2024-03-04T09:00:05.000Z"},
                         {"id": "short-2", "n": 3}])
    stored = dict(store.query(f"SELECT id, toString(at) FROM {TABLE} FINAL")[1])
    assert set(stored) == {"short", "long", "short-2"} and stored["long"] == "2024-03-04 09:00:05"


def test_rewriting_the_same_rows_is_idempotent(store):
    writer = BatchWriter(store, max_rows=1000, max_seconds=1)
    for _ in range(2):
        for row in rows(0, 300):
            writer.submit(TABLE, row)
        writer.flush()
    assert count(store) == (300, sum(range(300)))


def test_reconnects_after_a_server_restart(store, clickhouse):
    server = clickhouse["server"]
    writer = BatchWriter(store, max_rows=1000, max_seconds=1, retries=30, backoff_s=0.2, max_backoff_s=1.0)
    for row in rows(0, 50):
        writer.submit(TABLE, row)
    writer.flush()
    server.stop()
    for row in rows(50, 50):
        writer.submit(TABLE, row)
    with pytest.raises(StoreError, match="unreachable"):
        BatchWriter(store, 10, 1, retries=0).store.insert(TABLE, rows(0, 1))
    flushed = threading.Thread(target=writer.flush)
    flushed.start()
    time.sleep(1.5)
    assert flushed.is_alive() and writer.pending == 50  # retrying, nothing lost
    clickhouse["server"] = services.start_clickhouse(server.workdir, port=server.port)
    flushed.join(60)
    assert not flushed.is_alive() and writer.pending == 0
    assert count(store) == (100, sum(range(100)))
