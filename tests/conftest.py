"""Shared fixtures. Integration fixtures start the real servers with scripts/services.py."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"

from scripts import services


def pytest_collection_modifyitems(config, items):
    """Tests marked ``shared_data`` read the real files of ``../shared/data``: skipped, with the reason, in a
    clone that does not have them (a user's)."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED_DATA} is not here (a clone without ../shared): the tests on the shared "
                                   "real data are not run")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory):
    """A real single-node Kafka (KRaft) on loopback (a test may restart it)."""
    server = services.start_kafka(tmp_path_factory.mktemp("kafka"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(kafka_server):
    """The bootstrap address of the test Kafka."""
    return f"127.0.0.1:{kafka_server.port}"


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory):
    """Debian's clickhouse-server on loopback; yields the Server (restartable by tests)."""
    workdir = tmp_path_factory.mktemp("clickhouse")
    holder = {"server": services.start_clickhouse(workdir)}
    yield holder
    holder["server"].stop()


@pytest.fixture
def embedded_store(tmp_path):
    from sinks.migrate import migrate
    from sinks.store import EmbeddedStore

    store = EmbeddedStore(tmp_path / "chdb")
    migrate(store)
    yield store
    store.close()


def callqa_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a callqa subprocess: embedded store in tmp_path, unique topic names."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL")}
    run = uuid.uuid4().hex[:8]
    env.update({
        "CALLQA_DATA_DIR": str(tmp_path / "data"),
        "CALLQA_APP_ID": f"callqa-test-{run}",
        "CALLQA_TOPIC_EVENTS": f"t{run}.events",
        "CALLQA_TOPIC_DEAD_LETTERS": f"t{run}.dead-letters",
        "CALLQA_TOPIC_CALL_RECORDS": f"t{run}.call-records",
        "CALLQA_TOPIC_KPIS": f"t{run}.kpis",
        "CALLQA_TOPIC_EVALUATIONS": f"t{run}.evaluations",
        "CALLQA_TOPIC_ALERTS": f"t{run}.alerts",
        "CALLQA_TOPIC_SAMPLING": f"t{run}.sampling",
        "CALLQA_TOPIC_SAMPLING_DECISIONS": f"t{run}.sampling-decisions",
        "CALLQA_TOPIC_REVIEW_QUEUE": f"t{run}.review-queue",
        "CALLQA_TOPIC_DETECTOR_STATE": f"t{run}.detector-state",
        "CALLQA_TOPIC_RAW_EVENTS": f"t{run}.raw-events",
        "CALLQA_SINK_BATCH_SECONDS": "0.5",
        "CALLQA_CALLER_HASH_KEY": "test-caller-hash-key",
    })
    env.update(extra)
    return env


def run_callqa(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callqa.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s")


@pytest.fixture(scope="session")
def ingested(tmp_path_factory):
    """Ingest a shared data file once per session on the embedded default; returns its data folder."""
    done: dict = {}

    def ingest(fmt: str, path: Path, site: str) -> tuple[Path, subprocess.CompletedProcess]:
        if (fmt, path) not in done:
            tmp = tmp_path_factory.mktemp(fmt)
            result = run_callqa(["ingest", "--format", fmt, "--site", site, str(path)], callqa_env(tmp), timeout=600)
            assert result.returncode == 0, result.stderr
            done[(fmt, path)] = (tmp / "data", result)
        return done[(fmt, path)]

    return ingest
