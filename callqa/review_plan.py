"""A day's review plan from the store: the day's review queue assigned to reviewers (``core.plans.assign_reviews``),
for ``callqa plan`` and the report's "Today"."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sinks import queries

from .core.plans import assign_reviews
from .core.reviewers import standings, synthetic
from .reasons import why


def daily_plan(store, config, day: str, numbers: dict[str, int] | None = None) -> dict:
    """The plan of ``day`` (YYYY-MM-DD: each site's local day, as the review queue's ``day``): ``day``,
    ``queued``, ``planned`` and ``unassigned_calls`` (counts), ``capacity`` (reviews a day, where from, in
    words), and ``assign_reviews``' ``plans`` (each with its site's ``timezone`` and ``local_times``: the
    queued calls' times HH:MM on the site's clock; ``methods`` and ``reasons``: its calls' methods and why
    each was drawn, in words), ``reviewers`` and ``unassigned``. ``numbers``: incident id → its number in
    the report (the reasons name an incident by it, as the report's review list does); else by its id."""
    columns, rows = store.query(queries.REVIEW_QUEUE_DAY.format(day=day))
    languages = dict(store.query(queries.REVIEW_QUEUE_LANGUAGES.format(day=day))[1])
    calibrated = store.query(queries.CALIBRATION_BEFORE.format(day=day))[1]  # every one: an outside standing holds
    p = config.policy
    if config.reviewers:
        reviewers = config.reviewers
        source = f"the sum of the {len(reviewers)} named reviewers' reviews_per_day (CALLQA_REVIEWERS_FILE)"
    else:
        reviewers = synthetic(p.reviewers, int(p.reviews_per_hour * p.review_hours))
        source = (f"CALLQA_QA_REVIEWERS {p.reviewers} × CALLQA_QA_REVIEWS_PER_HOUR {p.reviews_per_hour} × "
                  f"CALLQA_QA_REVIEW_HOURS {p.review_hours:g} (no CALLQA_REVIEWERS_FILE: every site and language)")
    standing = standings([
        {"evaluation_id": r[0], "call_id": r[1], "agent_id": r[2], "evaluator_id": r[3], "form_id": r[4],
         "form_version": r[5], "event_time": r[6].replace(" ", "T"),
         "items": [{"item_id": i, "score": s, "max_score": m} for i, s, m in zip(r[7], r[8], r[9])]}
        for r in calibrated], as_of=date.fromisoformat(day)) if calibrated else {}
    queued = [dict(zip(columns, r)) for r in rows]
    for r in queued:  # the draw in words: the incident (id, metrics, since), the coverage rule, the monthly minimum
        r["because"] = why(r, config.qa_monthly_target, numbers) if numbers is not None else \
            why(r, config.qa_monthly_target, ids=True)
        r["language"] = languages.get(r["call_id"], "")
    at = {r["call_id"]: r["at"] for r in queued}
    by_call = {r["call_id"]: r for r in queued}
    result = assign_reviews(queued, reviewers, standing)
    for x in result["plans"]:  # the day is the site's local day; so are the calls' times
        x["timezone"] = config.kpi.clock.name(x["site_id"])
        x["local_times"] = sorted(local_hhmm(at[c], x["timezone"]) for c in x["call_ids"] if c in at)
        x["methods"] = sorted({by_call[c]["method"] for c in x["call_ids"]})
        x["reasons"] = sorted({by_call[c]["because"] for c in x["call_ids"]})
    return {"day": day, "queued": len(rows), "planned": sum(x["target"] for x in result["plans"]),
            "unassigned_calls": sum(u["calls"] for u in result["unassigned"]),
            "capacity": {"reviews": sum(r.reviews_per_day for r in reviewers),
                         "from": "CALLQA_REVIEWERS_FILE" if config.reviewers else "CALLQA_QA_REVIEWERS", "words": source},
            **result}


def local_hhmm(stored, zone: str) -> str:
    """A stored UTC time ('2024-03-04 09:15:02.120') as HH:MM on the clock of the IANA ``zone``."""
    utc = datetime.fromisoformat(str(stored).replace(" ", "T")[:23] + "+00:00")
    return utc.astimezone(ZoneInfo(zone)).strftime("%H:%M")


def reviewer_targets(store, config, day: str, today: dict | None = None) -> list[dict]:
    """Each reviewer's monthly target to the end of ``day`` and where they stand: ``due`` is the reviews the
    daily plans (``daily_plan``) of the month's days before ``day`` assigned them — what the queue held for
    them, at most their ``reviews_per_day`` a day, so neither an idle day nor capacity nobody could use
    counts —, ``evaluated`` their human evaluations this month to the end of ``day`` (UTC; the evaluations'
    ``evaluator_id``), ``assigned_today`` the reviews ``day``'s plan (``today``, else made here) gives them.
    One row per reviewer of the plans (named, else the synthetic ``qa-01…``), furthest behind first."""
    today = today if today is not None else daily_plan(store, config, day)
    due: dict[str, int] = {r["reviewer"]: 0 for r in today["reviewers"]}
    for (earlier,) in store.query(queries.REVIEW_DAYS_OF_MONTH.format(day=day))[1]:
        for r in daily_plan(store, config, earlier)["reviewers"]:
            due[r["reviewer"]] = due.get(r["reviewer"], 0) + r["assigned"]
    evaluated = dict(store.query(queries.HUMAN_EVALUATIONS_BY_EVALUATOR.format(day=day))[1])
    out = [{"reviewer": r["reviewer"], "name": r["name"], "capacity": r["capacity"], "due": due[r["reviewer"]],
            "evaluated": int(evaluated.get(r["reviewer"], 0)), "assigned_today": r["assigned"]}
           for r in today["reviewers"]]
    for r in out:
        r["behind_by"] = max(0, r["due"] - r["evaluated"])
    return sorted(out, key=lambda r: (r["evaluated"] - r["due"], r["reviewer"]))
