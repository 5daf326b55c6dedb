"""Detector state and update speed for 100,000 agents (issue target: state in 1 GiB, 100,000 updates/s on one core).

Each agent has SERIES series (QA human, QA auto, handle time, hold time, transfer rate, negative
sentiment), each a detector state (callqa.core.drift). Memory is measured with tracemalloc;
updates are timed on one core over random agents and series. Baseline in the same run: the same
loop adding the value to a plain float per series (the cost of the loop and lookups alone).

    python bench/drift.py [--agents 100000 --updates 1000000]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callqa.core.drift import ChartConfig, new_state, update  # noqa: E402

SERIES = ("qa_human", "qa_auto", "aht", "hold", "transfer", "sentiment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = random.Random(1)
    config = ChartConfig(min_sigma=2.0)
    tracemalloc.start()
    states = {f"agent-{i:06d}": [new_state() for _ in SERIES] for i in range(args.agents)}
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = list(states)
    work = [(keys[rng.randrange(len(keys))], rng.randrange(len(SERIES)), rng.gauss(85, 6)) for _ in range(args.updates)]
    # warm every series past its warm-up so the timed updates run the charts
    for agent_states in states.values():
        for state in agent_states:
            for _ in range(config.warmup):
                update(state, rng.gauss(85, 6), config)
    start = time.perf_counter()
    signals = 0
    for agent, series, value in work:
        signals += update(states[agent][series], value, config) is not None
    detectors = args.updates / (time.perf_counter() - start)
    plain = {k: [0.0] * len(SERIES) for k in keys}
    start = time.perf_counter()
    for agent, series, value in work:
        plain[agent][series] += value
    baseline = args.updates / (time.perf_counter() - start)
    print(f"{args.agents:,} agents x {len(SERIES)} series: detector state {memory / 2**20:,.1f} MiB "
          f"({memory / args.agents:,.0f} bytes per agent); 1 GiB target: {'met' if memory < 2**30 else 'NOT met'}")
    print(f"detector updates: {detectors:,.0f}/s on one core ({signals} signals in {args.updates:,} in-control updates)")
    print(f"baseline (loop + lookups, plain float add): {baseline:,.0f}/s; ratio detectors/baseline {detectors / baseline:.2f}")


if __name__ == "__main__":
    main()
