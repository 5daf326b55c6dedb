"""Backfill throughput: the embedded runner in one process against its events stage in N worker
processes (``replay --processes N``), on the same events, each into a fresh embedded store.

Times each run from the pipeline's creation (workers start then) until its state is saved, alternating
1 and N processes ``--repeat`` times; prints the best and the median events/s of each, their ratio, the
CPU seconds a run takes (all its processes: the parallel run's overhead), the load average (other work
on the machine takes cores from the parallel run) and whether every run saved the same state. The events are ``bench/pipeline.py``'s (4 a call, 300 agents).

    python bench/backfill.py --calls 12000 --processes 2
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the workers import this module again: heavy imports stay in the functions


def cpu_s() -> float:
    """CPU seconds of this process and its finished children, user and system."""
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def timed(events: list[bytes], processes: int, workdir: Path) -> tuple[float, float, bytes]:
    """events/s of one run into a fresh store (opened beforehand), its CPU seconds, and the state it saved."""
    from callqa.core.kpi import KpiConfig
    from callqa.embedded import EmbeddedPipeline
    from sinks.migrate import migrate
    from sinks.store import EmbeddedStore
    from sinks.writer import BatchWriter

    store = EmbeddedStore(workdir / "chdb")
    migrate(store)
    start, cpu = time.perf_counter(), cpu_s()
    EmbeddedPipeline(BatchWriter(store, 20000, 1.0), KpiConfig(), workdir / "state.json", partitions=4,
                     processes=processes).run(events, "bench")
    rate, cpu = len(events) / (time.perf_counter() - start), cpu_s() - cpu
    store.close()
    return rate, cpu, (workdir / "state.json").read_bytes()


def main() -> None:
    from bench.pipeline import synthetic_events
    from bench.workdir import work_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=12000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2, help="worker processes of the parallel run (at most 4)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = synthetic_events(args.calls, args.days)
    with work_dir("callqa-backfill-bench-") as work:
        rates: dict[int, list[float]] = {1: [], args.processes: []}
        cpus: dict[int, list[float]] = {1: [], args.processes: []}
        states = set()
        load = os.getloadavg()[0]
        for run in range(args.repeat):
            for processes in rates:
                rate, cpu, state = timed(events, processes, work / f"{processes}-{run}")
                rates[processes].append(rate)
                cpus[processes].append(cpu)
                states.add(state)
        print(f"events: {len(events)} ({args.calls} calls over {args.days} day(s), 300 agents), 4 partitions, "
              f"best and median of {args.repeat}; {os.cpu_count()} cores, load average {load:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after")
        for processes, runs in rates.items():
            print(f"{processes} process(es): {max(runs):10,.0f} events/s best, {statistics.median(runs):10,.0f} median; "
                  f"{statistics.median(cpus[processes]):.2f} CPU s a run")
        best, median = (max(rates[args.processes]) / max(rates[1]),
                        statistics.median(rates[args.processes]) / statistics.median(rates[1]))
        print(f"ratio {args.processes} to 1: {best:.2f}x best, {median:.2f}x median; "
              f"same saved state: {'yes' if len(states) == 1 else 'NO'}")


if __name__ == "__main__":
    main()
