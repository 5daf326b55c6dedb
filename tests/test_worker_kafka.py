"""End to end on real servers: confluent-kafka producer → Kafka → faust worker → ClickHouse (chdb store).

The worker runs as `callqa run` in its own process, exactly as deployed; its store is the
embedded engine (the same DDL the server gets), read here after the worker stops.
"""
import signal
import subprocess
import sys
import time

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from callqa.core.dead_letters import raw_event
from callqa.publish import event_key
from callqa.runtime import STACKS_SIGNAL
from schemas import InvalidEvent, validate
from callqa.config import Config
from callqa.topics import INTERNAL, internal_topic, sink_routes
from tests.conftest import FIXTURES, ROOT, callqa_env, run_callqa, wait_for
from tests.events import expected_site_windows
from tests.test_cli_embedded import store_snapshot

pytestmark = pytest.mark.services

DAY = FIXTURES / "day.jsonl"


def produce(bootstrap, topic, rows=False):
    """The day's events to ``topic``: as they are, or (``rows``) as the worker sends their raw_events rows."""
    producer = Producer({"bootstrap.servers": bootstrap})
    lines = DAY.read_bytes().splitlines()
    if rows:
        lines = [orjson.dumps(raw_event(validate(line), line.decode())) for line in lines if _valid(line)]
    for line in lines:
        producer.produce(topic, line, key=event_key(line))
    assert producer.flush(30) == 0
    return len(lines)


def _valid(line: bytes) -> bool:
    try:
        return bool(validate(line))
    except InvalidEvent:
        return False


def lag(bootstrap, group, topics):
    """Messages in ``topics`` not yet committed by ``group``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        total = 0
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            for tp in committed:
                high = consumer.get_watermark_offsets(tp, timeout=10)[1]
                total += max(0, high - max(tp.offset, 0))
        return total
    finally:
        consumer.close()


def member_ids(bootstrap, group) -> frozenset[str]:
    """The member ids of a consumer group once it is stable (none while it rebalances or is empty). A
    killed worker stays a member until its session times out: its id tells it from its replacement."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # held until the answer: a freed client drops it
    try:
        found = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    except (KafkaException, TimeoutError):  # the coordinator still loading or moving: ask again
        return frozenset()
    return frozenset(m.member_id for m in found.members) if found.state == ConsumerGroupState.STABLE else frozenset()


def members(bootstrap, group) -> int:
    """Members of a consumer group once it is stable (0 while it rebalances or is empty)."""
    return len(member_ids(bootstrap, group))


def drained(bootstrap, env) -> bool:
    """Every stage has committed all its input: events, the internal topics, then the sink.
    A retriable broker answer (coordinator still loading, moving) means: not yet."""
    try:
        return _drained(bootstrap, env)
    except KafkaException as exc:
        if exc.args[0].retriable() or exc.args[0].code() in (KafkaError.NOT_COORDINATOR,
                                                             KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
            return False
        raise


def stages(env) -> tuple[list[str], list[str]]:
    """The worker's internal topics and the sink's input topics."""
    config = Config.from_env(env)
    return [internal_topic(config, name) for name in INTERNAL], list(sink_routes(config))


def _drained(bootstrap, env) -> bool:
    app = env["CALLQA_APP_ID"]
    internal, outputs = stages(env)
    return (lag(bootstrap, app, [env["CALLQA_TOPIC_EVENTS"]]) == 0
            and lag(bootstrap, app, internal) == 0
            and lag(bootstrap, app + "-sink", outputs) == 0)


def settled(bootstrap, env, quiet_s=5.0, timeout=600):
    """Drained, and still drained ``quiet_s`` later (caught-up partitions are announced after a pause);
    on a timeout, the lag of every group and topic."""
    since = [None]

    def check():
        if not drained(bootstrap, env):
            since[0] = None
            return False
        since[0] = since[0] or time.monotonic()
        return time.monotonic() - since[0] >= quiet_s

    try:
        wait_for(check, timeout, what="every stage drained")
    except TimeoutError:
        app = env["CALLQA_APP_ID"]
        internal, outputs = stages(env)
        detail = {(group, topic): lag(bootstrap, group, [topic])
                  for group, topics in ((app, [env["CALLQA_TOPIC_EVENTS"], *internal]), (app + "-sink", outputs))
                  for topic in topics}
        raise TimeoutError(f"not drained: {detail}") from None


class Worker:
    def __init__(self, env, log, args=("run",)):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "callqa.cli", *args], env=env, cwd=ROOT,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self):
        """SIGTERM; a worker that does not stop within a minute is killed (and the test fails on it)."""
        self.terminate()
        self.wait()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        """Until it has stopped (``terminate``); killed after a minute."""
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_until_caught_up(env, tmp_path, bootstrap):
    """The worker (sink inside) over the day's events, until drained; asked for its threads' stacks meanwhile
    (``callqa.runtime.stacks_on_signal``): it writes them and goes on."""
    tmp_path.mkdir(exist_ok=True)
    worker = Worker(env, tmp_path / "worker.log")
    try:
        produce(bootstrap, env["CALLQA_TOPIC_EVENTS"])
        settled(bootstrap, env, timeout=300)  # a restarted worker may first wait out its predecessor's session
        dumps = worker.log.read_text(errors="replace").count("(most recent call first)")
        worker.proc.send_signal(STACKS_SIGNAL)
        wait_for(lambda: worker.log.read_text(errors="replace").count("(most recent call first)") > dumps, 10,
                 what="the worker's stacks")
        assert worker.proc.poll() is None
    finally:
        worker.stop()
    assert worker.proc.returncode == 0
    return store_snapshot(tmp_path / "data")


def test_kafka_faust_clickhouse_end_to_end(kafka, tmp_path):
    env = callqa_env(tmp_path / "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka)
    first = run_until_caught_up(env, tmp_path / "kafka", kafka)

    # the same input on the embedded path gives identical rows
    embedded_env = callqa_env(tmp_path / "embedded")
    assert run_callqa(["replay", str(DAY)], embedded_env).returncode == 0
    embedded = store_snapshot(tmp_path / "embedded" / "data")
    assert first["kpi"] == embedded["kpi"] and first["calls"] == embedded["calls"]
    # history: every valid input event stored as it came, and the same day rollups
    assert first["raw"] == embedded["raw"] and len(first["raw"]) == 62  # 65 lines: 2 poison, 1 repeated event
    assert first["daily"] == embedded["daily"] and first["daily"]
    expected = expected_site_windows(DAY, 900)
    assert len(first["calls"]) == 13
    assert {(r[0], r[1]): r[2:] for r in first["site"]} == {
        k: (w["offered"], w["answered"], w["abandoned"], w["wait_answered_ms"]) for k, w in expected.items()}

    # the poison messages are in the dead letters with reason and raw payload; everything else arrived
    raw = DAY.read_text().splitlines()
    assert sorted(r[3] for r in first["dead"]) == sorted([raw[5], raw[9]])
    assert all(r[0].startswith(env["CALLQA_TOPIC_EVENTS"] + "/") and r[2] for r in first["dead"])

    # the same events again, through a restarted worker: nothing changes
    second = run_until_caught_up(env, tmp_path / "kafka", kafka)
    assert second["kpi"] == first["kpi"] and second["calls"] == first["calls"]
    assert second["raw"] == first["raw"] and second["daily"] == first["daily"]
    assert len(second["dead"]) == 4  # the second copies sit at new offsets: nothing is lost


def test_a_worker_without_the_sink_starts_on_a_fresh_data_folder(kafka, tmp_path):
    """`callqa run --no-sink` is started before anything made its data folder (as a scaled-out
    deployment does): it must join its group, not exit."""
    env = callqa_env(tmp_path / "fresh" / "nested", KAFKA_BOOTSTRAP_SERVERS=kafka)
    worker = Worker(env, tmp_path / "worker.log", ("run", "--no-sink"))
    try:
        wait_for(lambda: worker.proc.poll() is not None or members(kafka, env["CALLQA_APP_ID"]) == 1, 120,
                 what="the worker in its group")
        assert worker.proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        worker.stop()


def test_a_worker_catching_up_on_a_backlog_runs_every_stage_meanwhile(kafka, tmp_path):
    """A worker started behind a backlog of events (back from an outage) runs the stages downstream of
    the events stage as it goes: KPI rows come out while most of the backlog is still to be applied.
    With faust's 1 MiB fetches the events partitions took every fetch: nothing downstream ran, and no
    KPI row came out, until the whole backlog was applied (and the window stage, missing the FCR stage's
    progress, then held every window of the backlog in memory)."""
    from bench.pipeline import synthetic_events
    from callqa.publish import publish
    from callqa.topics import ensure_topics

    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka)
    ensure_topics(Config.from_env(env))
    events = synthetic_events(8000, days=4)  # 32,000 events: 10 s or more of work for one worker
    publish(events, kafka, env["CALLQA_TOPIC_EVENTS"])
    rows = Consumer({"bootstrap.servers": kafka, "group.id": env["CALLQA_APP_ID"] + "-reader",
                     "auto.offset.reset": "earliest"})
    rows.subscribe([env["CALLQA_TOPIC_KPIS"]])
    worker = Worker(env, tmp_path / "worker.log", ("run", "--no-sink"))
    try:
        deadline, pending = time.monotonic() + 300, None
        while pending is None and time.monotonic() < deadline and worker.proc.poll() is None:
            if any(not m.error() for m in rows.consume(100, timeout=0.5)):
                pending = lag(kafka, env["CALLQA_APP_ID"], [env["CALLQA_TOPIC_EVENTS"]])
    finally:
        rows.close()
        worker.stop()
    assert pending is not None, (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    # measured: 519 and 1,993 of 32,000 left with 1 MiB fetches; 27,500-29,100 now, 13,546 once under the full suite's load
    assert pending > len(events) / 4, f"the first KPI row came out with {pending} of {len(events)} events left to commit"


def test_check_fails_when_the_sink_is_stopped_and_passes_once_it_stored_everything(kafka, tmp_path):
    """`callqa check` (the health check) reads the sink's backlog from Kafka: a message left unstored
    longer than CALLQA_SINK_STALE_S makes it exit 2 with the reason; a running sink clears it."""
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CALLQA_SINK_STALE_S="3")
    assert run_callqa(["migrate"], env).returncode == 0
    from callqa.config import Config
    from callqa.topics import ensure_topics

    ensure_topics(Config.from_env(env))
    ready = run_callqa(["check"], env)
    assert ready.returncode == 0 and "sink lag 0 messages" in ready.stdout, ready.stdout + ready.stderr
    sent = produce(kafka, env["CALLQA_TOPIC_RAW_EVENTS"], rows=True)  # the worker's output; no sink is running
    time.sleep(4)
    stale = run_callqa(["check"], env)
    assert stale.returncode == 2 and "sink is stale" in stale.stderr and f"{sent} messages not stored" in stale.stderr
    sink = Worker(env, tmp_path / "sink.log", ("sink",))  # (the embedded store takes one process at a time)
    try:
        wait_for(lambda: lag(kafka, f"{env['CALLQA_APP_ID']}-sink", [env["CALLQA_TOPIC_RAW_EVENTS"]]) == 0, 60,
                 what="the sink caught up")
    finally:
        sink.stop()
    assert sink.proc.returncode == 0
    caught_up = run_callqa(["check"], env)
    assert caught_up.returncode == 0 and "sink lag 0 messages" in caught_up.stdout, caught_up.stderr


def test_many_or_large_rows_fit_the_topics_and_keep_the_worker_running(kafka, tmp_path):
    """A batch's rows are packed into messages the topics take (a broker's default limit is 1 MiB): 600
    schema-invalid events of 3 kB in one batch (1.8 MB of dead letters, which stopped the worker in a crash
    loop when sent 500 rows a message), and one of about 1 MB under CALLQA_MAX_EVENT_BYTES, whose dead letter
    is a row larger than the default limit. Every one is stored once."""
    import orjson

    from callqa.config import Config
    from callqa.topics import MESSAGE_MAX_BYTES, ensure_topics

    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CALLQA_MAX_EVENT_BYTES=str(1_200_000))
    ensure_topics(Config.from_env(env))
    bad = [{"event_id": f"bad-{i}", "event_type": "call.queued", "schema_version": 1,
            "event_time": "2024-03-04T09:00:00Z", "site_id": "s1", "junk": "x" * 3000} for i in range(600)]
    bad.append(bad[0] | {"event_id": "bad-large", "junk": "x" * 1_100_000})
    lines = [orjson.dumps(event) for event in bad]
    producer = Producer({"bootstrap.servers": kafka, "message.max.bytes": MESSAGE_MAX_BYTES})
    for line in lines:
        producer.produce(env["CALLQA_TOPIC_EVENTS"], line, key=event_key(line))
    assert producer.flush(30) == 0
    worker = Worker(env, tmp_path / "worker.log")
    try:
        settled(kafka, env, timeout=300)
        assert worker.proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        worker.stop()
    dead = store_snapshot(tmp_path / "data")["dead"]
    assert sorted(r[3] for r in dead) == sorted(line.decode() for line in lines)
