"""Adaptive monitoring frequency: each agent's review rate, and a select-or-skip decision per recording.

**The agent's rate** (audited) is ``base_rate × tenure × tier × signal``, at most ``max_rate``:
tenure and tier factors come from the hotline manual (new hires under 3 months the most, under a year
+30%; the tier factors turn its effort shares — high 15%, low 45% — into multipliers for the usual
20/60/20 tier mix); ``signal`` is the strongest active signal: a quality-drift alert on the agent,
their team or their site (opened → raised, cleared → may relax), or an ``ops.changed`` event in
their scope (knowledge, system, process change, new business, new hires) for ``change_days``.
Drift signals come from incidents (``callqa.core.incidents``) and end when the incident closes.
A raise applies at once; a relaxation only once the rate has been held ``dwell_ms`` and the new
target is below ``1/hysteresis`` of the current rate. Every change is an event: old rate, new rate,
what caused it, the signal and its evidence.

**Per recording** the probability is the agent's rate times call factors — shift hour, peak traffic
and call-duration bucket, each the manual's share of reviews divided by the share of calls observed
in that bucket (learned per site and partition, clipped), the day of the agent's rotation
(60/70/80/100/120%), and attitude and emotion: the agent's automatic-QA shortfall and customers'
negative sentiment (EWMAs) against their site's, and the same of the call itself (its speech analytics;
a decision waits ``analysis_wait_ms`` of event time for them). A weekday × shift-band cell the agent has no review in this month gets up to
``coverage_factor`` more (rising as the month runs out); an agent behind pace for ``min_per_month`` reviews gets the rate that
catches up. The draw is a keyed hash of the call id: unpredictable without the key, and the same on
a replay. Selections are capped by QA capacity (the named reviewers' reviews a day, else reviewers × reviews per hour × hours a day, split
evenly over partitions) as in priority sampling (Duffield, Lund & Thorup 2007; Ohlsson's sequential
Poisson sampling, 1998): a full day keeps the selections of lowest priority u / (p × risk), the draw over
the call's probability and its agent's rate multiplier, a call of lower priority displacing the highest
(dropped with its reason). So a busy day's reviews go to riskier agents first, yet every call keeps a
known chance: once the day is over (the partition decides a call of a later day), each kept call whose
chance the cut lowered has its decision revised (version 3) with the factor ``capacity`` = min(1, τ × risk),
τ the lowest priority the day refused; p × capacity is its inclusion probability given the other calls,
the weight its human evaluation should carry (so a busy day does not bias the QA estimates towards the
riskier agents). A review submitted before that carries p, and weighs its call too little; the last day
of a run, and a day begun under an earlier version of this cut, are not revised.

Local time: shift bands (the profile's ``shift`` is wall-clock time in its ``timezone``, else the site's),
peak hours, weekdays of coverage cells, the agent's month and rotation days, and the review queue's ``day``
are the site's local time (``callqa.core.clock``); QA capacity is a day of ``CALLQA_TIMEZONE`` (the
clock's default zone: the QA team's day).

State is plain JSON-able data in two mappings: per agent and per partition (faust Tables when
keyed by agent; dicts in the embedded runner). Coverage, pace and capacity depend on the order in
which an agent's calls arrive; in the worker they come from several partitions, so the worker and
the embedded runner apply the same rules but may pick different calls.
"""
from __future__ import annotations

import functools
import hashlib
import heapq
import json
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from schemas import format_ms, time_ms

from .clock import SiteClock

DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1).toordinal()
BANDS = ("first_hour", "middle", "last_two_hours")
DURATIONS = ((15_000, "under_15s"), (50_000, "15_50s"), (80_000, "50_80s"), (200_000, "80_200s"), (math.inf, "over_200s"))
METHODS = ("recording_review", "live_remote", "side_by_side")


@dataclass(frozen=True)
class PolicyConfig:
    base_rate: float = 0.03
    min_per_month: int = 30
    max_rate: float = 0.5
    new_hire_days: int = 90
    new_hire_factor: float = 4.0  # above every other weight: new hires get the most
    first_year_factor: float = 1.3
    tier_factor: dict = field(default_factory=lambda: {"high": 0.75, "middle": 0.67, "low": 2.25})
    shift_share: dict = field(default_factory=lambda: {"first_hour": 0.20, "middle": 0.55, "last_two_hours": 0.25})
    rotation_factor: tuple = (0.6, 0.7, 0.8, 1.0, 1.2)
    peak_share: float = 0.5
    peak_hour_ratio: float = 1.25  # an hour with this many times the mean hourly calls is peak
    duration_share: dict = field(default_factory=lambda: {"under_15s": 0.0, "15_50s": 0.15, "50_80s": 0.40,
                                                          "80_200s": 0.30, "over_200s": 0.15})
    factor_clip: tuple = (0.25, 4.0)
    signal_alpha: float = 0.05  # EWMA weight of attitude (automatic QA) and emotion (negative sentiment) signals
    signal_min: int = 20  # an agent's observations before their signals count
    signal_clip: tuple = (0.5, 3.0)
    analysis_wait_ms: int = 300_000  # a decision waits (in event time) for its call's speech analytics
    call_signal_clip: tuple = (0.75, 2.0)
    # the call factors together move a call's probability at most this much either way: inclusion
    # probabilities stay within 16x of each other for an agent, so weighted estimates stay stable (a full
    # day's capacity cut scales them further down: the ``capacity`` factor)
    call_factor_clip: tuple = (0.25, 4.0)
    learn_calls: int = 200  # calls seen in a site before its observed shares are trusted
    drift_factor: dict = field(default_factory=lambda: {"agent": 3.0, "team": 2.0, "site": 1.5})
    change_factor: float = 2.0
    change_days: int = 14
    dwell_ms: int = DAY_MS  # a raised rate relaxes within a working day of its incident's close
    hysteresis: float = 1.1
    coverage_factor: float = 3.0
    reviewers: int = 12
    reviews_per_hour: int = 12
    review_hours: float = 7.0
    daily_reviews: int = 0  # named reviewers' capacities summed (CALLQA_REVIEWERS_FILE); 0: the three above

    @property
    def daily_capacity(self) -> int:
        if self.daily_reviews:
            return self.daily_reviews
        return int(self.reviewers * self.reviews_per_hour * self.review_hours)

    @classmethod
    def from_json(cls, spec: dict, **overrides) -> "PolicyConfig":
        """A policy from a JSON object of field overrides (unknown fields are an error)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown sampling policy fields: {', '.join(sorted(unknown))}")
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        return cls(**{**spec, **overrides})


def uniform(key: bytes, call_id: str) -> float:
    """A keyed, replay-stable uniform draw in [0, 1) for a call."""
    digest = hashlib.blake2b(call_id.encode(), key=key[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@functools.lru_cache(maxsize=4096)
def _calendar(day: int) -> tuple[str, str, int, int]:
    """Of an epoch day: its date, its month, and the month's first and end ms (cached: hot path)."""
    d = date.fromordinal(EPOCH + day)
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    end = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    return d.isoformat(), d.isoformat()[:7], int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@functools.lru_cache(maxsize=1024)
def _shift_minutes(start: str, end: str) -> tuple[int, int]:
    """A shift's start minute of the day and its length in minutes ("HH:MM" strings)."""
    first = int(start[:2]) * 60 + int(start[3:])
    return first, (int(end[:2]) * 60 + int(end[3:]) - first) % 1440 or 1440


@functools.lru_cache(maxsize=65536)
def _epoch_day(iso_date: str) -> int:
    return date.fromisoformat(iso_date).toordinal() - EPOCH


@dataclass
class Decisions:
    """What one input changed: rate changes, decisions (new or revised) and review-queue rows."""

    rates: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)

    def extend(self, other: "Decisions") -> None:
        self.rates += other.rates
        self.decisions += other.decisions
        self.reviews += other.reviews


def agent_targets(level: str, ids: list[str], site: str | None, profiles: Mapping[str, dict]) -> list[str]:
    """Agents in a scope (center, site, queue, team, agent). Agents are not members of queues: a
    queue-scoped change reaches the agents of its site (every site when it names none)."""
    if level == "agent":
        return list(ids)
    if level == "queue":
        level, ids = ("site", [site]) if site else ("center", [])
    field_ = {"site": "site_id", "team": "team_id"}.get(level)
    return sorted(a for a, p in profiles.items() if field_ is None or p.get(field_) in ids)


def tenure_factor(days_employed: int, policy: PolicyConfig) -> float:
    """The rate multiplier of an agent's tenure: new hires the most, then the first year, then 1."""
    if days_employed < policy.new_hire_days:
        return policy.new_hire_factor
    return policy.first_year_factor if days_employed < 365 else 1.0


def incident_signal(level: str, active: bool, evidence: dict, policy: PolicyConfig) -> dict:
    """The review signal of a quality incident (``callqa.core.incidents``) that reached ``level``
    (agent, team or site): while open, its agents' rates take that level's ``drift_factor``."""
    if not active:
        return {"active": False}
    return {"active": True, "kind": f"drift:{level}", "factor": policy.drift_factor[level], "until_ms": None,
            "evidence": evidence}


def change_signal(event: dict, policy: PolicyConfig) -> tuple[str, dict]:
    """Signal id and signal of an ``ops.changed`` event."""
    start = time_ms(event["effective_from"])
    end = event.get("effective_to")
    return event["change_id"], {
        "active": True, "kind": f"ops:{event['change_type']}", "factor": policy.change_factor, "from_ms": start,
        "until_ms": time_ms(end) if end else start + policy.change_days * DAY_MS,
        "evidence": {"change_id": event["change_id"], "change_type": event["change_type"], "scope": event["scope"],
                     "description": event.get("description", "")}}


class Sampler:
    def __init__(self, agents: MutableMapping[str, dict], partitions: MutableMapping[str, dict],
                 profiles: Mapping[str, dict], policy: PolicyConfig, key: bytes, shares: int = 1,
                 clock: SiteClock | None = None):
        self.clock = clock or SiteClock()
        self.agents = agents
        self.partitions = partitions
        self.profiles = profiles
        self.policy = policy
        self.key = key
        self.capacity = max(1, math.ceil(policy.daily_capacity / shares))  # per partition and day
        self._peak_share = {"peak": policy.peak_share, "off_peak": 1 - policy.peak_share}

    # -- the agent's rate ---------------------------------------------------------------------
    def signal(self, agent_id: str, signal_id: str, signal: dict, at_ms: int) -> Decisions:
        """An alert or change reaching one agent; returns the rate change it causes, if any."""
        a = self._agent(agent_id)
        if signal["active"]:
            a["signals"][signal_id] = {k: v for k, v in signal.items() if k != "active"}
        elif signal_id in a["signals"]:
            a["signals"][signal_id]["until_ms"] = at_ms  # cleared: ends now
        out = Decisions(rates=self._rebalance(agent_id, a, at_ms))
        self.agents[agent_id] = a
        return out

    def _agent(self, agent_id: str) -> dict:
        return self.agents.get(agent_id) or {"rate": None, "since": 0, "factors": {}, "signals": {}, "month": "", "first_ms": 0,
                                             "calls": 0, "selected": 0, "cells": [], "work_day": 0, "rotation": 0,
                                             "changes": 0}

    def _factors(self, agent_id: str, a: dict, at_ms: int) -> tuple[dict, str | None]:
        p, profile = self.policy, self.profiles.get(agent_id) or {}
        hired = profile.get("hire_date")
        tenure = tenure_factor(at_ms // DAY_MS - _epoch_day(hired), p) if hired else 1.0
        strongest, signal = None, 1.0
        for sid, s in sorted(a["signals"].items()):
            if s.get("from_ms", 0) <= at_ms and (s["until_ms"] is None or at_ms < s["until_ms"]) and s["factor"] > signal:
                strongest, signal = sid, s["factor"]
        for sid in [sid for sid, s in a["signals"].items() if s["until_ms"] is not None and s["until_ms"] <= at_ms]:
            del a["signals"][sid]  # over: it no longer holds the rate up
        return {"tenure": tenure, "tier": p.tier_factor.get(profile.get("tier") or "middle", 1.0), "signal": signal}, strongest

    def _recheck_ms(self, agent_id: str, a: dict, at_ms: int, target: float) -> int:
        """The next time the agent's target rate can move without a new signal: a signal starting or
        ending, a tenure step, or the dwell ending while a lower target waits."""
        times = [s[k] for s in a["signals"].values() for k in ("from_ms", "until_ms") if s.get(k) and s[k] > at_ms]
        hired = (self.profiles.get(agent_id) or {}).get("hire_date")
        if hired:
            times += [t for t in ((_epoch_day(hired) + d) * DAY_MS for d in (self.policy.new_hire_days, 365)) if t > at_ms]
        if a["rate"] is not None and target * self.policy.hysteresis <= a["rate"]:  # a relaxation waits
            times.append(a["since"] + self.policy.dwell_ms)
        return min(times, default=2**62)


    def _rebalance(self, agent_id: str, a: dict, at_ms: int) -> list[dict]:
        p = self.policy
        factors, strongest = self._factors(agent_id, a, at_ms)
        target = round(min(p.max_rate, p.base_rate * math.prod(factors.values())), 6)
        old = a["rate"]
        if old is None:
            cause = "initial"
        elif target > old:
            cause = "raised"
        elif target * p.hysteresis <= old and at_ms - a["since"] >= p.dwell_ms:
            cause = "relaxed"
        else:
            a["recheck_ms"] = self._recheck_ms(agent_id, a, at_ms, target)
            return []
        changed = sorted(k for k in factors if factors[k] != a["factors"].get(k))
        signal = a["signals"].get(strongest) if strongest else None
        a.update(rate=target, since=at_ms, factors=factors, changes=a["changes"] + 1)
        a["recheck_ms"] = self._recheck_ms(agent_id, a, at_ms, target)
        profile = self.profiles.get(agent_id) or {}
        return [{"change_id": f"{agent_id}|{a['changes']}", "agent_id": agent_id, "site_id": profile.get("site_id") or "",
                 "team_id": profile.get("team_id") or "", "at": format_ms(at_ms), "old_rate": old or 0.0,
                 "new_rate": target, "cause": cause, "factors_changed": changed, "signal_id": strongest or "",
                 "signal_kind": signal["kind"] if signal else "", "factors": json.dumps(factors),
                 "evidence": json.dumps(signal["evidence"]) if signal else ""}]

    # -- per recording ------------------------------------------------------------------------
    def observe(self, agent_id: str, site_id: str, metric: str, value: float, partition: str = "0") -> None:
        """An agent's automatic-QA % (``qa_auto``) or a call's negative sentiment (``sentiment_negative``):
        the attitude and emotion signals, as EWMAs of the shortfall per agent and per site."""
        alpha, bad = self.policy.signal_alpha, 100.0 - value if metric == "qa_auto" else value
        a = self._agent(agent_id)
        n, mean = a.setdefault("signal_n", {}).get(metric, 0), a.setdefault("signal_ewma", {}).get(metric, bad)
        a["signal_n"][metric], a["signal_ewma"][metric] = n + 1, mean + max(alpha, 1 / (n + 1)) * (bad - mean)
        self.agents[agent_id] = a
        part = self.partitions.get(partition) or {"day": "", "queue": [], "month": "", "stats": {}}
        site = part.setdefault("signals", {}).setdefault(site_id, {})
        n, mean = site.get(f"{metric}:n", 0), site.get(metric, bad)
        site[f"{metric}:n"], site[metric] = n + 1, mean + max(alpha / 10, 1 / (n + 1)) * (bad - mean)
        self.partitions[partition] = part

    def analysis(self, agent_id: str, call_id: str, values: dict) -> None:
        """The speech analytics of one of the agent's calls (its automatic-QA shortfall in points and the
        customer's negative sentiment, 0..1), kept until the call's decision (the 50 latest)."""
        a = self._agent(agent_id)
        kept = a.setdefault("analysed", {})
        kept[call_id] = [values["shortfall"], values["negative"]]
        while len(kept) > 50:
            del kept[next(iter(kept))]
        self.agents[agent_id] = a

    def decide(self, c: dict, partition: str = "0") -> Decisions:
        """Select or skip one recorded call (a candidate from ``Processor``)."""
        p, at = self.policy, c["at_ms"]
        agent_id = c["agent_id"]
        a = self._agent(agent_id)
        profile = self.profiles.get(agent_id) or {}
        profile_key = f"{profile.get('hire_date')}|{profile.get('tier')}"
        if at >= a.get("recheck_ms", 0) or a.get("profile") != profile_key:  # else the target cannot have moved
            a["profile"] = profile_key
            out = Decisions(rates=self._rebalance(agent_id, a, at))
        else:
            out = Decisions()
        site = c["site_id"]
        local_day = self.clock.local_day(site, at)  # the agent's month and rotation: the site's calendar
        month, month_start, month_end = self.clock.month(site, local_day)
        day, part_month = _calendar(self.clock.local_day(None, at))[:2]  # capacity: the QA team's day
        day_index = local_day
        if a["month"] != month:
            a.update(month=month, first_ms=at, calls=0, selected=0, cells=[])
        a["calls"] += 1
        if a["work_day"] != day_index:
            a["rotation"] = a["rotation"] + 1 if day_index - a["work_day"] == 1 else 0
            a["work_day"] = day_index
        part = self._partition(partition, day, part_month, out)
        factors, cell = self._call_factors(part, c, a, profile)
        low, high = p.call_factor_clip
        rate = a["rate"] * min(high, max(low, math.prod(factors.values())))
        ramp = (at - month_start) / (month_end - month_start)  # uncovered cells matter more as the month runs out
        covered = rate * (1 if cell in a["cells"] else 1 + (p.coverage_factor - 1) * ramp)
        pace = self._pace(a, at, month_start, month_end)
        probability = min(1.0, max(covered, pace))
        u = uniform(self.key, c["call_id"])
        reason = "rate" if u < rate else "coverage" if u < covered else "pace" if u < pace else "not drawn"
        risk = round(a["rate"] / p.base_rate, 4)
        decision = {"call_id": c["call_id"], "recording_id": c["recording_id"], "agent_id": agent_id,
                    "site_id": c["site_id"], "team_id": profile.get("team_id") or "", "queue_id": c.get("queue_id") or "",
                    "at": format_ms(at), "selected": u < probability, "reason": reason, "probability": round(probability, 6),
                    "agent_rate": a["rate"], "risk": risk, "cell": cell, "factors": factors,
                    "method": self._method(profile, a, at), "version": 1}
        if decision["selected"]:
            self._enqueue(part, decision, c, u, out, a, _calendar(local_day)[0])
            if decision["selected"]:
                a["selected"] += 1
                if cell not in a["cells"]:
                    a["cells"].append(cell)
        out.decisions.append(decision)
        self.agents[agent_id] = a
        self.partitions[partition] = part
        return out

    def _pace(self, a: dict, at_ms: int, month_start: int, month_end: int) -> float:
        """The probability that still reaches ``min_per_month`` reviews by the month's end (pro rata
        for an agent first seen mid-month), projecting the agent's calls so far; 0 when on pace or
        before a tenth of the agent's month has passed."""
        span = month_end - a["first_ms"]
        fraction = (at_ms - a["first_ms"]) / span
        target = self.policy.min_per_month * span / (month_end - month_start)
        if fraction < 0.1 or a["selected"] >= target:
            return 0.0
        remaining = a["calls"] / fraction * (1 - fraction)
        return (target - a["selected"]) / max(remaining, 1.0)

    def _method(self, profile: dict, a: dict, at_ms: int) -> str:
        """Side-by-side for new hires and agents whose own quality drifted; live listening while a
        team/site drift or an operational change holds the rate up; otherwise recording review."""
        hired = profile.get("hire_date")
        if hired and at_ms // DAY_MS - _epoch_day(hired) < self.policy.new_hire_days:
            return "side_by_side"
        if not a["signals"]:
            return "recording_review"
        kinds = {s["kind"] for s in a["signals"].values() if s.get("from_ms", 0) <= at_ms}
        if "drift:agent" in kinds:
            return "side_by_side"
        return "live_remote" if kinds else "recording_review"

    def _partition(self, partition: str, day: str, month: str, out: Decisions) -> dict:
        part = self.partitions.get(partition) or {"day": day, "queue": [], "month": month, "stats": {}}
        if day > part["day"]:  # a new day's queue (a late call of an earlier day joins today's)
            out.decisions += self._day_over(part)
            part.update(day=day, queue=[], queued={}, threshold=None)
        if part["month"] != month:  # older months count half: shares follow the traffic
            if part["month"]:
                for counts in part["stats"].values():
                    counts["hours"] = [n / 2 for n in counts["hours"]]
                    counts["total"] /= 2
                    for dim in ("band", "peak", "duration"):
                        counts[dim] = {b: n / 2 for b, n in counts[dim].items()}
            part["month"] = month
        return part

    def _call_factors(self, part: dict, c: dict, a: dict, profile: dict) -> tuple[dict, str]:
        """Multipliers of the agent's rate for this call, and its coverage cell (weekday-shift band)."""
        p = self.policy
        answered, site = c["answered_ms"], c["site_id"]
        local = self.clock.local_ms(site, answered)  # the site's wall clock: hours and weekdays are local
        hour = local // 3_600_000 % 24
        shift = profile.get("shift")
        zone = self.clock.known(shift.get("timezone")) if shift else None  # a shift in a zone of its own
        band = self._band(shift, self.clock.local_ms(site, answered, zone) if zone else local)
        duration = next(name for limit, name in DURATIONS if c["duration_ms"] < limit)
        counts = part["stats"].setdefault(c["site_id"], {"hours": [0] * 24, "total": 0, "band": {}, "peak": {},
                                                          "duration": {}})
        hours, total = counts["hours"], counts["total"]
        open_hours = 24 - hours.count(0)
        peak = "peak" if open_hours and hours[hour] >= p.peak_hour_ratio * total / open_hours else "off_peak"
        factors = {}
        low, high = p.factor_clip
        for dim, bucket, targets in (("band", band, p.shift_share), ("peak", peak, self._peak_share),
                                     ("duration", duration, p.duration_share)):
            seen = counts[dim]
            n = seen.get(bucket, 0)
            if total < p.learn_calls or not n:
                factors[dim] = 1.0
            else:
                # the target share renormalised over the buckets that have calls (none: nothing to steer)
                share = targets.get(bucket, 0.0) / self._present(targets, seen)
                factors[dim] = round(min(high, max(low, share * total / n)), 4)
            seen[bucket] = n + 1
        hours[hour] += 1
        counts["total"] = total + 1
        factors["rotation"] = p.rotation_factor[a["rotation"] % len(p.rotation_factor)]
        site = part.get("signals", {}).get(c["site_id"], {})
        call = a.get("analysed", {}).pop(c["call_id"], None)
        for i, (metric, name) in enumerate((("qa_auto", "attitude"), ("sentiment_negative", "emotion"))):
            mine, theirs = a.get("signal_ewma", {}).get(metric), site.get(metric)
            if a.get("signal_n", {}).get(metric, 0) >= p.signal_min and theirs:
                factors[name] = round(min(p.signal_clip[1], max(p.signal_clip[0], mine / theirs)), 4)
                if call is not None:  # this call's own shortfall and negativity against the site's
                    low, high = p.call_signal_clip
                    factors[f"call_{name}"] = round(min(high, max(low, max(call[i], theirs / 2) / theirs)), 4)
        return factors, f"{WEEKDAYS[(local // DAY_MS + 3) % 7]}-{band}"  # 1970-01-01 was a Thursday

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _present_of(targets: tuple, buckets: frozenset) -> float:
        return sum(share for b, share in targets if b in buckets) or 1.0

    def _present(self, targets: dict, seen: dict) -> float:
        """The target shares of the buckets seen so far (cached: the set rarely changes)."""
        return self._present_of(tuple(targets.items()), frozenset(seen))

    @staticmethod
    def _band(shift: dict | None, t: int) -> str:
        """Where in the agent's shift a call falls (the profile's shift; 'middle' without one); ``t``
        is the wall-clock time of the shift's zone, as epoch ms. A call outside the shift belongs to the
        nearer edge: after its end (overtime) the last two hours, before its start the first hour."""
        if not shift:
            return "middle"
        start, length = _shift_minutes(shift["start"], shift["end"])
        into = (t // 60_000 % 1440 - start) % 1440
        if into >= length:  # outside the shift: overtime after its end, or an early start before it
            return "last_two_hours" if into - length < 1440 - into else "first_hour"
        return "first_hour" if into < 60 else "last_two_hours" if into >= length - 120 else "middle"

    def _enqueue(self, part: dict, decision: dict, c: dict, u: float, out: Decisions, current: dict, day: str) -> None:
        """Add a selection to the partition's review queue for the day, within capacity: the day keeps
        the selections of lowest priority u / (p × risk) (the module's priority sampling); a call of a
        higher priority than every queued one is skipped, else it displaces the highest. The lowest
        priority refused is the day's ``threshold``. ``day``: the site's local date of the call (the
        review queue's day)."""
        priority = u / _weight(decision)
        entry = [-priority, c["call_id"], {**decision, "storage_uri": c.get("storage_uri", ""), "day": day}]
        queue = _priority_queue(part)
        queued = part.setdefault("queued", {})
        if c["call_id"] in queued:  # the same recording again: already queued
            return
        if len(queue) >= self.capacity:
            if priority >= -queue[0][0]:
                _refused(part, priority)
                decision.update(selected=False, reason=f"capacity ({self.capacity} reviews a day in this partition)")
                return
            highest, _, dropped = heapq.heapreplace(queue, entry)
            _refused(part, -highest)
            del queued[dropped["call_id"]]
            revised = {k: v for k, v in dropped.items() if k not in ("storage_uri", "day")}
            revised.update(selected=False, reason=f"displaced by a call of lower priority ({c['call_id']})", version=2)
            out.decisions.append(revised)
            out.reviews.append(review_row(dropped, "dropped"))
            mine = dropped["agent_id"] == decision["agent_id"]
            owner = current if mine else self.agents.get(dropped["agent_id"])
            if owner and owner["selected"]:
                owner["selected"] -= 1
                if not mine:
                    self.agents[dropped["agent_id"]] = owner
        else:
            heapq.heappush(queue, entry)
        queued[c["call_id"]] = 1
        out.reviews.append(review_row(entry[2], "queued"))

    @staticmethod
    def _day_over(part: dict) -> list[dict]:
        """A day's queue is final: when capacity refused calls, each kept call whose chance the cut
        lowered has its decision revised with the factor ``capacity`` = min(1, τ × risk), τ the day's
        threshold (its inclusion probability given the other calls: p × capacity)."""
        threshold = part.get("threshold")
        revised = []
        for _, _, kept in sorted(_priority_queue(part) if threshold is not None else [], key=lambda e: e[1]):
            share = threshold * _weight(kept) / kept["probability"]
            if share < 1:
                decision = {k: v for k, v in kept.items() if k not in ("storage_uri", "day")}
                decision.update(probability=round(decision["probability"] * share, 6),
                                factors={**decision["factors"], "capacity": round(share, 6)}, version=3)
                revised.append(decision)
        return revised


def _weight(decision: dict) -> float:
    """A selection's weight in the capacity cut: its probability × its agent's rate multiplier."""
    return decision["probability"] * max(decision["risk"], 1e-6)


def _refused(part: dict, priority: float) -> None:
    """The day refused a selection of ``priority``: its ``threshold`` is the lowest so refused."""
    held = part.get("threshold")
    part["threshold"] = priority if held is None else min(held, priority)


def _priority_queue(part: dict) -> list:
    """The day's queue as a heap of ``[-priority, call id, decision]`` (a queue saved by an earlier version,
    ``[risk, -u, call id, decision]``, converted)."""
    queue = part["queue"]
    if queue and len(queue[0]) == 4:
        queue[:] = [[e[1] / _weight(e[3]), e[2], e[3]] for e in queue]
        heapq.heapify(queue)
    return queue


def review_row(decision: dict, status: str) -> dict:
    return {"call_id": decision["call_id"], "recording_id": decision["recording_id"],
            "storage_uri": decision.get("storage_uri", ""), "agent_id": decision["agent_id"],
            "site_id": decision["site_id"], "team_id": decision["team_id"], "day": decision.get("day") or decision["at"][:10],
            "at": decision["at"], "method": decision["method"], "reason": decision["reason"], "risk": decision["risk"],
            "status": status, "version": 1 if status == "queued" else 2}
