"""Drift alerts and adaptive monitoring against the issue's targets, on simulated centers, several seeds.

Each scenario runs `callqa.evaluation.evaluate` (closed loop: reviewers evaluate the calls callqa
queues) with its drifts and again without any (the control). Printed per run: detection delay of each
drift in hours of operation (hours in which the drifting scope took calls; and the wall-clock hours
from its first affected call), the placebo on an untouched scope, false alarms and false
incidents per agent-month (with drifts and without), notices per incident, the share of drift-caused
rate raises from real drifts, poor calls found by the adaptive policy against the tenure x tier
weighted quota (with and without drifts) and the human-QA error of raised agents (weighted and not).
Then every figure against its target.

    python bench/monitoring.py                     # 2 scenarios x 2 seeds (about 20 minutes on 2 cores)
    python bench/monitoring.py --scenario small --seeds 1
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callqa.evaluation import evaluate  # noqa: E402
from sources.simulator import DriftSpec, SimConfig  # noqa: E402

START = date(2024, 3, 4)  # a Monday
SCENARIOS = {
    # sites, agents per site, days, drifts
    "2x30x28": (2, 30, 28, ("qa:team=site-1/team-2,delta=-10,from=+7", "apology:agent=site-2-a0007,from=+9",
                            "qa:agent=site-2-a0021,delta=-8,from=+11", "aht:team=site-2/team-1,factor=1.15,from=+14",
                            "transfer:team=site-1/team-1,factor=2.5,from=+18,to=+22",
                            "hold:agent=site-1-a0005,factor=1.8,from=+21,ramp=24")),
    "4x40x14": (4, 40, 14, ("qa:team=site-3/team-3,delta=-10,from=+4", "apology:agent=site-1-a0033,from=+5",
                            "qa:agent=site-4-a0012,delta=-8,from=+7", "aht:team=site-2/team-2,factor=1.15,from=+8",
                            "aht:site=site-4,factor=1.3,from=+10,ramp=12")),
    "small": (1, 30, 8, ("qa:team=site-1/team-2,delta=-10,from=+3", "apology:agent=site-1-a0004,from=+4")),
}
TARGETS = {  # per drift kind and scope: hours of operation to find it
    ("qa", "team"): 8, ("aht", "team"): 8, ("apology", "agent"): 8, ("qa", "agent"): 3 * 9,  # 3 working days of a 9-hour shift
}


def run(name: str, seed: int) -> dict:
    sites, per_site, days, drifts = SCENARIOS[name]
    specs = tuple(DriftSpec.parse(d, START) for d in drifts)
    result = evaluate(SimConfig(sites, per_site, days, START, seed, specs), seed=seed).as_dict()
    return {"scenario": name, "seed": seed, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Also write every run's figures here.")
    args = parser.parse_args()
    jobs = [(name, 11 + i) for name in (args.scenario or ["2x30x28", "4x40x14"]) for i in range(args.seeds)]
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(run, *zip(*jobs)))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    checks: list[tuple[str, bool]] = []
    for r in runs:
        c = r["control"]
        print(f"\n== {r['scenario']} seed {r['seed']}: {r['agents']} agents, {r['days']} days, {r['events']:,} events")
        for d in r["drifts"]:
            target = TARGETS.get((d["kind"], d["scope_level"]))
            delay = d["delay_operating_hours"]
            print(f"  {d['kind']:9} {d['scope_id']:16} found after {delay if delay is not None else 'never':>6} h of "
                  f"operation ({d['delay_from_first_call_hours']} h after its first call) "
                  f"by {d['detected_by']}; incidents {d['incidents']}, notices {d['notices_per_incident']}"
                  + (f"  [target {target} h]" if target else ""))
            if target:
                checks.append((f"{r['scenario']}/{r['seed']} {d['kind']} {d['scope_level']} within {target} h",
                               delay is not None and delay <= target))
            checks.append((f"{r['scenario']}/{r['seed']} {d['kind']} {d['scope_id']} notices <= 3",
                           d["notices_per_incident"] <= 3))
        for p in r["placebos"]:
            print(f"  placebo {p['placebo_for']} on {p['scope_id']}: {p['detected_by'] or 'nothing'}")
        fa, fc = r["false_alarms_per_agent_month"], c["false_alarms_per_agent_month"]
        print(f"  false alarms / agent-month: {fa['all']} with drifts (agent {fa['agent']}, team {fa['team']}, site "
              f"{fa['site']}), {fc['all']} without (agent {fc['agent']}, team {fc['team']}, site {fc['site']}); "
              f"false incidents {r['false_incidents_per_agent_month']['all']} / {c['false_incidents_per_agent_month']['all']}")
        checks.append((f"{r['scenario']}/{r['seed']} false alarms without drift <= 0.1 per agent-month", fc["all"] <= 0.1))
        raises = r["rate_raises"]
        print(f"  drift-caused rate raises: {raises['drift_raises']}, from real drifts {raises['real_share']}")
        checks.append((f"{r['scenario']}/{r['seed']} >= 80% of drift raises real", (raises["real_share"] or 0) >= 0.8))
        p, pc = r["policies"], c["policies"]
        print(f"  poor calls found: adaptive {p['adaptive']['poor_found']}, weighted quota "
              f"{p['fixed_n_weighted']['poor_found']}, uniform {p['fixed_n_uniform']['poor_found']} "
              f"(ratio {p['adaptive_vs_weighted']}); without drifts ratio {pc['adaptive_vs_weighted']}")
        checks.append((f"{r['scenario']}/{r['seed']} adaptive >= 1.3x weighted with drifts", (p["adaptive_vs_weighted"] or 0) >= 1.3))
        checks.append((f"{r['scenario']}/{r['seed']} adaptive >= weighted without", (pc["adaptive_vs_weighted"] or 0) >= 1.0))
        h = r["human_qa_of_raised_agents"]
        if h.get("agents"):
            print(f"  human QA of {h['agents']} raised agents vs truth: weighted mean error {h['ipw']['mean_error']} "
                  f"(abs {h['ipw']['mean_abs_error']}, within 2 points {h['ipw']['within_2_points']}); unweighted "
                  f"{h['unweighted']['mean_error']} (abs {h['unweighted']['mean_abs_error']})")
            checks.append((f"{r['scenario']}/{r['seed']} weighted human QA of raised agents within 2 points on average",
                           abs(h["ipw"]["mean_error"]) <= 2))
    print("\n== targets")
    for name, ok in checks:
        print(f"  {'met   ' if ok else 'MISSED'} {name}")
    print(f"{sum(ok for _, ok in checks)} of {len(checks)} met")


if __name__ == "__main__":
    main()
