"""`replay --processes N`: the events stage in N worker processes gives what one process gives.

Every table, the counts and the saved state must be those of the single-process run (the same
simulated events with a profile changed mid-stream and poison lines), also for a second run on top
of the first; a worker that dies stops the run with an error, never a hang.
"""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from functools import partial
from pathlib import Path

import orjson
import pytest

from callqa.backfill import EventProcesses, WorkerFailed
from callqa.core.kpi import KpiConfig
from callqa.core.local import EventsHere, LocalGraph
from sources.simulator import SimConfig, Simulator
from tests.conftest import FIXTURES, ROOT, callqa_env, run_callqa
from tests.test_cli_embedded import store_snapshot


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, Path]:
    """Three simulated days (two batches of the embedded runner, 5000 events each) in two files: the days' events, a
    profile moved to another team halfway, poison lines; and a later file with more of them."""
    events = list(Simulator(SimConfig(sites=1, agents_per_site=8, days=3, start=date(2024, 3, 4), seed=5)).events())
    moved = next(e for e in events if e["event_type"] == "agent.profile")
    lines = [orjson.dumps(e) for e in events]
    half = len(lines) // 2
    lines.insert(half, orjson.dumps({**moved, "event_id": "moved", "team_id": "site-1/team-9"}))
    lines[100:100] = [b"{not json", b'{"event_type": "call.offered", "schema_version": 1}']
    folder = tmp_path_factory.mktemp("history")
    first, later = folder / "first.jsonl", folder / "later.jsonl"
    first.write_bytes(b"\n".join(lines[:-1500]) + b"\n")
    later.write_bytes(b"\n".join(lines[-1500:]) + b"\n")
    return first, later


def replayed(tmp: Path, files: list[Path], processes: int) -> tuple[dict, dict, list[dict]]:
    """Every table and the saved state after replaying ``files`` in turn, and each run's counts."""
    env = callqa_env(tmp)
    counts = []
    for file in files:
        done = run_callqa(["replay", "--json", "--processes", str(processes), str(file)], env, timeout=600)
        assert done.returncode == 0, done.stderr
        counts.append(json.loads(done.stdout))
    return store_snapshot(tmp / "data"), orjson.loads((tmp / "data" / "embedded-state.json").read_bytes()), counts


def test_n_processes_store_and_save_what_one_does(history, tmp_path):
    first, _ = history
    one = replayed(tmp_path / "1", [first], 1)
    tables, _, (counts,) = one
    assert counts["events"] > 5000 and counts["dead_letters"] == 2 and tables["alerts"] and tables["reviews"]
    assert {r[3] for r in tables["dead"]} == {"{not json", '{"event_type": "call.offered", "schema_version": 1}'}
    for processes in (2, 3):  # 3: two processes own one partition, one owns two
        assert replayed(tmp_path / str(processes), [first], processes) == one


def test_runs_add_up_as_with_one_process(history, tmp_path):
    assert replayed(tmp_path / "2", list(history), 2) == replayed(tmp_path / "1", list(history), 1)


def test_adapter_events_in_worker_processes():
    """Dicts (as adapters make them) through the graph with its events stage in two processes."""
    events = list(Simulator(SimConfig(sites=1, agents_per_site=6, days=1, start=date(2024, 3, 4), seed=11)).events())

    def run(events_stage) -> tuple[dict, dict]:
        state: dict = {}
        graph = LocalGraph(state, KpiConfig(), partitions=4, store_raw=True, events=events_stage)
        rows: dict[str, list] = {}

        def take(out) -> None:
            for table, more in out.rows.items():
                rows.setdefault(table, []).extend(orjson.dumps(r) for r in more)

        for n, event in enumerate(events, 1):
            graph.feed(event, "test", str(n))
            if n % 500 == 0:
                take(graph.advance())
        take(graph.idle())
        graph.close()
        return {table: sorted(more) for table, more in rows.items()}, state

    assert run(partial(EventProcesses, 2)) == run(EventsHere)


def _workers(pid: int) -> list[int]:
    """The events workers among a process's children (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_a_worker_that_dies_stops_the_run_with_an_error(history, tmp_path):
    first, _ = history
    big = tmp_path / "big.jsonl"
    big.write_bytes(first.read_bytes() * 6)
    replay = subprocess.Popen([sys.executable, "-m", "callqa.cli", "replay", "--processes", "2", str(big)],
                              env=callqa_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_workers(replay.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(_workers(replay.pid)[0], signal.SIGKILL)
    _, stderr = replay.communicate(timeout=120)
    assert replay.returncode == 1 and "events worker" in stderr and "died (exit code -9)" in stderr, stderr
    assert "Traceback" not in stderr and not (tmp_path / "data" / "embedded-state.json").exists()


def test_ingest_with_processes_stores_what_one_process_does(tmp_path):
    def ingested(processes: int) -> tuple[dict, dict]:
        env = callqa_env(tmp_path / str(processes))
        done = run_callqa(["ingest", "--format", "asterisk-queue-log", "--processes", str(processes),
                           str(FIXTURES / "queue_log.txt")], env)
        assert done.returncode == 0, done.stderr
        return store_snapshot(tmp_path / str(processes) / "data"), orjson.loads(
            (tmp_path / str(processes) / "data" / "embedded-state.json").read_bytes())

    one = ingested(1)
    assert one[0]["calls"] and one == ingested(4)
    for args, env, message in ((["--processes", "5"], {}, "at most CALLQA_TOPIC_PARTITIONS (4)"),
                               (["--processes", "2"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "with KAFKA_BOOTSTRAP_SERVERS set")):
        done = run_callqa(["replay", *args, str(FIXTURES / "day.jsonl")], callqa_env(tmp_path / "x", **env))
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_worker_that_raises_stops_the_run_with_its_traceback():
    graph = LocalGraph({}, KpiConfig(), partitions=2, events=partial(EventProcesses, 2))
    graph.inbox[("events", 1)].append(("not a message",))  # a bug: a message without its parts
    with pytest.raises(WorkerFailed, match=r"(?s)events worker 1 failed.*Traceback.*TypeError"):
        graph.flush()
