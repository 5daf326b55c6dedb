"""How fast the simulator makes a day of a 3-site, 600-agent center (--speed max, to JSON Lines).

Baseline in the same run: serializing and writing the same number of pre-built events of the same
shape, i.e. the cost of the output alone; the ratio is what the simulation itself adds.

    python bench/simulator.py [--sites 3 --agents-per-site 200 --days 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workdir import work_dir  # noqa: E402
from sources.simulator import SimConfig, Simulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--agents-per-site", type=int, default=200)
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args()
    with work_dir("callqa-bench-sim-") as out:
        start = time.perf_counter()
        sim = Simulator(SimConfig(args.sites, args.agents_per_site, args.days, date(2024, 3, 4), seed=1))
        events = []
        with (out / "sim.jsonl").open("wb") as handle:
            for event in sim.events():
                handle.write(orjson.dumps(event) + b"\n")
                events.append(event)
        simulated = time.perf_counter() - start
        start = time.perf_counter()
        with (out / "baseline.jsonl").open("wb") as handle:
            for event in events:
                handle.write(orjson.dumps(event) + b"\n")
        baseline = time.perf_counter() - start
        print(f"{args.sites} sites x {args.agents_per_site} agents x {args.days} day(s): {len(events):,} events, "
              f"{sim.truth.calls:,} answered calls")
        print(f"simulator to JSON Lines: {simulated:6.2f} s ({len(events) / simulated:,.0f} events/s)")
        print(f"baseline, write only:    {baseline:6.2f} s ({len(events) / baseline:,.0f} events/s); "
              f"ratio simulator/baseline {simulated / baseline:.1f}x")


if __name__ == "__main__":
    main()
