"""A full disk is a store that cannot take rows *now*: the writer keeps them and retries until space is
back, then writes each exactly once. None of them becomes a dead letter (the store's refusal is about
its disk, not the row). The disk is a small tmpfs filled with a ballast file; both stores."""
from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from scripts import services
from sinks.store import EmbeddedStore, ServerStore, StoreUnavailable
from sinks.writer import BatchWriter


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs (needs root: the test is skipped, with the reason, where it cannot mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take all but a few KiB of the disk's free space; returns the ballast file."""
    ballast = disk / f"ballast-{uuid.uuid4().hex[:6]}"
    stat = os.statvfs(disk)
    with ballast.open("wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 8192))
    return ballast


def rows(start: int, count: int) -> list[dict]:
    return [{"id": f"r{i}", "n": i} for i in range(start, start + count)]


def outlasts_a_full_disk(store, disk: Path) -> None:
    store.execute("CREATE TABLE probe (id String, n UInt32) ENGINE = ReplacingMergeTree ORDER BY id")
    writer = BatchWriter(store, max_rows=5000, max_seconds=60, backoff_s=0.1, max_backoff_s=0.5)
    for row in rows(0, 100):
        writer.submit("probe", row)
    writer.flush()
    ballast = fill(disk)
    with pytest.raises(StoreUnavailable):
        store.insert("probe", rows(100, 20000))
    for row in rows(100, 20000):
        writer.submit("probe", row)
    flushed = threading.Thread(target=writer.flush)
    flushed.start()
    time.sleep(2.0)
    assert flushed.is_alive() and writer.pending == 20000  # retrying, nothing dropped or dead-lettered
    ballast.unlink()
    flushed.join(60)
    assert not flushed.is_alive() and writer.pending == 0
    assert store.query("SELECT count(), uniqExact(id), sum(n) FROM probe")[1] == [(20100, 20100, sum(range(20100)))]
    assert (writer.refused, writer.written["dead_letters"], writer.written["probe"]) == (0, 0, 20100)


def test_the_embedded_store_outlasts_a_full_disk(small_disk):
    store = EmbeddedStore(small_disk / "chdb")
    try:
        outlasts_a_full_disk(store, small_disk)
    finally:
        store.close()


@pytest.mark.services
def test_the_server_outlasts_a_full_disk(small_disk):
    server = services.start_clickhouse(small_disk / "server")
    store = ServerStore(f"clickhouse://default@127.0.0.1:{server.port}/default")
    try:
        outlasts_a_full_disk(store, small_disk)
    finally:
        store.close()
        server.stop()
