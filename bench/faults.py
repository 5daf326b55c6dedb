"""The fault suite's long versions: every fault of ``tests/test_faults_kafka.py`` on more traffic, several
times, each compared table by table with the embedded replay of the same events.

Prints per fault and run whether every table was equal (and if not, the first difference) and how long
the run took to drain; then how many runs were equal per fault. Starts its own Kafka.

    python bench/faults.py --sites 2 --agents-per-site 15 --days 2 --runs 3
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import services  # noqa: E402
from sources.simulator import SimConfig  # noqa: E402
from tests.test_faults_kafka import FAULTS, run_fault, simulated_traffic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--agents-per-site", type=int, default=15)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=FAULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callqa-faults-"))
    config = SimConfig(sites=args.sites, agents_per_site=args.agents_per_site, days=args.days,
                       start=date(2024, 3, 4), seed=args.seed)
    (work / "embedded").mkdir()
    traffic = simulated_traffic(config, work / "embedded")
    print(f"{len(traffic[0]) + len(traffic[1]):,} events; embedded replay done; work dir {work}", flush=True)
    kafka = services.start_kafka(work / "kafka")
    equal = {fault: 0 for fault in args.faults}
    try:
        for run in range(args.runs):
            for fault in args.faults:
                started = time.monotonic()
                try:
                    run_fault(f"127.0.0.1:{kafka.port}", work / f"{fault.replace(' ', '-')}-{run}", traffic, fault,
                              kafka)
                    verdict = "every table equal"
                    equal[fault] += 1
                except AssertionError as exc:
                    verdict = "DIFFERENT: " + str(exc).splitlines()[0][:300]
                print(f"{fault:15s} run {run + 1}: {verdict} ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        kafka.stop()
    for fault, n in equal.items():
        print(f"{fault:15s} equal in {n} of {args.runs} runs")


if __name__ == "__main__":
    main()
