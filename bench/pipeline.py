"""Throughput of the Kafka paths, measured in one run on the real broker, on the same events.

(a) ceiling: a bare confluent-kafka consumer reading and JSON-decoding N canonical events;
(f) faust's floor: a faust agent that only decodes them (bench/noop_agent.py), micro-batched;
(b) callqa's faust path: `callqa run` (every stage and the sink) from the topic to rows in
    ClickHouse (the embedded store), timed from its first commit until every stage has drained;
(b2) the same with N workers (`callqa run --no-sink` each) and one `callqa sink` process, for
    N = 1 and --workers (scale-out: the ratio of the two);
(c) embedded: the embedded runner on the same events in this process.
Prints events/s of each, (b)'s ratio to (f), Kafka messages written per input event by (b) (outputs,
internal topics, changelogs) and the worker's peak RSS. The events are --calls calls on 300 agents
over --days days: more days at the same calls per day grow the events at a fixed number of agents.

    python bench/pipeline.py --calls 25000        # 4 events a call; starts its own Kafka
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workdir import work_dir  # noqa: E402
from callqa.publish import publish  # noqa: E402
from schemas import format_ms  # noqa: E402
from scripts import services  # noqa: E402
from tests.conftest import callqa_env  # noqa: E402
from tests.test_worker_kafka import drained, lag  # noqa: E402


def synthetic_events(calls: int, days: int = 1, seed: int = 7) -> list[bytes]:
    """Calls spread evenly over ``days`` days on 3 sites and 300 agents: offered, queued, answered or
    abandoned, ended."""
    rng = random.Random(seed)
    t0 = 1_709_510_400_000
    out = []
    for i in range(calls):
        site, call, t = f"site-{i % 3}", f"bench-{i}", t0 + i * days * 86_400_000 // calls
        head = {"schema_version": 1, "site_id": site, "source": "bench", "call_id": call}

        def ev(kind, at, **f):
            out.append(orjson.dumps({"event_id": f"{call}-{kind}", "event_type": kind,
                                     "event_time": format_ms(at), **head, **f}))

        ev("call.offered", t, queue_id=f"q{i % 7}")
        ev("call.queued", t + 5000, queue_id=f"q{i % 7}")
        wait = int(rng.expovariate(1 / 30000))
        if rng.random() < 0.9:
            ev("call.answered", t + 5000 + wait, agent_id=f"a{i % 300}")
            ev("call.ended", t + 5000 + wait + int(rng.expovariate(1 / 240000)), agent_id=f"a{i % 300}")
        else:
            ev("call.abandoned", t + 5000 + wait, stage="queue")
            ev("call.ended", t + 5000 + wait)
    return out


def ceiling(bootstrap: str, topic: str, n: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, start = 0, None
    while got < n:
        for message in consumer.consume(10000, timeout=1.0):
            if message.error():
                continue
            if start is None:
                start = time.perf_counter()
            orjson.loads(message.value())
            got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return n / elapsed


def floor(bootstrap: str, topic: str, n: int, workdir: Path) -> float:
    """A faust agent that only decodes: from its first commit until it has committed all."""
    group = f"bench-noop-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BENCH_TOPIC": topic, "BENCH_GROUP": group,
           "BENCH_DATADIR": str(workdir / "noop")}
    command = [sys.executable, str(ROOT / "bench" / "noop_agent.py")]
    rate, _, _ = timed([command], env, [workdir / "noop.log"], bootstrap, group, topic, n, lambda: True)
    return rate


def messages_written(bootstrap: str, env: dict) -> dict[str, int]:
    """Messages in every topic the worker writes, by kind: changelogs, internal topics, outputs."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    kinds = {"changelogs": 0, "between stages": 0, "outputs": 0}
    for name, meta in consumer.list_topics(timeout=10).topics.items():
        if name == env["CALLQA_TOPIC_EVENTS"] or not (name.startswith(env["CALLQA_APP_ID"]) or name.startswith(
                env["CALLQA_TOPIC_EVENTS"].split(".")[0] + ".")):
            continue
        kind = ("changelogs" if name.endswith("-changelog") else
                "between stages" if name.startswith(env["CALLQA_APP_ID"]) else "outputs")
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            kinds[kind] += high - low
    consumer.close()
    return kinds


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (``VmHWM``) or current (``VmRSS``) resident set size, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(commands: list[list[str]], env: dict, logs: list[Path], bootstrap: str, group: str, topic: str, n: int,
          done) -> tuple[float, float, float]:
    """Run worker processes until ``group`` has committed all ``n`` events of ``topic`` and ``done()``
    holds: events/s from the first commit, events/s including start-up, and the first process's
    peak RSS in MB."""
    workers = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
               for command, log in zip(commands, logs)]
    started = time.perf_counter()
    first = None
    try:
        while True:
            try:
                pending = lag(bootstrap, group, [topic])
            except KafkaException:  # coordinator still loading: ask again
                time.sleep(0.1)
                continue
            if first is None and pending < n:
                first = (time.perf_counter(), n - pending)
            if pending == 0 and done():
                break
            for worker, log in zip(workers, logs):
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited; see {log}")
            time.sleep(0.1)
        finished = time.perf_counter()
        rss = rss_mb(workers[0].pid)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:  # nothing is lost: offsets are committed after the writes
                worker.kill()
                worker.wait()
    return (n - first[1]) / (finished - first[0]), n / (finished - started), rss


def faust_path(bootstrap: str, env: dict, n: int, workdir: Path, workers: int = 0) -> tuple[float, float, float]:
    """callqa's worker with the sink in it (``workers=0``), or that many workers and a sink process:
    until every stage has drained."""
    callqa = [sys.executable, "-m", "callqa.cli"]
    commands = [callqa + ["run"]] if not workers else [callqa + ["run", "--no-sink"]] * workers + [callqa + ["sink"]]
    logs = [workdir / f"worker-{workers}-{i}.log" for i in range(len(commands))]
    return timed(commands, env, logs, bootstrap, env["CALLQA_APP_ID"], env["CALLQA_TOPIC_EVENTS"], n,
                 lambda: drained(bootstrap, env))


def embedded_path(events: list[bytes], workdir: Path) -> float:
    """The embedded runner in this process, from lines to rows in chdb (store opened beforehand)."""
    from callqa.core.kpi import KpiConfig
    from callqa.embedded import EmbeddedPipeline
    from sinks.migrate import migrate
    from sinks.store import EmbeddedStore
    from sinks.writer import BatchWriter

    store = EmbeddedStore(workdir / "chdb")
    migrate(store)
    start = time.perf_counter()
    EmbeddedPipeline(BatchWriter(store, 20000, 1.0), KpiConfig(), partitions=4).run(events, "bench")
    rate = len(events) / (time.perf_counter() - start)
    store.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=25000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="workers of the scale-out run (0: none)")
    args = parser.parse_args()
    with work_dir("callqa-bench-") as work:
        events = synthetic_events(args.calls, args.days)
        n = len(events)
        (work / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
        kafka = None
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = services.start_kafka(work / "kafka")
            bootstrap = f"127.0.0.1:{kafka.port}"
        try:
            env = callqa_env(work, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CALLQA_SINK_BATCH_SECONDS="1.0")
            from callqa.config import Config
            from callqa.topics import ensure_topics

            ensure_topics(Config.from_env(env))
            publish(events, bootstrap, env["CALLQA_TOPIC_EVENTS"])
            a = ceiling(bootstrap, env["CALLQA_TOPIC_EVENTS"], n)
            f = floor(bootstrap, env["CALLQA_TOPIC_EVENTS"], n, work)
            b, b_total, rss = faust_path(bootstrap, env, n, work)
            written = messages_written(bootstrap, env)
            scale = {}
            for workers in sorted({1, args.workers}) if args.workers else ():
                run_env = callqa_env(work / f"scale-{workers}", KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                                     CALLQA_SINK_BATCH_SECONDS="1.0", CALLQA_TOPIC_EVENTS=env["CALLQA_TOPIC_EVENTS"])
                (work / f"scale-{workers}").mkdir(exist_ok=True)
                ensure_topics(Config.from_env(run_env))
                rate, _, worker_rss = faust_path(bootstrap, run_env, n, work / f"scale-{workers}", workers)
                scale[workers] = rate, worker_rss
            c = embedded_path(events, work / "embedded")
        finally:
            if kafka:
                kafka.stop()
        print(f"events: {n} ({args.calls} calls over {args.days} day(s), 300 agents)")
        print(f"(a) ceiling, bare confluent-kafka consume + JSON decode: {a:12,.0f} events/s")
        print(f"(f) faust's floor, a no-op faust agent:                   {f:12,.0f} events/s")
        print(f"(b) callqa faust worker, all stages + sink:               {b:12,.0f} events/s  "
              f"(ratio to faust's floor {b / f:.3f}; {b_total:,.0f}/s including worker start-up)")
        by_kind = ", ".join(f"{kind} {count / n:.2f}" for kind, count in written.items())
        print(f"    Kafka messages written per input event: {sum(written.values()) / n:.2f} ({by_kind}); "
              f"worker peak RSS {rss:,.0f} MB")
        for workers, (rate, worker_rss) in scale.items():
            print(f"(b2) {workers} worker(s) + a sink process:                  {rate:12,.0f} events/s  "
                  f"({rate / scale[1][0]:.2f}x one; a worker's peak RSS without the sink {worker_rss:,.0f} MB)")
        print(f"(c) embedded replay, file -> chdb rows (one process):     {c:12,.0f} events/s")


if __name__ == "__main__":
    main()
