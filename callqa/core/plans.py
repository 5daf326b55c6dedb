"""Work plans for the QA team: each reviewer's day from the review queue, and the week's internal test calls.

Days and slots are each site's local time (``callqa.core.clock``): a day's review queue holds the calls
of that local day (the sampler's ``day``), and a test call's slot is a local weekday and hour; times
given out (``at``) are UTC, with the local time and zone beside them."""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from schemas import format_ms

from .clock import SiteClock
from .reviewers import Reviewer, standing_words

SLOT_HOURS = (8, 10, 12, 14, 16, 18, 20)  # two-hour slots of the opening hours (the site's local time)


COACHING = "side_by_side"  # the method that is a coaching session: the reviewer sits with the agent


def assign_reviews(queued: list[dict], reviewers: Sequence[Reviewer],
                   standing: Mapping[str, dict] | None = None) -> dict:
    """A day's queued reviews assigned to named reviewers (``callqa.core.reviewers``).

    The queue is cut into focus units: an agent's calls of one language, their side-by-side calls (coaching
    sessions) apart from the rest; units go riskiest first (then by agent id). A unit's eligible reviewers
    cover its site and speak its language (a call of unknown language: anyone of the site); for a coaching
    unit they also coach and are not outside the calibration limit (``standing``: evaluator id → the
    standing of ``reviewers.standings``). Of the eligible reviewers with room, a unit goes to one already
    following the agent, else to the one with the largest share of their capacity still free, ties by id;
    what does not fit goes on to the next. What no reviewer may take, or only full ones, is unassigned with
    the reason. Deterministic: the same queue, reviewers and standings give the same assignment.

    Returns ``plans`` (one row per reviewer and unit: why, including whom and why them, target count and
    calls), ``reviewers`` (each one's reviews, coaching sessions, capacity and standing) and ``unassigned``."""
    standing = standing or {}
    reviewers = sorted(reviewers, key=lambda r: r.id)  # the file's order does not matter
    load = {r.id: 0 for r in reviewers}
    coached = {r.id: 0 for r in reviewers}
    following: dict[str, set[str]] = defaultdict(set)
    units: dict[tuple, list[dict]] = defaultdict(list)
    for row in queued:
        units[(row["agent_id"], row["site_id"], (row.get("language") or "").lower(), row["method"] == COACHING)].append(row)
    plans, unassigned = [], []
    for (agent, site, language, coaching), rows in sorted(
            units.items(), key=lambda kv: (-max(r["risk"] for r in kv[1]), kv[0][0], kv[0][1], not kv[0][3], kv[0][2])):
        rows.sort(key=lambda r: (-r["risk"], r["call_id"]))
        eligible, refusal = _eligible(reviewers, site, language, coaching, standing)
        while rows:
            free = [r for r in eligible if load[r.id] < r.reviews_per_day]
            if not free:
                reason = refusal or (f"capacity exhausted: every reviewer eligible ({', '.join(r.id for r in eligible)}) "
                                     "is full")
                unassigned.append({"agent_id": agent, "team_id": rows[0]["team_id"], "site_id": site,
                                   "language": language, "coaching": coaching,
                                   "methods": sorted({r["method"] for r in rows}), "calls": len(rows),
                                   "call_ids": [r["call_id"] for r in rows], "reason": reason})
                break
            reviewer = min(free, key=lambda r: (r.id not in following[agent], load[r.id] / r.reviews_per_day,
                                                load[r.id] - r.reviews_per_day, r.id))
            room = reviewer.reviews_per_day - load[reviewer.id]
            why_them = _why_them(reviewer, agent, site, language, coaching, following[agent], room, standing)
            take, rows = rows[:room], rows[room:]
            load[reviewer.id] += len(take)
            coached[reviewer.id] += len(take) if coaching else 0
            following[agent].add(reviewer.id)
            methods = sorted({r["method"] for r in take})
            reasons = sorted({r.get("because") or r["reason"] for r in take})  # the reason in words, when given
            plans.append({"reviewer": reviewer.id, "reviewer_name": reviewer.name, "agent_id": agent,
                          "team_id": take[0]["team_id"], "site_id": site, "language": language, "coaching": coaching,
                          "risk": max(r["risk"] for r in take),
                          "why": f"{', '.join(methods)}; selected by {', '.join(reasons)}; {why_them}",
                          "assignment": why_them, "target": len(take), "call_ids": [r["call_id"] for r in take]})
    summary = [{"reviewer": r.id, "name": r.name, "sites": list(r.sites) if r.sites is not None else "*",
                "languages": list(r.languages) if r.languages is not None else "*", "capacity": r.reviews_per_day,
                "assigned": load[r.id], "reviews": load[r.id] - coached[r.id], "coaching_sessions": coached[r.id],
                "free": r.reviews_per_day - load[r.id], "coaches": _may_coach(r, standing),
                "standing": standing.get(r.id), "standing_words": standing_words(standing.get(r.id))}
               for r in reviewers]
    return {"plans": plans, "reviewers": summary, "unassigned": unassigned}


def _may_coach(reviewer: Reviewer, standing: Mapping[str, dict]) -> bool:
    return reviewer.coaching and not (standing.get(reviewer.id) or {}).get("outside", False)


def _eligible(reviewers: Sequence[Reviewer], site: str, language: str, coaching: bool,
              standing: Mapping[str, dict]) -> tuple[list[Reviewer], str]:
    """The reviewers who may take a unit, or none and why not."""
    covering = [r for r in reviewers if r.covers(site)]
    if not covering:
        return [], f"no reviewer covers site {site}"
    speaking = [r for r in covering if r.speaks(language)]
    if not speaking:
        return [], f"no reviewer for language {language} at site {site}"
    if not coaching:
        return speaking, ""
    able = [r for r in speaking if _may_coach(r, standing)]
    if not able:
        barred = [f"{r.id} outside the calibration limit" if r.coaching else f"{r.id} does not coach"
                  for r in sorted(speaking, key=lambda r: r.id)]
        where = f" in {language}" if language else ""
        return [], f"no reviewer may coach (side by side){where} at site {site}: {', '.join(barred)}"
    return able, ""


def _why_them(reviewer: Reviewer, agent: str, site: str, language: str, coaching: bool, following: set[str],
              room: int, standing: Mapping[str, dict]) -> str:
    """Whom a unit goes to and why them, in words."""
    parts = [f"reviews {site}" + (f" in {language}" if language else "")]
    if coaching:
        parts.append(f"may coach ({standing_words(standing.get(reviewer.id))})")
    parts.append(f"already follows {agent}" if reviewer.id in following
                 else f"most capacity free ({room} of {reviewer.reviews_per_day} reviews)")
    name = reviewer.name if reviewer.name == reviewer.id else f"{reviewer.name} ({reviewer.id})"
    return f"{'coaching' if coaching else 'review'} by {name}: {', '.join(parts)}"


def reviewer_plans(queued: list[dict], reviewers: list[str], per_reviewer: int) -> list[dict]:
    """The plans of ``assign_reviews`` for reviewers of every site and language, ``per_reviewer`` reviews a
    day each (no calibration standing): whole agents where they fit, riskiest first."""
    return assign_reviews(queued, [Reviewer(r, r, None, None, per_reviewer) for r in reviewers])["plans"]


def weekly_test_calls(week: date, agents: list[dict], new_business: list[str], failing_items: list[str],
                   calls: int, seed: int, clock: SiteClock | None = None) -> list[dict]:
    """Internal test (mystery) calls for the week starting ``week``: random agents, none twice; slots
    (weekday × two-hour slot) dealt round-robin so every slot is covered before any gets a second call,
    each call in a slot its agent works; topics alternate between new business and the items agents
    fail most. ``agents``: ``agent_id``, ``site_id``, ``hours`` (local hours of day they work). Weekdays
    and slots are the local time of the agent's site (``clock``; UTC without one)."""
    clock = clock or SiteClock()
    rng = random.Random(f"{seed}:{week.isoformat()}")
    pool = sorted(agents, key=lambda a: a["agent_id"])
    rng.shuffle(pool)
    cells = [(d, h) for d in range(7) for h in SLOT_HOURS]
    rng.shuffle(cells)
    topics = [("new_business", t) for t in new_business] + [("failing_item", t) for t in failing_items]
    plan, used = [], set()
    for i in range(min(calls, len(pool))):
        for shift in range(len(cells)):
            day, hour = cells[(i + shift) % len(cells)]
            agent = next((a for a in pool if a["agent_id"] not in used and (hour in a["hours"] or hour + 1 in a["hours"])), None)
            if agent is not None:
                break
        else:
            break
        used.add(agent["agent_id"])
        minute = rng.randrange(120)
        local_day = week + timedelta(days=day)
        at = clock.at_local(agent["site_id"], local_day, hour) + minute * 60_000
        local = datetime(local_day.year, local_day.month, local_day.day, hour, tzinfo=UTC) + timedelta(minutes=minute)
        kind, topic = topics[i % len(topics)] if topics else ("general", "general enquiry")
        plan.append({"test_call_id": f"tc-{week.isoformat()}-{i + 1:04d}", "at": format_ms(at),
                     "local": f"{local:%Y-%m-%dT%H:%M}", "timezone": clock.name(agent["site_id"]),
                     "slot": f"{local_day:%a}-{hour:02d}h", "agent_id": agent["agent_id"], "site_id": agent["site_id"],
                     "topic_kind": kind, "topic": topic})
    return sorted(plan, key=lambda p: p["at"])
