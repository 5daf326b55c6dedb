"""How well drift detection and adaptive sampling work, measured on simulated traffic with ground truth.

The simulator's events run through the stage graph in one process (``LocalGraph``, as the embedded
runner does, without a store). Per injected drift: the first series alarm and incident on a
matching scope (the drift's scope, an entity inside it or the one just above it, on a metric the
drift moves), the delay from the drift's start and from its first affected call, the notices of its
incidents; and a *placebo*: the same rule on an untouched scope of the same level. False alarms are
series alarms and incidents that match no drift, by level, per agent-month. Rate raises caused by
incidents are split into real (a matching incident) and false.

Then the adaptive policy's reviews are compared at the same budget (the number of calls it queued)
with two fixed-N policies: *uniform* (the same number for every agent) and *weighted* (a quota per
agent proportional to the policy's tenure × tier factors, as commercial suites allow); calls are drawn
at random within an agent. The figure is how many calls the ground truth marks as poor each puts in
front of a reviewer. With drifts, the same center is also run without them (``control``).

The loop is closed: human evaluations are only of the calls the policy queued, submitted by the
reviewers the next working day with the call's inclusion probability, so adaptive selection feeds
back into the QA figures and charts; ``human_qa_bias`` checks the weighted averages of raised agents.
"""
from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date

from schemas import time_ms
from sources.simulator import DriftSpec, SimConfig, Simulator

from .core.kpi import KpiConfig
from .core.local import LocalGraph
from .core.sampling import DAY_MS, PolicyConfig, tenure_factor

HOUR_MS = 3_600_000

# metrics each kind of injected drift moves (a QA drop also moves customer sentiment)
MOVES = {"qa": {"qa_human", "sentiment_negative"},
         "apology": {"qa_human", "item:waiting.apology_after_hold"},
         "aht": {"handle_s"}, "hold": {"hold_s", "handle_s"}, "transfer": {"transferred"}}
LEVELS = ("agent", "team", "site")
NOTICES = ("open", "widened", "narrowed", "closed", "merged")  # "updated" (a later widening) is not a notice
DEFAULT_DRIFTS = ("qa:team=site-1/team-2,delta=-15,from={d8}", "apology:agent=site-2-a0007,from={d10}",
                  "aht:team=site-2/team-1,factor=1.4,from={d15}")


@dataclass
class Evaluation:
    agents: int
    days: int
    events: int = 0
    drifts: list[dict] = field(default_factory=list)
    placebos: list[dict] = field(default_factory=list)
    false_alarms: dict = field(default_factory=dict)  # series alarms matching no drift, by level
    false_incidents: dict = field(default_factory=dict)
    false_by_series: dict = field(default_factory=dict)
    alarms: int = 0
    incidents: int = 0
    rate_raises: dict = field(default_factory=dict)
    human_qa: dict = field(default_factory=dict)
    policies: dict = field(default_factory=dict)
    control: "Evaluation | None" = None

    @property
    def agent_months(self) -> float:
        return self.agents * self.days / 30

    def as_dict(self) -> dict:
        per = lambda counts: {k: round(v / self.agent_months, 4) for k, v in counts.items()} | {
            "all": round(sum(counts.values()) / self.agent_months, 4)}
        out = {"agents": self.agents, "days": self.days, "events": self.events, "drifts": self.drifts,
               "placebos": self.placebos, "alarms": self.alarms, "incidents": self.incidents,
               "false_alarms": dict(self.false_alarms), "false_alarms_per_agent_month": per(self.false_alarms),
               "false_incidents": dict(self.false_incidents),
               "false_incidents_per_agent_month": per(self.false_incidents),
               "false_alarms_by_series": dict(sorted(self.false_by_series.items())),
               "rate_raises": self.rate_raises, "human_qa_of_raised_agents": self.human_qa, "policies": self.policies}
        if self.control is not None:
            out["control"] = self.control.as_dict()
        return out


def default_drifts(start: date, sites: int = 2) -> tuple[str, ...]:
    """The default drifts, on site-2 or (a one-site center) site-1."""
    day = lambda n: date.fromordinal(start.toordinal() + n).isoformat()
    second = f"site-{min(2, sites)}"
    return tuple(d.format(d8=day(7), d10=day(9), d15=day(14)).replace("site-2", second) for d in DEFAULT_DRIFTS)


def evaluate(sim_config: SimConfig, policy: PolicyConfig = PolicyConfig(), seed: int = 1,
             progress: Callable[[int], None] = lambda events: None, control: bool = True) -> Evaluation:
    """One scenario; with drifts and ``control``, also the same center without them."""
    result = _run(sim_config, policy, seed, progress)
    if control and sim_config.drifts:
        result.control = _run(replace(sim_config, drifts=()), policy, seed, progress)
    return result


def _run(sim_config: SimConfig, policy: PolicyConfig, seed: int, progress: Callable[[int], None]) -> Evaluation:
    sim = Simulator(replace(sim_config, closed_loop=True))
    graph = LocalGraph({}, KpiConfig(), policy, b"evaluation")
    agents = {a.id: a for a in sim.agents}
    result = Evaluation(agents=len(agents), days=sim_config.days)
    alerts: list[dict] = []
    raises: list[dict] = []
    calls_of: dict[str, list[str]] = defaultdict(list)
    reviewed: set[str] = set()
    probability: dict[str, float] = {}
    human: dict[str, list[tuple[float, float]]] = defaultdict(list)  # agent → (QA %, inclusion probability)
    first_call = {i: None for i in range(len(sim_config.drifts))}
    working: dict[int, list[int]] = {i: [] for i in range(len(sim_config.drifts))}  # hours the scope took calls

    def collect(out) -> None:
        alerts.extend(a for a in out.rows.get("alerts", ()) if a["kind"] in ("drift", "incident"))
        raises.extend(r for r in out.rows.get("sampling_rates", ()) if r["cause"] == "raised" and r["signal_kind"].startswith("drift:"))
        for d in out.rows.get("sampling_decisions", ()):
            if d["version"] == 1:
                calls_of[d["agent_id"]].append(d["call_id"])
            if d["selected"]:  # as selected, then revised once its day's capacity cut is known
                probability[d["call_id"]] = d["probability"]
        for e in out.rows.get("evaluations", ()):
            if e["kind"] == "human":
                human[e["agent_id"]].append((e["pct"], e["inclusion_probability"]))
        for r in out.rows.get("review_queue", ()):
            (reviewed.add if r["status"] == "queued" else reviewed.discard)(r["call_id"])

    due: list[tuple[int, str]] = []  # (when, call): reviews of queued calls, submitted the next working day
    scheduled: set[str] = set()
    day = reviews_day = None
    for event in sim.events():
        result.events += 1
        t = time_ms(event["event_time"])
        if due and due[0][0] <= t and reviews_day != day:  # the day's first review: yesterday's cut is known
            reviews_day = day
            collect(graph.flush())
        while due and due[0][0] <= t:
            at, call = heapq.heappop(due)
            review = sim.review(call, probability.get(call, 1.0), at)
            if review is not None:
                graph.feed(review, "reviews", call)
        if event["event_time"][:10] != day:  # a new day: yesterday's queue goes to the reviewers
            day = event["event_time"][:10]
            collect(graph.flush())
            start = t - t % DAY_MS
            for call in sorted(reviewed - scheduled):
                scheduled.add(call)
                heapq.heappush(due, (start + int((9 + 8 * random.Random(f"{seed}:{call}").random()) * 3_600_000), call))
        if event["event_type"] == "call.answered":
            for i, spec in enumerate(sim_config.drifts):
                if spec.applies(agents[event["agent_id"]], t):
                    first_call[i] = first_call[i] or t
                    if not working[i] or working[i][-1] != t // HOUR_MS:
                        working[i].append(t // HOUR_MS)
        graph.feed(event, "simulation", str(result.events))
        if result.events % 10_000 == 0:
            progress(result.events)
            collect(graph.flush())
    collect(graph.idle())
    progress(result.events)

    alarms = [a for a in alerts if a["kind"] == "drift" and a["status"] == "open"]
    incidents = [a for a in alerts if a["kind"] == "incident"]
    result.alarms, result.incidents = len(alarms), sum(a["status"] == "open" for a in incidents)
    result.drifts, matched = detections(sim_config.drifts, alerts, agents, first_call, working)
    result.placebos = [d | {"placebo_for": f"{spec.kind}:{spec.scope_id}"}
                       for spec, placebo in zip(sim_config.drifts, placebos(sim_config.drifts, agents))
                       if placebo is not None for d in detections([placebo], alerts, agents, within_only=True)[0]]
    result.false_alarms = Counter({level: 0 for level in LEVELS})
    result.false_incidents = Counter({level: 0 for level in LEVELS})
    for a in alarms:
        if a["alert_id"] not in matched:
            result.false_alarms[a["level"]] += 1
            series = f"{a['level']}:{a['metric']}"
            result.false_by_series[series] = result.false_by_series.get(series, 0) + 1
    for a in incidents:
        if a["status"] == "open" and a["alert_id"] not in matched:
            result.false_incidents[a["level"]] += 1
    real = sum(r["signal_id"].rsplit("|", 1)[0] in matched for r in raises)
    result.rate_raises = {"drift_raises": len(raises), "caused_by_real_drifts": real,
                          "real_share": round(real / len(raises), 4) if raises else None}

    result.human_qa = human_qa_bias({r["agent_id"] for r in raises}, human, sim.truth.qa_pct)
    poor = set(sim.truth.poor_calls)
    budget = len(reviewed)
    rng = random.Random(seed)
    uniform = _fixed_n(calls_of, {a: 1.0 for a in calls_of}, budget, rng)
    weights = {a: _weight(agents[a], sim_config.start, policy) if a in agents else 1.0 for a in calls_of}
    weighted = _fixed_n(calls_of, weights, budget, rng)
    for name, chosen in (("adaptive", reviewed), ("fixed_n_uniform", uniform), ("fixed_n_weighted", weighted)):
        found = len(chosen & poor)
        result.policies[name] = {"reviews": len(chosen), "poor_found": found,
                                 "poor_share": round(found / len(chosen), 4) if chosen else 0.0}
    best = result.policies["fixed_n_weighted"]["poor_found"]
    result.policies["adaptive_vs_weighted"] = round(result.policies["adaptive"]["poor_found"] / best, 3) if best else None
    result.policies["calls"] = sum(len(c) for c in calls_of.values())
    result.policies["poor_calls"] = len(poor)
    return result


def human_qa_bias(raised: set[str], human: dict[str, list[tuple[float, float]]], truth: dict[str, list]) -> dict:
    """For the agents whose rate a drift raised: their human-QA average from the reviewed calls,
    weighted by inverse inclusion probability (as callqa stores it) and unweighted, against the mean
    a reviewer would have given over all their calls (the simulator's truth). Signed mean error and
    mean absolute error in points; share of agents within 2 points."""
    rows = []
    for agent in sorted(raised):
        evaluations, (total, n) = human.get(agent, []), truth.get(agent, (0.0, 0))
        if len(evaluations) < 5 or not n:
            continue
        true = total / n
        ipw = sum(pct / p for pct, p in evaluations) / sum(1 / p for _, p in evaluations)
        plain = sum(pct for pct, _ in evaluations) / len(evaluations)
        rows.append((ipw - true, plain - true))
    if not rows:
        return {"agents": 0}
    figure = lambda i: {"mean_error": round(sum(r[i] for r in rows) / len(rows), 2),
                        "mean_abs_error": round(sum(abs(r[i]) for r in rows) / len(rows), 2),
                        "within_2_points": round(sum(abs(r[i]) <= 2 for r in rows) / len(rows), 3)}
    return {"agents": len(rows), "ipw": figure(0), "unweighted": figure(1)}


def detections(specs, alerts: list[dict], agents: dict, first_call: dict | None = None, working: dict | None = None,
               within_only: bool = False) -> tuple[list[dict], set[str]]:
    """Per injected drift: the first matching series alarm and incident, delays (hours from the
    drift's start and from its first affected call, and hours of operation: the hours in which the
    drifting scope took calls, ``working``), the number of matching incidents and their
    notices; and the ids of every matching alarm and incident. ``within_only``: only alarms inside the
    drift's scope count (placebos: the scope above holds the real drift)."""
    found, matched = [], set()
    notices = Counter(a["alert_id"] for a in alerts if a.get("kind") == "incident" and a["status"] in NOTICES)
    first_call = first_call or {}
    for i, spec in enumerate(specs):
        hits = sorted(((time_ms(a["at"]), a) for a in alerts
                       if a["status"] in ("open", "widened", "narrowed") and _matches(a, spec, agents, within_only)),
                      key=lambda hit: hit[0])
        matched.update(a["alert_id"] for _, a in hits)
        alarm = next((h for h in hits if h[1].get("kind", "drift") == "drift"), None)
        incident_ids = sorted({a["alert_id"] for _, a in hits if a.get("kind") == "incident"})
        affected = first_call.get(i) or spec.start_ms
        hours = lambda hit, since: round((hit[0] - since) / 3_600_000, 2) if hit else None
        found.append({**spec.truth(),
                      "detected_at": alarm[1]["at"] if alarm else None,
                      "delay_hours": hours(alarm, spec.start_ms), "delay_from_first_call_hours": hours(alarm, affected),
                      "delay_operating_hours": _operating(alarm[0], working[i]) if alarm and working else None,
                      "detected_by": f"{alarm[1]['level']}:{alarm[1]['entity_id']}:{alarm[1]['metric']}" if alarm else None,
                      "matching_alarms": sum(h[1].get("kind", "drift") == "drift" for h in hits),
                      "incidents": len(incident_ids),
                      "notices_per_incident": max((notices[n] for n in incident_ids), default=0)})
    return found, matched


def _operating(at_ms: int, hours: list[int]) -> float:
    """Hours of operation before ``at_ms``: the hours with calls, the last one in part."""
    done = [h for h in hours if (h + 1) * HOUR_MS <= at_ms]
    current = at_ms - at_ms % HOUR_MS
    return round(len(done) + ((at_ms - current) / HOUR_MS if current // HOUR_MS in hours else 0.0), 2)


def placebos(specs, agents: dict) -> list[DriftSpec | None]:
    """Per drift, the same drift on an untouched scope of the same level (none when every one is touched)."""
    touched = lambda a: any(s.in_scope(a) for s in specs)
    clean_teams = sorted({a.team for a in agents.values()} - {a.team for a in agents.values() if touched(a)})
    clean_sites = sorted({a.site for a in agents.values()} - {a.site for a in agents.values() if touched(a)})
    out = []
    for spec in specs:
        pool = {"agent": [a.id for a in sorted(agents.values(), key=lambda a: a.id) if a.team in clean_teams],
                "team": clean_teams, "site": clean_sites}[spec.scope_level]
        out.append(replace(spec, scope_id=pool[0]) if pool else None)
    return out


def _matches(alert: dict, spec: DriftSpec, agents: dict, within_only: bool = False) -> bool:
    """An alarm or incident notice at or after the drift's start (and before it ended, plus a day), on a
    metric it moves, on an entity that contains the drifting scope or lies inside it (a team's drift
    seen on its site or on one of its agents)."""
    at = time_ms(alert["at"])
    if at < spec.start_ms or (spec.end_ms is not None and at > spec.end_ms + DAY_MS):
        return False
    if not set(alert["metric"].split(",")) & MOVES[spec.kind]:
        return False
    return _within(alert["level"], alert["entity_id"], spec, agents) or (
        not within_only and _contains(alert["level"], alert["entity_id"], spec, agents))


def _within(level: str, entity: str, spec: DriftSpec, agents: dict) -> bool:
    if (level, entity) == (spec.scope_level, spec.scope_id):
        return True
    if level == "agent":
        return entity in agents and spec.in_scope(agents[entity])
    return level == "team" and spec.scope_level == "site" and entity.split("/")[0] == spec.scope_id


def _contains(level: str, entity: str, spec: DriftSpec, agents: dict) -> bool:
    """One level up: a team's drift on its site, an agent's on their team."""
    if spec.scope_level == "team":
        return level == "site" and entity == spec.scope_id.split("/")[0]
    return spec.scope_level == "agent" and level == "team" and spec.scope_id in agents and agents[spec.scope_id].team == entity


def _weight(agent, start: date, policy: PolicyConfig) -> float:
    """The weighted quota's weight of an agent: the policy's tenure × tier factors at the period's start."""
    return tenure_factor((start - agent.hire).days, policy) * policy.tier_factor.get(agent.tier, 1.0)


def _fixed_n(calls_of: dict[str, list[str]], weights: dict[str, float], budget: int, rng: random.Random) -> set[str]:
    """``budget`` reviews shared by agents in proportion to ``weights`` (largest remainders; what an
    agent cannot fill goes to the others), each agent's calls drawn at random."""
    agents = sorted(calls_of)
    if not agents:
        return set()
    total = sum(weights[a] for a in agents)
    exact = {a: budget * weights[a] / total for a in agents}
    quota = {a: min(int(exact[a]), len(calls_of[a])) for a in agents}
    left = budget - sum(quota.values())
    for a in sorted(agents, key=lambda a: (-(exact[a] - int(exact[a])), rng.random())):
        if left <= 0:
            break
        if quota[a] < len(calls_of[a]):
            quota[a] += 1
            left -= 1
    chosen: set[str] = set()
    for a in agents:
        chosen.update(rng.sample(calls_of[a], quota[a]))
    return chosen
