"""Event-to-KPI-row latency of the faust path at a steady input rate.

Publishes calls in real time (event time = now) at --rate events/s for --seconds, to one `callqa run`
worker (every stage and the sink). For each `call.offered`, the latency is the time from its publication
until the first row of its site's 15-minute KPI window on the KPI topic counts it (the n-th offered call
of a window is counted once a row shows offered >= n). Prints p50, p99 and the maximum over every
offered call (one never counted within 30 s after the input ended counts as infinitely late) and the
worker's input lag when the input ended. Starts its own Kafka.

    python bench/latency.py --rate 1000 --seconds 60
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workdir import work_dir  # noqa: E402
from callqa.config import Config  # noqa: E402
from callqa.publish import Publisher  # noqa: E402
from callqa.topics import ensure_topics  # noqa: E402
from schemas import format_ms, time_ms  # noqa: E402
from scripts import services  # noqa: E402
from tests.conftest import callqa_env  # noqa: E402
from tests.test_worker_kafka import lag  # noqa: E402

SITES, AGENTS, WINDOW_MS = 3, 300, 900_000


def publish_steady(publisher: Publisher, rate: int, seconds: float, offered: dict, ready: threading.Event) -> None:
    """Four events a call (offered, queued, answered, ended), ``rate`` events/s; records each offered
    call's publication time under its site window, in order."""
    ready.wait()
    start, i = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate / 4)
        while i < due:
            now = int(time.time() * 1000)
            site, call, agent = f"site-{i % SITES}", f"lat-{i}", f"a{i % AGENTS}"
            head = {"schema_version": 1, "site_id": site, "source": "bench", "call_id": call}
            for n, (kind, extra) in enumerate((("call.offered", {"queue_id": "q0"}), ("call.queued", {"queue_id": "q0"}),
                                              ("call.answered", {"agent_id": agent}), ("call.ended", {"agent_id": agent}))):
                event = {"event_id": f"{call}-{kind}", "event_type": kind, "event_time": format_ms(now + n), **head, **extra}
                publisher.event(orjson.dumps(event))
            offered[(site, now - now % WINDOW_MS)].append(time.monotonic())
            i += 1
        time.sleep(0.002)
    publisher.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="input events per second")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with work_dir("callqa-latency-") as work:
        kafka = services.start_kafka(work / "kafka")
        bootstrap = f"127.0.0.1:{kafka.port}"
        worker = consumer = None
        try:
            env = callqa_env(work, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
            config = Config.from_env(env)
            ensure_topics(config)
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency", "auto.offset.reset": "earliest"})
            consumer.subscribe([config.topic_kpis])
            worker = subprocess.Popen([sys.executable, "-m", "callqa.cli", "run"], env=env, cwd=ROOT,
                                      stdout=(work / "worker.log").open("wb"), stderr=subprocess.STDOUT)
            time.sleep(10)  # the worker joins its group and recovers (empty) tables
            offered: dict[tuple[str, int], list[float]] = defaultdict(list)
            counted: dict[tuple[str, int], list[float]] = defaultdict(list)  # arrival time of the n-th count
            ready = threading.Event()
            publisher = Publisher(bootstrap, config.topic_events)
            producer = threading.Thread(target=publish_steady, args=(publisher, args.rate, args.seconds, offered, ready))
            producer.start()
            ready.set()
            deadline, behind = time.monotonic() + args.seconds + 30, None
            while time.monotonic() < deadline:
                if behind is None and not producer.is_alive():
                    behind = lag(bootstrap, config.app_id, [config.topic_events])
                for message in consumer.consume(1000, timeout=0.2):
                    if message.error():
                        continue
                    arrived = time.monotonic()
                    for row in orjson.loads(message.value()):
                        if row["level"] != "site" or row["window_s"] != WINDOW_MS // 1000:
                            continue
                        seen = counted[(row["site_id"], time_ms(row["window_start"]))]
                        seen.extend([arrived] * (row["offered"] - len(seen)))
                if not producer.is_alive() and sum(map(len, offered.values())) <= sum(map(len, counted.values())):
                    break
            producer.join()
            del publisher, producer  # its librdkafka producer goes before the broker does
            latencies = []
            for window, published in offered.items():
                seen = counted.get(window, [])
                latencies += [arrived - sent for sent, arrived in zip(published, seen)]
                latencies += [math.inf] * max(0, len(published) - len(seen))
            latencies.sort()
            pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
            print(f"{len(latencies):,} offered calls at {args.rate:,} events/s for {args.seconds:.0f} s: "
                  f"event-to-KPI-row latency p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, max {latencies[-1]:.2f} s; "
                  f"{sum(x == math.inf for x in latencies):,} never counted; input lag when the input ended: "
                  f"{behind:,} events")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(60)
            if consumer is not None:  # closed before the broker stops: no reconnect noise
                consumer.close()
            kafka.stop()


if __name__ == "__main__":
    main()
