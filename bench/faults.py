"""The fault suite's long versions, with their figures, in one run: the faults of
``tests/test_faults_kafka.py`` on more traffic and for longer, and a ClickHouse server outage under the
sink's writer (``tests/test_faults_store.py``), each several times. Starts its own Kafka and (for the
store outage) Debian's clickhouse-server.

Faults (``--faults``): none; kill, term (a worker, mid-stream); broker outage (down ``--broker-down-s``,
60); two workers; rebalance; sink stopped (SIGSTOP for ``--sink-stopped-s``, 300, then SIGCONT); sink
killed (SIGKILL mid-stream, a new sink started); sink hung (SIGSTOP until ``callqa check`` fails, then
SIGKILL and a new sink); invalid rows (not JSON, a column the table lacks, a wrong-typed column, alone on
the sink's KPI topic: each must be a dead letter, the sink going on); late partition (every partition
caught up, then the events of all but one applied before that one's); store outage (the server down
``--store-down-s``, 300, under a writer of ``--store-rows`` rows).

For each pipeline fault and run it prints, per table, the rows lost / doubled / changed / extra against
the embedded replay of the same events (all must be 0), and the seconds from the fault's end until every
stage and the sink had caught up; under it what else was measured (how long ``callqa check`` took to
fail once the sink stopped: more than 30 s is a problem; the invalid rows' dead letters) and what went
wrong. For the store outage: rows lost, doubled (count() FINAL against uniqExact(id)), changed, the
unmerged copies a query without FINAL sees (count() against count() FINAL), and the seconds from the
server answering again until the writer's held batch was stored. Last, how many runs of each fault were
clean.

    python bench/faults.py --sites 2 --agents-per-site 15 --days 2 --runs 3
    python bench/faults.py --runs 1 --faults "sink stopped" "store outage" --sink-stopped-s 60 --store-down-s 60
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workdir import work_dir  # noqa: E402
from scripts import services  # noqa: E402
from sources.simulator import SimConfig  # noqa: E402
from tests.test_faults_kafka import FAULTS, IDENTITY, run_fault, simulated_traffic  # noqa: E402
from tests.test_faults_store import store_outage  # noqa: E402

STORE = "store outage"
HEADS = {"calls": "calls", "kpi": "kpi", "evaluations": "evals", "alerts": "alerts", "sampling": "sampling",
         "reviews": "reviews", "rates": "rates", "raw": "raw", "dead": "dead", "daily": "daily"}
CELL = 9


def header() -> str:
    return f"{'fault':15s}{'run':>4s}  " + "".join(f"{HEADS.get(t, t)[:CELL - 1]:{CELL}s}" for t in IDENTITY) + \
        f"{'recover':>7s}"


def cells(figures: dict) -> tuple[str, str]:
    """The cells of the tables IDENTITY names, in its order; and any other table store_snapshot reads, named."""
    return ("".join(f"{'/'.join(map(str, figures[t])):{CELL - 1}s} " for t in IDENTITY),
            "  ".join(f"{t} {'/'.join(map(str, f))}" for t, f in figures.items() if t not in IDENTITY))


def pipeline_line(fault: str, run: int, args) -> tuple[bool, list[str]]:
    work = args.work / f"{fault.replace(' ', '-')}-{run}"
    try:
        outcome = run_fault(args.bootstrap, work, args.traffic, fault, args.kafka, broker_down_s=args.broker_down_s,
                            sink_stopped_s=args.sink_stopped_s, check_limit_s=30)
    except Exception as exc:  # noqa: BLE001 - a run that broke is a figure too
        return False, [f"{fault:15s}{run:4d}  FAILED: {type(exc).__name__}: {str(exc)[:300]}"]
    recover = "-" if outcome.recover_s is None else f"{outcome.recover_s:.1f} s"
    named, others = cells(outcome.figures)
    lines = [f"{fault:15s}{run:4d}  {named}{recover:>7s}" + (f"  {others}" if others else "")]
    lines += [f"{'':21s}{key}: {value}" for key, value in outcome.notes.items()]
    lines += [f"{'':21s}PROBLEM: {problem[:400]}" for problem in outcome.problems]
    lines += [f"{'':21s}e.g. {example}" for example in outcome.examples[:3]]
    return outcome.ok, lines


def store_line(run: int, args) -> tuple[bool, list[str]]:
    if args.clickhouse is None:
        args.clickhouse = services.start_clickhouse(args.work / "clickhouse")
    try:
        o = store_outage(args.clickhouse, args.store_down_s, total=args.store_rows, batch=args.store_batch)
    except Exception as exc:  # noqa: BLE001
        return False, [f"{STORE:15s}{run:4d}  FAILED: {type(exc).__name__}: {str(exc)[:300]}"]
    recover = "-" if o.recover_s is None else f"{o.recover_s:.1f} s"
    line = (f"{STORE:15s}{run:4d}  {o.rows} rows, batches of {args.store_batch}, server down {o.down_s:.0f} s: "
            f"lost {o.lost}, doubled {o.doubled}, changed {o.changed} (unmerged copies {o.copies}); recover {recover}")
    return o.ok, [line] + ([f"{'':21s}PROBLEM: {o.error}"] if o.error else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--agents-per-site", type=int, default=15)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", nargs="*", default=[*FAULTS, STORE], choices=[*FAULTS, STORE])
    parser.add_argument("--broker-down-s", type=float, default=60, help="broker outage: seconds the broker is down")
    parser.add_argument("--sink-stopped-s", type=float, default=300, help="sink stopped: seconds of SIGSTOP")
    parser.add_argument("--store-down-s", type=float, default=300, help="store outage: seconds the server is down")
    parser.add_argument("--store-rows", type=int, default=20000, help="store outage: rows written")
    parser.add_argument("--store-batch", type=int, default=500, help="store outage: rows per batch")
    args = parser.parse_args()
    with work_dir("callqa-faults-") as args.work:
        args.kafka = args.clickhouse = None
        pipeline = [f for f in args.faults if f != STORE]
        if pipeline:
            config = SimConfig(sites=args.sites, agents_per_site=args.agents_per_site, days=args.days,
                               start=date(2024, 3, 4), seed=args.seed)
            (args.work / "embedded").mkdir()
            args.traffic = simulated_traffic(config, args.work / "embedded")
            print(f"{len(args.traffic[0]) + len(args.traffic[1]):,} events; embedded replay done; work dir {args.work}",
                  flush=True)
            args.kafka = services.start_kafka(args.work / "kafka")
            args.bootstrap = f"127.0.0.1:{args.kafka.port}"
        clean = {fault: 0 for fault in args.faults}
        try:
            print("cells: rows lost/doubled/changed/extra per table against the embedded replay (after FINAL); recover: "
                  "seconds from the fault's end until every stage and the sink had caught up\n" + header(), flush=True)
            for run in range(1, args.runs + 1):
                for fault in args.faults:
                    started = time.monotonic()
                    ok, lines = store_line(run, args) if fault == STORE else pipeline_line(fault, run, args)
                    clean[fault] += ok
                    lines[0] += f"   ({time.monotonic() - started:.0f} s run)"
                    print("\n".join(lines), flush=True)
        finally:
            for server in (args.kafka, args.clickhouse):
                if server is not None:
                    server.stop()
        for fault, n in clean.items():
            print(f"{fault:15s} clean (every figure 0, recovered) in {n} of {args.runs} runs")


if __name__ == "__main__":
    main()
