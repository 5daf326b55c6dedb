"""Faults on the real Kafka: every stored table equals the embedded replay of the same events.

Short versions of the fault suite (``bench/faults.py`` runs them on more traffic, repeatedly): no fault (the faust-vs-embedded
identity), a worker killed with SIGKILL mid-stream, one stopped with SIGTERM mid-stream, the broker
stopped for 5 s mid-stream, two workers, and a rebalance when one of two stops. After each, the run
must drain and every table — call records, KPI windows, evaluations, alerts, sampling decisions, rate
changes, the review queue, raw events, dead letters — must hold exactly the rows of an embedded
replay: nothing lost, nothing doubled, nothing changed.
"""
import signal
import time
from datetime import date

import orjson
import pytest
from confluent_kafka import Producer

from callqa.publish import event_key
from sources.simulator import SimConfig, Simulator
from tests.conftest import callqa_env, run_callqa, wait_for
from tests.test_cli_embedded import store_snapshot
from tests.test_worker_kafka import Worker, lag, members, settled

pytestmark = pytest.mark.services


def simulated_traffic(config: SimConfig, tmp) -> tuple[list[bytes], list[bytes], dict]:
    """Simulated events (profiles apart: a deployment loads reference data first) and the tables of
    their embedded replay."""
    events = list(Simulator(config).events())
    profiles = [orjson.dumps(e) for e in events if e["event_type"] == "agent.profile"]
    rest = [orjson.dumps(e) for e in events if e["event_type"] != "agent.profile"]
    (tmp / "all.jsonl").write_bytes(b"\n".join(profiles + rest) + b"\n")
    replay = run_callqa(["replay", str(tmp / "all.jsonl")], callqa_env(tmp), timeout=3600)
    assert replay.returncode == 0, replay.stderr
    return profiles, rest, store_snapshot(tmp / "data")


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """A simulated site-day and its embedded replay."""
    config = SimConfig(sites=1, agents_per_site=6, days=1, start=date(2024, 3, 4), seed=11)
    profiles, rest, embedded = simulated_traffic(config, tmp_path_factory.mktemp("embedded"))
    # what the comparison covers: every level of KPI, threshold alerts, human and auto QA, a review queue
    assert {r[0] for r in embedded["kpi"]} == {"site", "queue", "team", "agent"}
    assert any(a[1] == "threshold" for a in embedded["alerts"])
    assert {row[1] for row in embedded["evaluations"]} == {"human", "auto"}
    assert len({r[0] for r in embedded["rates"] if r[6] == "initial"}) == 6
    assert {r[0] for r in embedded["sampling"] if r[7]} == {r[0] for r in embedded["reviews"] if r[11] == "queued"}
    assert len(embedded["calls"]) > 200 and len(embedded["sampling"]) > 200 and embedded["kpi"]
    return profiles, rest, embedded


def publish(bootstrap, topic, lines):
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20})
    for line in lines:
        producer.produce(topic, line, key=event_key(line))
    assert producer.flush(60) == 0


def start(env, tmp_path, n=1):
    """Workers without their own sink: one sink process writes the embedded store they share."""
    first = len(list(tmp_path.glob("worker-*.log")))
    return [Worker(env, tmp_path / f"worker-{first + i}.log", ("run", "--no-sink")) for i in range(n)]


def progressed(bootstrap, env, share=0.2, total=1):
    """Wait until the worker has committed some of the events (so a fault hits mid-stream)."""
    wait_for(lambda: lag(bootstrap, env["CALLQA_APP_ID"], [env["CALLQA_TOPIC_EVENTS"]]) < total * (1 - share), 120,
             interval=0.1, what="some progress")


def compare(streamed, embedded):
    for table in embedded:
        if table == "dead":  # origins differ (topic/partition vs file); contents must not
            assert [r[2:] for r in streamed[table]] == [r[2:] for r in embedded[table]]
            continue
        rows = lambda snap: {repr(r) for r in snap[table]}  # noqa: E731 (rows may hold lists)
        extra, missing = rows(streamed) - rows(embedded), rows(embedded) - rows(streamed)
        assert not extra and not missing and len(streamed[table]) == len(embedded[table]), (
            f"{table}: {len(streamed[table])} rows streamed, {len(embedded[table])} embedded; "
            f"only streamed {sorted(extra)[:3]}; only embedded {sorted(missing)[:3]}")


def run_fault(kafka, tmp_path, traffic, fault, broker=None):
    profiles, rest, embedded = traffic
    tmp_path.mkdir(exist_ok=True)
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CALLQA_BATCH_EVENTS="300")
    sink = Worker(env, tmp_path / "sink.log", ("sink",))
    workers = start(env, tmp_path, 2 if fault in ("two workers", "rebalance") else 1)
    try:
        publish(kafka, env["CALLQA_TOPIC_EVENTS"], profiles)
        settled(kafka, env, quiet_s=1)
        publish(kafka, env["CALLQA_TOPIC_EVENTS"], rest)
        if fault == "broker restart":
            progressed(kafka, env, 0.2, len(rest))
            broker.restart(down_s=5)
        if fault in ("kill", "term", "rebalance"):
            progressed(kafka, env, 0.2, len(rest))
            victim = workers.pop()
            if fault == "kill":
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
            else:
                stopped = time.monotonic()
                victim.stop()
                assert time.monotonic() - stopped < 30 and victim.proc.returncode is not None
            if fault != "rebalance":
                workers += start(env, tmp_path)
        # every worker has its partitions (a replacement with nothing left to read announces that after a pause)
        wait_for(lambda: members(kafka, env["CALLQA_APP_ID"]) == len(workers), 120, what="workers in the group")
        settled(kafka, env)
    finally:
        for w in workers + [sink]:
            w.stop()
    compare(store_snapshot(tmp_path / "data"), embedded)


FAULTS = ("none", "kill", "term", "broker restart", "two workers", "rebalance")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_leaves_every_table_equal_to_the_embedded_replay(kafka, kafka_server, tmp_path, traffic, fault):
    run_fault(kafka, tmp_path / fault.replace(" ", "-"), traffic, fault, kafka_server)
