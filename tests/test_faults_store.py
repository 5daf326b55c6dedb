"""A ClickHouse server outage under the sink's writer: Debian's clickhouse-server (18.16, a simple table:
the full DDL needs a newer server) stopped while a ``BatchWriter`` with the sink's retry settings writes
batch after batch, then started again on the same data. The writer holds the batch it has and retries
until the server answers; after, every row is stored once — none lost, none doubled, none changed.

``store_outage`` is the fault with its figures (``bench/faults.py`` runs it for minutes); the test runs a
short version. (``tests/test_writer_server.py`` checks the reconnect itself: a pending batch kept while
the server is away.)
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from scripts.services import Server
from sinks.store import ServerStore
from sinks.writer import BatchWriter
from tests.conftest import wait_for
from tests.test_writer_server import rows

pytestmark = pytest.mark.services

TABLE = "outage_probe"


@dataclass
class StoreOutage:
    """What a server outage left of ``rows`` written: ``lost`` (ids not stored), ``doubled`` (rows a FINAL
    query sees more than once), ``changed`` (stored with another value), ``copies`` (unmerged duplicates
    a query without FINAL sees: count() − count() FINAL; the engine merges them away), ``recover_s`` (from
    the server answering again until the writer's held batch was stored) and the writer's error, if any."""
    rows: int
    down_s: float
    lost: int
    doubled: int
    changed: int
    copies: int
    recover_s: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (self.lost, self.doubled, self.changed) == (0, 0, 0) and self.recover_s is not None and not self.error


def store_outage(server: Server, down_s: float, total: int = 3000, batch: int = 100, pause_s: float = 0.05) -> StoreOutage:
    """Write ``total`` rows in batches of ``batch`` (one every ``pause_s``) to a ReplacingMergeTree table on
    ``server`` through a BatchWriter with the sink's settings (retries until the store answers); a third
    of the way, stop the server for ``down_s`` seconds and start it again on the same port and data."""
    store = ServerStore(f"clickhouse://default@127.0.0.1:{server.port}/default")
    store.execute(f"DROP TABLE IF EXISTS {TABLE}")
    store.execute(f"CREATE TABLE {TABLE} (id String, n UInt32, at DateTime) ENGINE = ReplacingMergeTree ORDER BY id")
    writer = BatchWriter(store, max_rows=batch, max_seconds=60)  # the sink's backoff: 0.2 s doubling to 10 s
    stored, failed = [], []

    def feed():
        try:
            for start in range(0, total, batch):
                for row in rows(start, min(batch, total - start)):
                    writer.submit(TABLE, row)
                writer.flush()
                stored.append(time.monotonic())
                time.sleep(pause_s)
        except Exception as exc:  # noqa: BLE001 - reported in the figures
            failed.append(f"{type(exc).__name__}: {exc}")

    feeder = threading.Thread(target=feed, name="outage-feeder", daemon=True)
    feeder.start()
    try:
        wait_for(lambda: len(stored) >= total // batch // 3 or not feeder.is_alive(), 60, what="a third written")
        server.restart(down_s=down_s)  # SIGTERM, down, the same command again (same port, same data)
        back = time.monotonic()
        feeder.join(down_s + 600)
        after = [t for t in stored if t > back]
        count, final, unique, changed = store.query(
            f"SELECT (SELECT count() FROM {TABLE}), count(), uniqExact(id), countIf(n != toUInt32(substring(id, 2))) "
            f"FROM {TABLE} FINAL")[1][0]
    finally:
        store.close()
    error = failed[0] if failed else ("still writing" if feeder.is_alive() else None)
    return StoreOutage(total, down_s, lost=total - unique, doubled=final - unique, changed=changed, copies=count - final,
                       recover_s=after[0] - back if after else None, error=error)


def test_a_server_outage_loses_doubles_and_changes_no_row(clickhouse):
    outage = store_outage(clickhouse["server"], down_s=15)
    assert outage.ok, outage
    assert outage.recover_s < 12  # the writer's longest wait between tries is 10 s
