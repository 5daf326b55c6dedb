"""Detector and monitoring-policy state and update speed for 100,000 agents (issue target: the state in
1 GiB, 100,000 updates/s on one core).

Each agent has SERIES drift-chart series (QA human, handle time, hold time, transfers, negative
sentiment, the missing-apology item; ``callqa.core.drift`` with the families of ``callqa.core.monitor``) and a sampling-policy state (``callqa.core.sampling``:
rate, signals, month counters, coverage cells, attitude/emotion EWMAs), warmed with a month's worth
of calls and coverage. Memory is measured with tracemalloc. The timed mix is what one answered call brings:
one update of each of the six series, the two attitude/emotion observations and one sampling
decision (nine updates). Baseline in the same run: the same loop adding each value to a plain float.

    python bench/drift.py [--agents 100000 --calls 200000]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callqa.core.drift import limit, new_state, step  # noqa: E402
from callqa.core.monitor import METRICS  # noqa: E402
from callqa.core.sampling import PolicyConfig, Sampler  # noqa: E402
from schemas import time_ms  # noqa: E402

SERIES = ("qa_human", "handle_s", "hold_s", "transferred", "sentiment_negative", "item:waiting.apology_after_hold")
T0 = time_ms("2024-03-04T08:00:00.000Z")
PARTITIONS = 4


def call(rng: random.Random, agents: list[str], n: int, t: int) -> dict:
    agent = agents[rng.randrange(len(agents))]
    duration = int(rng.lognormvariate(5.3, 0.6) * 1000)
    return {"call_id": f"call-{n}", "recording_id": f"rec-{n}", "storage_uri": "s3://bench", "agent_id": agent,
            "site_id": f"site-{hash(agent) % 10}", "queue_id": "billing", "answered_ms": t - duration,
            "duration_ms": duration, "at_ms": t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(1)
    families = [METRICS[m] for m in SERIES]
    limits = [limit(f, 1e5) for f in families]
    names = [f"agent-{i:06d}" for i in range(args.agents)]
    profiles = {a: {"site_id": f"site-{hash(a) % 10}", "team_id": f"team-{i // 15}", "hire_date": "2023-06-01",
                    "tier": ("high", "middle", "middle", "low")[i % 4], "shift": {"start": "08:00", "end": "17:00"}}
                for i, a in enumerate(names)}
    tracemalloc.start()
    states = {a: [new_state() for _ in SERIES] for a in names}
    detectors_memory = tracemalloc.get_traced_memory()[0]
    sampler = Sampler({}, {}, profiles, PolicyConfig(), b"bench", PARTITIONS)
    part = lambda agent: str(hash(agent) % PARTITIONS)
    cells = [f"{d}-{b}" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
             for b in ("first_hour", "middle", "last_two_hours")]
    for i, a in enumerate(names):  # a month's worth of policy state: every coverage cell, EWMAs
        for d in range(3):
            sampler.decide(call(rng, [a], i * 100 + d, T0 + d * 86_400_000 + rng.randrange(9 * 3_600_000)), part(a))
        # three weeks into the month: ~45 calls a day, on pace for 30 reviews, every cell covered
        sampler.agents[a].update(calls=950, selected=24, cells=[f"{c}" for c in cells])
        sampler.observe(a, profiles[a]["site_id"], "qa_auto", 85.0, part(a))
        sampler.observe(a, profiles[a]["site_id"], "sentiment_negative", 0.1, part(a))
    total_memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for agent_states in states.values():  # every series past its warm-up (baseline 85 ± 6): the charts run
        for state, family in zip(agent_states, families):
            state[:3] = [family.warmup, 85.0 if family.scale != "binary" else 0.1, 36.0]
    t = T0 + 22 * 86_400_000
    work = [(call(rng, names, n, t + n * 10), [rng.gauss(85, 6) for _ in SERIES], rng.random()) for n in range(args.calls)]

    start = time.perf_counter()
    for c, values, sentiment in work:
        agent = c["agent_id"]
        for state, value, family, h in zip(states[agent], values, families, limits):
            step(state, value, family, h)
        p = part(agent)
        sampler.observe(agent, c["site_id"], "qa_auto", values[1], p)
        sampler.observe(agent, c["site_id"], "sentiment_negative", sentiment, p)
        sampler.decide(c, p)
    elapsed = time.perf_counter() - start
    per_call = len(SERIES) + 3
    plain = {a: [0.0] * per_call for a in names}
    start = time.perf_counter()
    for c, values, sentiment in work:
        slots = plain[c["agent_id"]]
        for i, value in enumerate(values):
            slots[i] += value
        slots[6] += values[1]
        slots[7] += sentiment
        slots[8] += 1
    baseline = args.calls * per_call / (time.perf_counter() - start)
    rate = args.calls * per_call / elapsed
    print(f"{args.agents:,} agents: detector state {detectors_memory / 2**20:,.1f} MiB, detectors + policy "
          f"{total_memory / 2**20:,.1f} MiB ({total_memory / args.agents:,.0f} bytes per agent); "
          f"1 GiB target: {'met' if total_memory < 2**30 else 'NOT met'}")
    print(f"updates (per answered call: {len(SERIES)} detector updates, 2 observations, 1 sampling decision): "
          f"{rate:,.0f}/s on one core ({args.calls / elapsed:,.0f} calls/s); 100,000/s target: "
          f"{'met' if rate >= 100_000 else 'NOT met'}")
    print(f"baseline (same loop, plain float adds): {baseline:,.0f}/s; ratio {rate / baseline:.2f}")


if __name__ == "__main__":
    main()
