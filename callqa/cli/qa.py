"""For the QA lead: the report, the reviewers' plans, test calls, evaluations against target and calibration."""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import click

from ..core.calibration import DEFAULT_THRESHOLD_PCT
from . import main
from .common import (
    UserError,
    _cannot_write,
    _config,
    _day,
    _output_file,
    _store,
    console,
    print_table,
)


@main.command()
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First day [default: six days before the last day with data].")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last day [default: the last day with data].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("callqa-report.html"),
              show_default=True)
@click.option("--title", default="callqa report", show_default=True)
@click.option("--day", "today", metavar="YYYY-MM-DD",
              help="The day the report opens with (Today: incidents, who to review and why) [default: the last day].")
def report(first, last, out, title, today) -> None:
    """Write the HTML report for a period from the configured store (embedded or server): Today first
    (open incidents with their drift charts, who to review and why, agents behind target, calibration
    outliers), then KPIs by hour, quality and drift, review rates, coverage, calibration and the agents."""
    from .. import report as reporting

    config = _config()
    first_day = _day(first, "--from") if first is not None else None  # the options first: nothing opened yet
    last_day = _day(last, "--to") if last is not None else None
    today_day = _day(today, "--day") if today is not None else None
    _output_file(out, "--out")
    store = _store(config)
    try:
        if today_day is not None:  # Today is a day the store holds calls for
            held_first, held_last = reporting.data_days(store)
            if not held_first <= today_day <= held_last:
                raise UserError(f"--day {today_day} is outside the data: the store holds calls from {held_first} "
                                f"to {held_last}")
        last_day = last_day or today_day
        if last_day is None:
            last_day = reporting.data_period(store)[1]
        first_day = first_day or date.fromordinal(last_day.toordinal() - 6)  # the seven days to the last
        if last_day < first_day:
            which = "--to" if last is not None else "--day" if today is not None else "the last day with data,"
            raise UserError(f"{which} {last_day} is before --from {first_day}")
        if today_day is not None and not first_day <= today_day <= last_day:
            raise UserError(f"--day {today_day} is outside the period --from {first_day} --to {last_day}")
        start, end = reporting.bounds(first_day, last_day)
        try:
            figures = reporting.write(store, start, end, out, title, reporting.Options.from_config(config, today_day))
        except OSError as exc:
            raise _cannot_write(out, "--out", exc) from None
    except reporting.EmptyStore as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    calls = sum(r["calls_offered"] for r in figures["sites"])
    console.print(f"wrote {out}: {first_day} to {last_day}, {len(figures['sites'])} sites, {calls} calls", soft_wrap=True)


@main.command()
@click.option("--day", required=True, help="YYYY-MM-DD: the day whose selected calls are to be reviewed (each "
                                           "site's local day, CALLQA_SITE_TIMEZONES).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plans, the reviewers and the unassigned calls as JSON.")
def plan(day: str, as_json: bool) -> None:
    """Each reviewer's plan for a day's review queue: focus agents, why, target count, and whom each goes to
    and why them; then each reviewer's reviews, coaching sessions, capacity and calibration standing, and
    what no reviewer could take. Reviewers: CALLQA_REVIEWERS_FILE (named, by site and language), else
    CALLQA_QA_REVIEWERS reviewers qa-01..., each CALLQA_QA_REVIEWS_PER_HOUR × CALLQA_QA_REVIEW_HOURS reviews."""
    from ..review_plan import daily_plan

    config = _config()
    plan_day = _day(day, "--day").isoformat()
    store = _store(config)
    try:
        out = daily_plan(store, config, plan_day)
    finally:
        store.close()
    result, queued, capacity, source = out, out["queued"], out["capacity"]["reviews"], out["capacity"]["words"]
    planned, left = out["planned"], out["unassigned_calls"]
    barred = [r["reviewer"] for r in result["reviewers"] if (r["standing"] or {}).get("outside")]
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    console.print(f"Review plans for {day}: {planned} of {queued} queued calls planned for "
                  f"{len({x['reviewer'] for x in result['plans']})} reviewers; {left} unassigned", soft_wrap=True)
    console.print(f"capacity: {capacity} reviews a day, {source}", soft_wrap=True)
    console.print(f"coaching (side by side): none for reviewers outside the calibration limit "
                  f"({', '.join(barred) if barred else 'none now'})", soft_wrap=True)
    print_table(["reviewer", "agent", "team", "site", "time zone", "language", "risk", "target", "why"],
                [(x["reviewer"], x["agent_id"], x["team_id"], x["site_id"], x["timezone"], x["language"], x["risk"],
                  x["target"], x["why"]) for x in result["plans"]],
                title=f"Review plans for {day} (each site's local day): {planned} of {queued} queued calls")
    print_table(["reviewer", "name", "sites", "languages", "capacity", "reviews", "coaching sessions", "free",
                 "calibration standing"],
                [(r["reviewer"], r["name"], ", ".join(r["sites"]) if isinstance(r["sites"], list) else r["sites"],
                  ", ".join(r["languages"]) if isinstance(r["languages"], list) else r["languages"], r["capacity"],
                  r["reviews"], r["coaching_sessions"], r["free"],
                  r["standing_words"] + ("" if r["coaches"] else ": no coaching until recalibrated inside"
                                         if (r["standing"] or {}).get("outside") else "; does not coach (coaching: false)"))
                 for r in result["reviewers"]],
                title=f"Reviewers ({capacity} reviews a day)")
    if result["unassigned"]:
        print_table(["agent", "team", "site", "language", "method", "calls", "reason"],
                    [(u["agent_id"], u["team_id"], u["site_id"], u["language"], ", ".join(u["methods"]), u["calls"],
                      u["reason"]) for u in result["unassigned"]],
                    title=f"Unassigned: {left} calls")


@main.command("test-calls")
@click.option("--week", required=True, help="YYYY-MM-DD: the first day of the week to plan (slots in each site's "
                                            "local time, CALLQA_SITE_TIMEZONES).")
@click.option("--new-business", "new_business", multiple=True, metavar="TOPIC",
              help="A new product or service the test calls should ask about (repeatable).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def test_calls(week: str, new_business: tuple[str, ...], seed: int, as_json: bool) -> None:
    """A week's internal test (mystery) calls, CALLQA_TEST_CALLS_PER_WEEK of them: agents who worked the
    four weeks before, none twice, every slot covered, topics from new business and the items failed most."""
    from sinks import queries

    from ..core.plans import weekly_test_calls

    config = _config()
    first = _day(week, "--week")
    store = _store(config)
    try:
        columns, rows = store.query(queries.ACTIVE_AGENTS.format(
            week=first.isoformat(), local_hour=queries.local_hour("answered_at", config.kpi.clock)))
        items = [item for item, _ in store.query(queries.FAILING_ITEMS.format(week=first.isoformat(), limit=5))[1]]
    finally:
        store.close()
    if not rows:
        raise UserError(f"no agent took calls in the four weeks before {first}: nothing to plan from")
    agents = [dict(zip(columns, r)) for r in rows]
    calls = weekly_test_calls(first, agents, list(new_business), items, config.test_calls_per_week, seed,
                              config.kpi.clock)
    if as_json:
        click.echo(json.dumps(calls, indent=1))
        return
    console.print(f"Test calls for the week of {first}: {len(calls)} calls to {len({c['agent_id'] for c in calls})} "
                  f"agents", soft_wrap=True)
    print_table(["id", "at (UTC)", "local time", "time zone", "slot", "agent", "site", "topic"],
                [(c["test_call_id"], c["at"], c["local"], c["timezone"], c["slot"], c["agent_id"], c["site_id"],
                  f"{c['topic_kind']}: {c['topic']}") for c in calls],
                title=f"Test calls for the week of {first} (slots in each site's local time): {len(calls)}")


def _month(month: str) -> str:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month) or not 1 <= int(month[5:]) <= 12 or not 2000 <= int(month[:4]) < 2100:
        raise UserError(f"--month {month!r}: use YYYY-MM (a month 01 to 12, from 2000 to 2099)")
    return month


@main.command()
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--json", "as_json", is_flag=True, help="Print the totals and the counts per agent as JSON.")
def evaluations(month: str, as_json: bool) -> None:
    """Human evaluations (and internal test calls) per agent in a month, against CALLQA_QA_MONTHLY_TARGET:
    the totals first, then the agents, the furthest behind first."""
    from sinks import queries

    config = _config()
    month = _month(month)
    target = config.qa_monthly_target
    store = _store(config)
    try:
        columns, rows = store.query(queries.EVALUATIONS_THIS_MONTH.format(target=target, month=month))
    finally:
        store.close()
    agents = [{**dict(zip(columns, r)), "on_target": bool(dict(zip(columns, r))["on_target"])} for r in rows]
    on_target = sum(a["on_target"] for a in agents)
    summary = {"month": month, "target": target, "human": sum(a["human"] for a in agents),
               "test_calls": sum(a["test_calls"] for a in agents), "agents_on_target": on_target,
               "agents_behind_target": len(agents) - on_target, "agents": agents}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    console.print(f"Evaluations in {month}: {summary['human']} human evaluations and {summary['test_calls']} test "
                  f"calls of {len(agents)} agents evaluated; {on_target} reached the target of {target} per agent, "
                  f"{len(agents) - on_target} are behind", soft_wrap=True)
    print_table(columns, [(*r[:-1], "yes" if a["on_target"] else "no") for r, a in zip(rows, agents)],
                title=f"Evaluations in {month} (target {target} per agent)")


@main.command()
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--expert", "experts", multiple=True, help="Evaluator id whose score is the reference (else the mean).")
@click.option("--threshold", default=DEFAULT_THRESHOLD_PCT, show_default=True, help="Flag deviations over this many percentage points.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary, each evaluator, agreement per form version and every deviation as JSON.")
def calibration(month: str, experts: tuple[str, ...], threshold: float, as_json: bool) -> None:
    """Calibration report of a month: the summary and agreement (kappa per item, ICC of totals) per form
    version first, each evaluator's mean deviation from the reference, then every call's deviations."""
    import dataclasses
    import math

    from callqa.core.calibration import by_evaluator, calibrate
    from sinks import queries

    config = _config()
    month = _month(month)
    if not math.isfinite(threshold) or not 0 <= threshold <= 100:
        raise UserError(f"--threshold {threshold!r}: a number of percentage points from 0 to 100")
    if any(not expert.strip() for expert in experts):
        raise UserError("--expert '': give an evaluator id")
    store = _store(config)
    try:
        rows = store.query(queries.CALIBRATION_EVALUATIONS.format(month=month))[1]
    finally:
        store.close()
    evaluations = [
        {"evaluation_id": r[0], "call_id": r[1], "agent_id": r[2], "evaluator_id": r[3], "form_id": r[4],
         "form_version": r[5], "event_time": r[6].replace(" ", "T"),
         "items": [{"item_id": i, "score": s, "max_score": m} for i, s, m in zip(r[7], r[8], r[9])]}
        for r in rows]
    deviations, agreement = calibrate(evaluations, frozenset(experts), threshold)
    finite = lambda x: None if isinstance(x, float) and not math.isfinite(x) else x  # JSON has no NaN
    agreement = [{**row, "icc_total": finite(row["icc_total"]), "kappa": {k: finite(v) for k, v in row["kappa"].items()}}
                 for row in agreement]
    evaluators = by_evaluator(deviations)
    reference = f"expert {', '.join(sorted(experts))}" if experts else "each call's mean"
    summary = {"month": month, "reference": "expert" if experts else "mean", "experts": sorted(experts),
               "threshold_pct": threshold, "calls": len({d.call_id for d in deviations}), "scores": len(deviations),
               "flagged": sum(d.flagged for d in deviations), "evaluators": evaluators, "agreement": agreement,
               "deviations": [dataclasses.asdict(d) for d in deviations]}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    if not deviations:
        console.print(f"no calls scored by two or more evaluators in {month}")
        return
    console.print(f"Calibration {month}: {summary['calls']} calls scored by two or more evaluators, {len(deviations)} "
                  f"scores against {reference}; {summary['flagged']} deviate by more than {threshold:g} points",
                  soft_wrap=True)
    for row in agreement:
        console.print(f"{row['form_id']} {row['form_version']}: {row['calls']} calls, evaluators "
                      f"{', '.join(row['evaluators'])}, ICC(2,1) of totals {row['icc_total']}", soft_wrap=True)
    print_table(["evaluator", "calls", "mean deviation", "mean |deviation|", "flagged"],
                [tuple(e.values()) for e in evaluators], title="Evaluators (points from the reference)")
    for row in agreement:
        print_table(["item", "kappa"], sorted(row["kappa"].items()),
                    title=f"{row['form_id']} {row['form_version']}: agreement per item")
    print_table(["call", "evaluator", "form version", "score %", "reference %", "deviation", "flagged"],
                [(d.call_id, d.evaluator_id, d.form_version, d.pct, d.reference_pct, d.deviation,
                  "FLAG" if d.flagged else "") for d in deviations], title=f"Calibration {month}: every score")
