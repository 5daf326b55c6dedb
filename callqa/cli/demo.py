"""For someone trying callqa out or weighing it: the demo and the evaluation, on simulated traffic."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from . import main
from .common import (
    UserError,
    _cannot_write,
    _config,
    _day,
    _drift_specs,
    _embedded_pipeline,
    _output_file,
    _progress,
    _simulator,
    _store,
    console,
    print_table,
)

DEMO_START = date(2024, 3, 4)  # a Monday


def _demo_drifts(sites: int) -> tuple[str, ...]:
    """A team's QA drops on day 3, another team stops apologising after holds from midday on day 2, a
    site's calls grow 40% longer after a system change on day 5."""
    return ("qa:team=site-1/team-1,delta=-18,from=+2", f"apology:team=site-{min(2, sites)}/team-1,from=+1.5",
            f"aht:site=site-{sites},factor=1.4,from=+4")


@main.command()
@click.option("--sites", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--agents-per-site", default=15, show_default=True, type=click.IntRange(5, 300))
@click.option("--days", default=7, show_default=True, type=click.IntRange(2, 31))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report [default: CALLQA_DATA_DIR/demo/report.html].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(sites, agents_per_site, days, seed, report_path, as_json) -> None:
    """What callqa is for, in a minute: simulated multi-site traffic with injected quality drifts runs
    through the real processors into a fresh embedded store (CALLQA_DATA_DIR/demo); prints per-site KPIs,
    the drifts and when they were detected, review-rate changes and why, the review queue and alerts,
    and writes the HTML report. No servers needed."""
    import dataclasses
    import shutil

    from sinks import queries
    from sources.simulator import SimConfig

    from .. import report as reporting
    from ..evaluation import detections
    from ..ingest import EmbeddedTarget

    config = _config()
    folder = config.data_dir / "demo"
    if report_path is not None:
        _output_file(report_path, "--report")
    shutil.rmtree(folder, ignore_errors=True)
    local = dataclasses.replace(config, data_dir=folder, clickhouse_url=None, kafka_bootstrap_servers=None)
    specs = _drift_specs(_demo_drifts(sites), DEMO_START)
    sim = _simulator(SimConfig(sites, agents_per_site, days, DEMO_START, seed, specs, config.caller_hash_key,
                               clock=config.kpi.clock, reviewers=config.reviewers))
    store = _store(local)
    target = EmbeddedTarget(_embedded_pipeline(local, store))
    with _progress(disable=as_json) as progress:
        task = progress.add_task(f"demo: {sites} sites × {agents_per_site} agents, {days} days", total=days + 1)
        today = None
        for event in sim.events():
            if event["event_time"][:10] != today:
                today = event["event_time"][:10]
                progress.update(task, completed=min((date.fromisoformat(today) - DEMO_START).days, days))
            target.event(event, "demo", event["event_id"])
        progress.update(task, description="demo: writing the store and the report")
        target.close()
        start, end = reporting.bounds(DEMO_START, date.fromordinal(DEMO_START.toordinal() + days - 1))
        path = report_path or folder / "report.html"
        try:
            figures = reporting.write(store, start, end, path, f"callqa demo: {sites} sites, {days} days",
                                      reporting.Options.from_config(config))
            opened = reporting.rows(store, queries.DRIFTS_OPENED, start, end,
                                    {"site": [f["site_id"] for f in figures["sites"]]})
        except OSError as exc:
            raise _cannot_write(path, "--report" if report_path else "the report (CALLQA_DATA_DIR)", exc) from None
        finally:
            store.close()
    found, _ = detections(specs, [{**a, "at": a["opened"]} for a in opened], {a.id: a for a in sim.agents})
    summary = {
        "sites": figures["sites"], "drifts": found, "rate_changes": figures["rates"],
        "review_queue": sum(r["queued"] for r in figures["queue"]),
        "alerts_opened": {kind: sum(a["opened"] for a in figures["alerts"] if a["kind"] == kind)
                          for kind in ("incident", "drift", "threshold")},
        "report": str(path), "store": str(folder),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
        return
    print_table(["site", "calls", "service level", "ASA s", "abandoned", "AHT s", "human QA %", "auto QA %"],
                [(r["site_id"], r["calls_offered"], f"{r['service_level']:.1%}", r["asa_s"], f"{r['abandon_rate']:.1%}",
                  r["aht_s"], r["qa_human_pct"], r["qa_auto_pct"]) for r in figures["sites"]],
                title=f"{sites} sites × {agents_per_site} agents, {days} days from {DEMO_START}")
    print_table(["injected drift", "scope", "from", "detected", "after (h)", "by"],
                [(d["kind"], d["scope_id"], d["from"][:16], (d["detected_at"] or "not detected")[:16], d["delay_hours"],
                  d["detected_by"]) for d in found], title="Quality drifts and when callqa detected them")
    changes = sorted(figures["rates"], key=lambda r: -r["rate"])
    print_table(["agent", "team", "review rate", "change", "because of"],
                [(r["agent_id"], r["team_id"], f"{r['rate']:.1%}", f"{r['cause']}: {r['factors_changed']}",
                  r["because"] or r["signal"]) for r in changes[:10]],
                title=f"Review rates changed for {len(changes)} agents (highest 10)")
    console.print(f"{summary['review_queue']} calls queued for review; opened: "
                  f"{summary['alerts_opened']['incident']} quality incidents (from {summary['alerts_opened']['drift']} "
                  f"series alarms), {summary['alerts_opened']['threshold']} service-threshold alerts", soft_wrap=True)
    console.print(f"report: {path}\nstore:  {folder} (e.g. CALLQA_DATA_DIR={folder} callqa plan --day "
                  f"{date.fromordinal(DEMO_START.toordinal() + days - 1)})", soft_wrap=True)


@main.command()
@click.option("--sites", default=2, show_default=True, type=click.IntRange(1, 50))
@click.option("--agents-per-site", default=30, show_default=True, type=click.IntRange(1, 5000))
@click.option("--days", default=28, show_default=True, type=click.IntRange(1, 366))
@click.option("--start", default="2024-03-04", show_default=True, help="First day (YYYY-MM-DD, UTC).")
@click.option("--seed", default=3, show_default=True, type=int)
@click.option("--drift", "drifts", multiple=True, metavar="SPEC",
              help="Injected drift (as for simulate); default: a QA drop on a team (day 8), an agent who stops "
                   "apologising (day 10), +40% handle time on a team (day 15).")
@click.option("--no-drift", is_flag=True, help="Inject no drift (false alarms and policies on a quiet center).")
@click.option("--control/--no-control", default=True, show_default=True,
              help="With drifts, also run the same center without them.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def evaluate(sites, agents_per_site, days, start, seed, drifts, no_drift, control, as_json) -> None:
    """Measure drift detection (delay, placebo, false alarms and incidents per agent-month, notices
    per incident, rate raises caused by real drifts) and adaptive sampling against uniform and
    tenure × tier weighted fixed-N policies of the same review budget, on simulated traffic with ground
    truth (no store used); with drifts, also on the same center without them."""
    from sources.simulator import SimConfig

    from ..evaluation import default_drifts
    from ..evaluation import evaluate as run_evaluation

    config = _config()
    first_day = _day(start, "--start")
    specs = () if no_drift else _drift_specs(drifts or default_drifts(first_day, sites), first_day)
    sim = SimConfig(sites, agents_per_site, days, first_day, seed, specs)
    try:
        _simulator(sim)
    except UserError as exc:
        if drifts or no_drift:
            raise
        raise UserError(f"{exc.message}: a default drift does not fit a center this small; pass --drift SPEC "
                        "or --no-drift") from None
    with _progress(disable=as_json) as progress:
        task = progress.add_task("evaluate (events)", total=None)
        result = run_evaluation(sim, config.policy, seed, lambda n: progress.update(task, completed=n), control)
    figures = result.as_dict()
    if as_json:
        click.echo(json.dumps(figures, indent=1))
        return
    if figures["drifts"]:
        print_table(["drift", "scope", "from", "first alarm", "h from start", "h of operation", "by", "incidents",
                     "notices"],
                    [(d["kind"], d["scope_id"], d["from"][:16], (d["detected_at"] or "not detected")[:16],
                      d["delay_hours"], d["delay_operating_hours"], d["detected_by"], d["incidents"],
                      d["notices_per_incident"]) for d in figures["drifts"]], title="Injected drifts")
        print_table(["placebo for", "scope", "alarmed", "by"],
                    [(d["placebo_for"], d["scope_id"], (d["detected_at"] or "no")[:16], d["detected_by"])
                     for d in figures["placebos"]], title="Placebos: the same rule on an untouched scope")
    for name, f in (("", figures), ("without drifts: ", figures.get("control"))):
        if f is None:
            continue
        fa, fi = f["false_alarms_per_agent_month"], f["false_incidents_per_agent_month"]
        console.print(f"{name}false alarms per agent-month: {fa['all']} (agent {fa['agent']}, team {fa['team']}, site "
                      f"{fa['site']}); false incidents per agent-month: {fi['all']}; drift-caused rate raises "
                      f"{f['rate_raises']['drift_raises']}, from real drifts {f['rate_raises']['real_share']}",
                      soft_wrap=True)
        p = f["policies"]
        names = ("adaptive", "fixed_n_uniform", "fixed_n_weighted")
        print_table(["policy", "reviews", "poor calls found", "share poor"],
                    [(n, p[n]["reviews"], p[n]["poor_found"], p[n]["poor_share"]) for n in names],
                    title=f"{name}poor calls put in front of a reviewer ({p['poor_calls']} poor of {p['calls']} "
                          f"recorded; adaptive / weighted {p['adaptive_vs_weighted']})")
