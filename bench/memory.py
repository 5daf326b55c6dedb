"""Worker memory as the input grows at a fixed number of agents: is peak RSS flat?

Runs one `callqa run` worker (``--no-sink``: the stages alone; ``--sink``: with the in-process sink and its
embedded ClickHouse) from an empty state over ``bench/pipeline.py``'s events (300 agents, --calls-per-day
calls a day) for --days days and again for 4 × --days days, each on a fresh topic of the same broker,
until every stage has drained. Samples the worker's RSS every second; prints each run's peak RSS, its
RSS when a quarter, half, three quarters and all of the event time had been applied, and the ratio of
the two peaks.

State that is kept for a time after its calls (a call for ``CALLQA_REDELIVERY_S``, a KPI window for its
retention and then a tombstone for as long again: about 6 days with the defaults) grows until the input
spans that time; --days should be past it for the ratio to speak of growth with the input, not of
state reaching its steady size.

    python bench/memory.py --days 8            # starts its own Kafka; about 8 minutes
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workdir import work_dir  # noqa: E402
from bench.pipeline import rss_mb, synthetic_events  # noqa: E402
from callqa.config import Config  # noqa: E402
from callqa.publish import publish  # noqa: E402
from callqa.topics import ensure_topics  # noqa: E402
from scripts import services  # noqa: E402
from tests.conftest import callqa_env  # noqa: E402
from tests.test_worker_kafka import drained, lag, stages  # noqa: E402


def run(bootstrap: str, work: Path, days: int, calls_per_day: int, sink: bool) -> tuple[float, list[tuple[float, float]]]:
    """One worker over ``days`` days of events until drained: its peak RSS (MB) and (share of the input
    applied by the events stage, RSS) samples."""
    events = synthetic_events(calls_per_day * days, days)
    work.mkdir(parents=True)
    env = callqa_env(work, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CALLQA_SINK_BATCH_SECONDS="1.0")
    ensure_topics(Config.from_env(env))
    publish(events, bootstrap, env["CALLQA_TOPIC_EVENTS"])
    app, topic = env["CALLQA_APP_ID"], env["CALLQA_TOPIC_EVENTS"]
    internal, _ = stages(env)
    done = (lambda: drained(bootstrap, env)) if sink else (lambda: lag(bootstrap, app, [topic, *internal]) == 0)
    command = [sys.executable, "-m", "callqa.cli", "run"] + ([] if sink else ["--no-sink"])
    log = work / "worker.log"
    worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    samples: list[tuple[float, float]] = []
    try:
        while True:
            time.sleep(1.0)
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited {worker.returncode}; see {log}")
            current = rss_mb(worker.pid, "VmRSS")
            try:
                samples.append((1 - lag(bootstrap, app, [topic]) / len(events), current))
                if samples[-1][0] >= 1 and done():
                    break
            except Exception:  # noqa: BLE001 - a group coordinator still loading: ask again
                continue
        return rss_mb(worker.pid), samples
    finally:
        worker.terminate()
        worker.wait(60)


def at(samples: list[tuple[float, float]], share: float) -> float:
    """RSS of the first sample with at least ``share`` of the input applied."""
    return next((rss for applied, rss in samples if applied >= share), samples[-1][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8, help="days of the smaller run (the larger: 4 times as many)")
    parser.add_argument("--calls-per-day", type=int, default=3000)
    parser.add_argument("--sink", action="store_true", help="the worker runs the sink too (embedded ClickHouse in it)")
    args = parser.parse_args()
    with work_dir("callqa-memory-") as work:
        kafka = services.start_kafka(work / "kafka")
        try:
            peaks = {}
            for days in (args.days, 4 * args.days):
                peak, samples = run(f"127.0.0.1:{kafka.port}", work / f"days-{days}", days, args.calls_per_day, args.sink)
                peaks[days] = peak
                trace = ", ".join(f"{q:.0%} {at(samples, q):,.0f}" for q in (0.25, 0.5, 0.75, 1.0))
                print(f"{days:3d} days, {days * args.calls_per_day * 4:,} events, worker{' with sink' if args.sink else ''}: "
                      f"peak RSS {peak:,.0f} MB; RSS (MB) when this share of the event time was applied: {trace}", flush=True)
        finally:
            kafka.stop()
        print(f"peak RSS at 4x the events: {peaks[4 * args.days] / peaks[args.days]:.2f}x ({args.calls_per_day:,} calls a day, "
              "300 agents)")


if __name__ == "__main__":
    main()
