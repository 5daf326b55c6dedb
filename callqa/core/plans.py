"""Work plans for the QA team: each reviewer's day from the review queue, and the week's internal test calls."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

SLOT_HOURS = (8, 10, 12, 14, 16, 18, 20)  # two-hour slots of the opening hours (UTC, as the simulator's clock)


def reviewer_plans(queued: list[dict], reviewers: list[str], per_reviewer: int) -> list[dict]:
    """Split a day's queued reviews into reviewers' plans: whole agents (one reviewer follows an agent),
    riskiest agents first, each to the least-loaded reviewer with room. One row per reviewer and focus
    agent: why (methods and reasons), target count and the calls. Reviews beyond capacity stay unplanned."""
    by_agent: dict[str, list[dict]] = defaultdict(list)
    for row in queued:
        by_agent[row["agent_id"]].append(row)
    load = {r: 0 for r in reviewers}
    plans = []
    for agent, rows in sorted(by_agent.items(), key=lambda kv: (-max(r["risk"] for r in kv[1]), kv[0])):
        rows.sort(key=lambda r: (-r["risk"], r["call_id"]))
        while rows:
            reviewer = min(reviewers, key=lambda r: (load[r], r))
            room = per_reviewer - load[reviewer]
            if room <= 0:
                return plans
            take, rows = rows[:room], rows[room:]
            load[reviewer] += len(take)
            methods = sorted({r["method"] for r in take})
            reasons = sorted({r["reason"] for r in take})
            plans.append({"reviewer": reviewer, "agent_id": agent, "team_id": take[0]["team_id"],
                          "site_id": take[0]["site_id"], "risk": max(r["risk"] for r in take),
                          "why": f"{', '.join(methods)}; selected by {', '.join(reasons)}",
                          "target": len(take), "call_ids": [r["call_id"] for r in take]})
    return plans


def weekly_test_calls(week: date, agents: list[dict], new_business: list[str], failing_items: list[str],
                   calls: int, seed: int) -> list[dict]:
    """Internal test (mystery) calls for the week starting ``week``: random agents, none twice; slots
    (weekday × two-hour slot) dealt round-robin so every slot is covered before any gets a second call,
    each call in a slot its agent works; topics alternate between new business and the items agents
    fail most. ``agents``: ``agent_id``, ``site_id``, ``hours`` (hours of day they work)."""
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
        at = datetime(week.year, week.month, week.day, tzinfo=UTC) + timedelta(days=day, hours=hour, minutes=minute)
        kind, topic = topics[i % len(topics)] if topics else ("general", "general enquiry")
        plan.append({"test_call_id": f"tc-{week.isoformat()}-{i + 1:04d}", "at": at.strftime("%Y-%m-%dT%H:%M:00.000Z"),
                     "slot": f"{at:%a}-{hour:02d}h", "agent_id": agent["agent_id"], "site_id": agent["site_id"],
                     "topic_kind": kind, "topic": topic})
    return sorted(plan, key=lambda p: p["at"])
