"""How well drift detection and adaptive sampling work, measured on simulated traffic with ground truth.

The simulator's events run through the stage graph in one process (``LocalGraph``, as the embedded
runner does, without a store). Per injected drift: when the first alert on a matching series opened
(the drift's scope, an entity inside it or the one just above it, on a metric the drift moves, in the
worse direction) and the delay from the drift's start; false alarms are quality alerts that match no
drift, per agent-month (site and queue service-level and abandonment alerts are counted apart:
staffing moves them, not the agents' quality). Then the adaptive policy's reviews are compared with a
fixed-N policy of the same budget (the same number of reviews, spread evenly over agents, calls drawn
at random — what commercial suites do): how many of the calls the ground truth marks as poor each
puts in front of a reviewer.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from schemas import time_ms
from sources.simulator import DriftSpec, SimConfig, Simulator

from .core.kpi import KpiConfig
from .core.local import LocalGraph
from .core.monitor import WORSE
from .core.sampling import PolicyConfig

# metrics each kind of injected drift moves
MOVES = {"qa": {"qa_human", "qa_auto", "sentiment_negative"}, "apology": {"qa_auto", "qa_human"}, "aht": {"handle_s"}}
SERVICE = {"service_level", "abandoned"}  # site/queue service series: moved by staffing, not by agents' quality
DEFAULT_DRIFTS = ("qa:team=site-1/team-2,delta=-15,from={d8}", "apology:agent=site-2-a0007,from={d10}",
                  "aht:team=site-2/team-1,factor=1.4,from={d15}")


@dataclass
class Evaluation:
    agents: int
    days: int
    events: int = 0
    drifts: list[dict] = field(default_factory=list)
    false_alarms: int = 0
    false_alarms_agent_level: int = 0
    service_alarms: int = 0
    false_by_series: dict = field(default_factory=dict)
    alerts_opened: int = 0
    rate_changes: int = 0
    policies: dict = field(default_factory=dict)

    @property
    def agent_months(self) -> float:
        return self.agents * self.days / 30

    def as_dict(self) -> dict:
        return {"agents": self.agents, "days": self.days, "events": self.events, "drifts": self.drifts,
                "alerts_opened": self.alerts_opened, "false_alarms": self.false_alarms,
                "service_alerts_unrelated_to_drifts": self.service_alarms,
                "false_alarms_by_series": dict(sorted(self.false_by_series.items())),
                "false_alarms_per_agent_month": round(self.false_alarms / self.agent_months, 4),
                "agent_level_false_alarms_per_agent_month": round(self.false_alarms_agent_level / self.agent_months, 4),
                "rate_changes": self.rate_changes, "policies": self.policies}


def default_drifts(start: date) -> tuple[str, ...]:
    day = lambda n: date.fromordinal(start.toordinal() + n).isoformat()
    return tuple(d.format(d8=day(7), d10=day(9), d15=day(14)) for d in DEFAULT_DRIFTS)


def evaluate(sim_config: SimConfig, policy: PolicyConfig = PolicyConfig(), seed: int = 1,
             progress: Callable[[int], None] = lambda events: None) -> Evaluation:
    sim = Simulator(sim_config)
    graph = LocalGraph({}, KpiConfig(), policy, b"evaluation")
    agents = {a.id: a for a in sim.agents}
    result = Evaluation(agents=len(agents), days=sim_config.days)
    opened: list[dict] = []
    calls_of: dict[str, list[str]] = defaultdict(list)
    reviewed: set[str] = set()

    def collect(out) -> None:
        opened.extend(a for a in out.rows.get("alerts", ()) if a["status"] == "open" and a["kind"] == "drift")
        result.rate_changes += sum(r["cause"] != "initial" for r in out.rows.get("sampling_rates", ()))
        for d in out.rows.get("sampling_decisions", ()):
            if d["version"] == 1:
                calls_of[d["agent_id"]].append(d["call_id"])
        for r in out.rows.get("review_queue", ()):
            (reviewed.add if r["status"] == "queued" else reviewed.discard)(r["call_id"])

    for event in sim.events():
        result.events += 1
        graph.feed(event, "simulation", str(result.events))
        if result.events % 10_000 == 0:
            progress(result.events)
            collect(graph.flush())
    collect(graph.idle())
    progress(result.events)

    result.alerts_opened = len(opened)
    result.drifts, matched = detections(sim_config.drifts, opened, agents)
    false = [a for a in opened if a["alert_id"] not in matched]
    result.false_alarms = sum(a["metric"] not in SERVICE for a in false)
    result.false_alarms_agent_level = sum(a["level"] == "agent" for a in false)
    result.service_alarms = len(false) - result.false_alarms
    for a in false:
        series = f"{a['level']}:{a['metric']}"
        result.false_by_series[series] = result.false_by_series.get(series, 0) + 1

    poor = set(sim.truth.poor_calls)
    budget = len(reviewed)
    fixed = _fixed_n(calls_of, budget, random.Random(seed))
    total_calls = sum(len(c) for c in calls_of.values())
    for name, chosen in (("adaptive", reviewed), ("fixed_n", fixed)):
        found = len(chosen & poor)
        result.policies[name] = {"reviews": len(chosen), "poor_found": found,
                                 "poor_share": round(found / len(chosen), 4) if chosen else 0.0}
    result.policies["calls"] = total_calls
    result.policies["poor_calls"] = len(poor)
    return result


def detections(specs, opened: list[dict], agents: dict) -> tuple[list[dict], set[str]]:
    """Per injected drift, the first matching alert and its delay; and the ids of every matching alert."""
    found, matched = [], set()
    for spec in specs:
        hits = sorted(((time_ms(a["at"]), a) for a in opened if _matches(a, spec, agents)), key=lambda hit: hit[0])
        matched.update(a["alert_id"] for _, a in hits)
        first = hits[0][1] if hits else None
        found.append({**spec.truth(), "detected_at": first["at"] if first else None,
                      "delay_hours": round((hits[0][0] - spec.start_ms) / 3_600_000, 2) if hits else None,
                      "detected_by": f"{first['level']}:{first['entity_id']}:{first['metric']}" if first else None,
                      "matching_alerts": len(hits)})
    return found, matched


def _matches(alert: dict, spec: DriftSpec, agents: dict) -> bool:
    """An alert opened at or after the drift's start, on a metric it moves, the worse way, on an
    entity that contains the drifting scope or lies inside it (a team's drift seen on its site or on
    one of its agents)."""
    if time_ms(alert["at"]) < spec.start_ms or alert["metric"] not in MOVES[spec.kind]:
        return False
    if json.loads(alert["evidence"])["direction"] != WORSE[alert["metric"]]:
        return False
    return _within(alert["level"], alert["entity_id"], spec, agents) or _contains(alert["level"], alert["entity_id"], spec, agents)


def _within(level: str, entity: str, spec: DriftSpec, agents: dict) -> bool:
    if (level, entity) == (spec.scope_level, spec.scope_id):
        return True
    if level == "agent":
        return entity in agents and spec.applies(agents[entity], spec.start_ms)
    return level == "team" and spec.scope_level == "site" and entity.split("/")[0] == spec.scope_id


def _contains(level: str, entity: str, spec: DriftSpec, agents: dict) -> bool:
    """One level up: a team's drift on its site, an agent's on their team."""
    if spec.scope_level == "team":
        return level == "site" and entity == spec.scope_id.split("/")[0]
    return spec.scope_level == "agent" and level == "team" and spec.scope_id in agents and agents[spec.scope_id].team == entity


def _fixed_n(calls_of: dict[str, list[str]], budget: int, rng: random.Random) -> set[str]:
    """The same number of reviews spread evenly over agents (the remainder to random agents), each
    agent's calls drawn at random."""
    agents = sorted(calls_of)
    if not agents:
        return set()
    quota = {a: budget // len(agents) for a in agents}
    for a in rng.sample(agents, budget % len(agents)):
        quota[a] += 1
    chosen: set[str] = set()
    for a in agents:
        chosen.update(rng.sample(calls_of[a], min(quota[a], len(calls_of[a]))))
    return chosen
