"""Quality monitoring of one site: every series' drift chart, its false-alarm budget, and incidents.

Series keys are ``level|site|entity|metric`` (level agent, team or site); the monitor stage is keyed by
site, so an agent's series and their team's and site's are charted together:

- **Peers.** An agent is charted against their team in the same hours: the expected value is the
  agent's baseline (shrunk towards the team's while it is short) plus the team's current deviation
  from its own baseline, leaving the agent's own part of it out. A move of the whole team is the team's
  incident, not fifteen agents'.
- **Case mix.** A duration (handle, hold time) is charted as if its call were of the site's usual mix
  of queues (``_case_mix``): the spread between a short billing queue and a long technical one is not
  noise the charts must allow for, and a team's move is seen sooner.
- **Budget.** ``MonitorConfig.budget`` false alarms per 100 agents per week, over every series and
  level together (default 1), is shared by level (``level_share``) and within a level equally per
  agent and metric. A false alarm is counted once per agent whose review rate it raises: a team's
  series gets its agents' share and spends it fifteen at a time, so a false team alarm is as rare as
  one agent's (and the whole budget is an upper bound). A series' allowance and its observed steps per
  week give its in-control run length, and that its chart limit (``drift.limit``).
- **Incidents** (``callqa.core.incidents``) group the series alarms by root cause.
- **Weights.** A human evaluation counts with its inverse inclusion probability; a team's and a site's
  human QA are charted as weighted means of 5 (``BY_LEVEL``), so reviewing one agent more does not
  move their team's chart, each score first adjusted to its design band (``_design_mix``): the calls the
  sampler draws most are the ones it expects to be poor.
- **The charts' state, stored** (``record``): per series and hour with steps, one ``detector_state`` row
  (``state_row``): the steps' mean value and mean expected value on the metric's scale, the CUSUM's
  highest statistic in the hour and its limit, and the hour's value that would have reached the limit.
  An hour's row is written once the monitor's input passes the hour (every series' at once); a series
  in alarm or in an incident also writes its current hour at every step, so a chart of an open
  incident is current. The rows replace each other by ``version`` (the hour's steps).

Metrics (``METRICS``): human and test-call QA %, handle and hold time, transfers, negative customer
sentiment, and the automatic-QA items one by one (``item:<form item id>``, 1 = failed; the total
automatic score is a lumpy mix of them, so its items are charted on their binomial scale instead).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, replace

from schemas import format_ms

from . import drift
from .drift import Family, Signal
from .incidents import Incidents

WEEK_MS = 7 * 86_400_000
LIMIT_YOUNG = 100  # a series' limit is revised at each of its first observations, then at every 50th
# case mix (and design bands): a queue's (band's) calls in its mean, and before it counts fully; the site's calls in
# its reference
MIX_MEMORY, MIX_PRIOR, MIX_REFERENCE = 5000, 30, 1000
HOUR_MS = 3_600_000
# a series' hour of steps, as ``QualityMonitor`` stores the chart's state: the hour, steps, the sums of the
# charted value, of its expected value and of the steps' a and b (``drift.Step``), the statistic at the
# hour's start and its highest, the limit at that highest step, whether every step could signal, whether
# the hour began in alarm, the last step's time
B_HOUR, B_STEPS, B_Y, B_MU, B_A, B_B, B_START, B_MAX, B_H, B_READY, B_ALARMED, B_LAST = range(12)

# the automatic-QA items charted one by one: greeting, name, hold reason and apology, interruptions,
# closing, forbidden phrases (form hotline-100, callqa/forms)
ITEMS = ("greeting.standard", "greeting.asks_name", "waiting.reason_before_hold", "waiting.apology_after_hold",
         "answering.lets_finish", "closing.thanks", "overall.polite")

METRICS: dict[str, Family] = {
    "qa_human": Family("normal", worse=-1, floor=2.0, warmup=10),
    "qa_test_call": Family("normal", worse=-1, floor=2.0, warmup=5),
    "handle_s": Family("log", subgroup=10, shift=0.75, floor=0.1, warmup=20),
    "hold_s": Family("log", subgroup=5, shift=0.75, positive=True, floor=0.1, warmup=20),
    "transferred": Family("binary", odds_ratio=3.0, warmup=100, prior=10),
    "sentiment_negative": Family("binary", odds_ratio=3.0, positive=True, warmup=100, prior=10),
    # an item's typical failure is a behaviour that stops: designed for a tenfold rise in the odds of failing,
    # and beside it for failing nine times in ten (an agent who no longer does it at all)
    **{f"item:{item}": Family("binary", odds_ratio=10.0, warmup=30, prior=10, stop=0.9) for item in ITEMS},
}
# a team's and a site's human QA mixes agents reviewed at different rates: weighted subgroups of 5
BY_LEVEL = {(level, "qa_human"): replace(METRICS["qa_human"], subgroup=5, by_design=True) for level in ("team", "site")}
LEVELS = ("agent", "team", "site")


@dataclass(frozen=True)
class MonitorConfig:
    """``budget``: false alarms per 100 agents per week over all series; ``level_share``: its split by
    level; ``fast``: observations in the peers' current level (an EWMA); ``learn_weeks``: how far back a
    baseline remembers."""

    budget: float = 1.0
    level_share: dict = field(default_factory=lambda: {"agent": 0.4, "team": 0.3, "site": 0.3})
    fast: int = 50
    learn_weeks: float = 4.0  # a baseline's memory (at least ``Family.learn`` steps)
    metrics: dict = field(default_factory=lambda: METRICS)
    levels: dict = field(default_factory=lambda: BY_LEVEL)

    def allowance(self, level: str) -> float:
        """False alarms a week one series of ``level`` may raise. A false alarm is counted once per agent
        whose review rate it raises: a team's series has its agents' share of the budget and spends it
        one team-size at a time, which leaves it one agent's share per metric."""
        return self.budget / 100 * self.level_share[level] / len(self.metrics)


class QualityMonitor:
    """The charts and incidents of the series in ``state`` (a mutable mapping of plain data)."""

    def __init__(self, state: MutableMapping[str, dict], profiles: Mapping[str, dict],
                 config: MonitorConfig = MonitorConfig(), record: bool = False):
        self.state = state
        self.series = state.setdefault("series", {})
        if "mix" not in state:  # duration charts learnt before the case mix: started afresh on its scale
            durations = {metric for metric, family in config.metrics.items() if family.scale == "log"}
            for key in [k for k in self.series if k.rsplit("|", 1)[1] in durations]:
                del self.series[key]
            state["mix"] = {}
        self.incidents = Incidents(state.setdefault("incidents", {}), self._team_of, self._calm_elsewhere)
        self.profiles = profiles
        self.config = config
        self.record = record  # keep the charts' state per hour (``drain``)
        self._states: list[dict] = []

    def _team_of(self, agent: str) -> str:
        return (self.profiles.get(agent) or {}).get("team_id") or ""

    def _charts(self, level: str, site: str, metric: str) -> list[tuple[str, str]]:
        """(entity, series key) of every charted series of a level, site and metric."""
        return [(key.split("|")[2], key) for key in self.series
                if key.startswith(f"{level}|{site}|") and key.endswith(f"|{metric}")]

    def _calm_elsewhere(self, site: str, team: str, metric: str) -> bool:
        """Whether every other charted team of the site is in control on the metric (warm, not in alarm,
        its CUSUM under half its limit)."""
        others = [self.series[key] for entity, key in self._charts("team", site, metric) if entity != team]
        family = self.config.metrics[metric]
        return bool(others) and all(s["c"][drift.N] >= family.warmup and not s["c"][drift.ALARM]
                                    and drift.statistic(s["c"]) < s["h"] / 2 for s in others)

    def observe(self, key: str, value: float, at_ms: int, weight: float = 1.0,
                stratum: str = "") -> tuple[list[dict], list[tuple]]:
        """One observation. Returns alert rows (series alarms of kind ``drift`` and incident notices of
        kind ``incident``) and the incidents' review signals (``Incidents._review``). ``stratum``: the
        call's queue, for the case mix of a duration."""
        level, site, entity, metric = key.split("|")
        family = self.config.metrics.get(metric)
        if family is None or level not in LEVELS:
            return [], []
        family = self.config.levels.get((level, metric), family)
        site_chart = self.series.get(key) if level == "site" else None
        learn = level == "site" and not (site_chart and site_chart["c"][drift.ALARM])  # the site's mixes, in control
        if family.by_design and level != "agent":
            value = self._design_mix(site, metric, weight, value, learn)
        if stratum and family.scale == "log" and value > 0:
            value = self._case_mix(site, metric, stratum, value, learn)
        if self.record and at_ms // HOUR_MS > self.state.get("hour", 0):
            self._sweep(at_ms // HOUR_MS)
        closed, ended = self.incidents.tick(at_ms) if self.incidents.open else ([], [])
        rows, reviews = self._observe(key, level, site, entity, metric, family, value, at_ms, weight)
        return closed + rows, ended + reviews

    def _observe(self, key: str, level: str, site: str, entity: str, metric: str, family: Family, value: float,
                 at_ms: int, weight: float) -> tuple[list[dict], list[tuple]]:
        y = drift.transform(family, value)
        if y is None:  # not charted (a call without a hold on the hold-time chart): not a step either
            return [], []
        s = self.series.get(key) or {"c": drift.new_state(), "first": at_ms, "n": 0, "h": 0.0, "learn": 0.0, "fast": [0.0, 0]}
        s["n"] += 1
        fast = s["fast"]  # the current level: a new baseline when an alarm is accepted; what its agents' peer is
        fast[1] += 1
        fast[0] += (y - fast[0]) / min(fast[1], self.config.fast)
        baseline = s["c"][drift.MEAN]
        peer = None
        if level == "agent":  # the agent's value as their team's chart takes it (its design band, for weighted scores)
            team_family = self.config.levels.get(("team", metric), family)
            shared = drift.transform(family, self._design_mix(site, metric, weight, value, learn=False)) \
                if team_family.by_design else y
            peer = self._peer(site, entity, metric, family, s, shared)
        if s["n"] <= LIMIT_YOUNG or s["n"] % 50 == 1:  # a young series' volume is still being learnt
            s["h"], s["learn"] = self._limit(level, family, s, at_ms)
        seen = [] if self.record else None
        signal = drift.step(s["c"], value, family, s["h"], peer, at_ms, weight, s["learn"], fast[0], seen=seen)
        if signal is not None and signal.chart == "accepted" and level == "team":
            self._move_agents(site, entity, metric, fast[0] - baseline)
        if seen:
            self._note(key, s, seen[0], s["h"], at_ms, family)
        self.series[key] = s
        if signal is None:
            return [], []
        if signal.chart == "cusum":
            s["alarm"] = f"{key}|{at_ms}"
            row = self._row(s["alarm"], "open", at_ms, at_ms, level, site, entity, metric, signal)
            rows, actions = self.incidents.signal(key, level, site, entity, metric, at_ms, row)
            return [row] + rows, actions
        alarm = s.pop("alarm", f"{key}|{at_ms}")
        opened = int(alarm.rsplit("|", 1)[1])
        row = self._row(alarm, "cleared", at_ms, opened, level, site, entity, metric, signal)
        rows, actions = self.incidents.cleared(key, at_ms)
        return [row] + rows, actions

    # -- the charts' state, stored ------------------------------------------------------------
    def drain(self) -> list[dict]:
        """The ``detector_state`` rows made since the last call (``record``)."""
        rows, self._states = self._states, []
        return rows

    def _note(self, key: str, s: dict, st: drift.Step, h: float, at_ms: int, family: Family) -> None:
        """Add a step to its series' hour; a series in alarm or in an incident writes its hour now."""
        b = s.get("b") or [max(at_ms // HOUR_MS, self.state.get("hour", 0)), 0, 0.0, 0.0, 0.0, 0.0, st.before,
                           st.after, h, 1, int(st.in_alarm), at_ms]
        b[B_STEPS] += 1
        b[B_Y] += st.y
        b[B_MU] += st.mu
        b[B_A] += st.a
        b[B_B] += st.b
        if st.after >= b[B_MAX]:  # the limit beside the statistic is the one of the step that reached it
            b[B_MAX], b[B_H] = st.after, h
        b[B_READY], b[B_LAST] = int(b[B_READY] and st.ready), at_ms
        s["b"] = b
        if s["c"][drift.ALARM] or key in self.incidents.of_series or st.after > h:
            self._states.append(state_row(key, family, b, bool(s["c"][drift.ALARM])))

    def _sweep(self, hour: int) -> None:
        """The monitor's input has reached ``hour``: every series' earlier hour is complete; write it."""
        for key, s in self.series.items():
            b = s.get("b")
            if b and b[B_HOUR] < hour:
                level, _, _, metric = key.split("|")
                family = self.config.levels.get((level, metric), self.config.metrics[metric])
                self._states.append(state_row(key, family, b, bool(s["c"][drift.ALARM])))
                del s["b"]
                self.series[key] = s
        self.state["hour"] = hour

    def _move_agents(self, site: str, team: str, metric: str, delta: float) -> None:
        """A team's change was accepted as its new level: its agents' baselines move with it, so they are
        not then judged against the old level."""
        for agent, key in self._charts("agent", site, metric):
            if self._team_of(agent) == team:
                s = self.series[key]
                s["c"][drift.MEAN] += delta
                self.series[key] = s  # reassigned: a runner that saves changed keys sees the change

    def _peer(self, site: str, entity: str, metric: str, family: Family, s: dict,
              y: float) -> tuple[float, float, float] | None:
        """(baseline mean, variance, current deviation) of an agent's team on the metric. The deviation
        leaves the agent out: their share of the team's current level (an EWMA of the team's
        observations, ``fast``) is tracked on their series (``own``: their weighted sum and weight in it,
        as of a team observation count, and the team), so an agent who drifts alone is not partly excused
        by the move they give their team. ``y``: the agent's charted value now, which the team's level
        takes next."""
        team_key = f"team|{site}|{self._team_of(entity)}|{metric}"
        team = self.series.get(team_key)
        if team is None:
            return None
        c, (level, count) = team["c"], team["fast"]
        fast = self.config.fast
        own = s.get("own")
        if not own or own[3:] != [team_key] or own[2] > count + 1:  # none yet, or kept in another team
            own = [0.0, 0.0, count, team_key]
        # the weight the team's level keeps of an observation from its count a to count c: a running mean
        # up to ``fast`` observations (a/c), then an EWMA (1 - 1/fast a step)
        a = own[2]
        decay = (a / min(count, fast) if a < min(count, fast) else 1.0) * (1 - 1 / fast) ** max(0, count - max(a, fast))
        lam = 1 / min(count + 1, fast)  # the agent's value now enters the team's level with this weight
        own_sum, own_weight = own[0] * decay, own[1] * decay
        s["own"] = [(1 - lam) * own_sum + lam * y, (1 - lam) * own_weight + lam, count + 1, team_key]
        if c[drift.N] < family.warmup or count < fast:
            return (c[drift.MEAN], c[drift.VAR], 0.0) if c[drift.N] else None
        if own_weight < 0.5:
            level = (level - own_sum) / (1 - own_weight)
        return c[drift.MEAN], c[drift.VAR], level - c[drift.MEAN]

    def _case_mix(self, site: str, metric: str, queue: str, value: float, learn: bool) -> float:
        """A duration as if its call were of the site's usual mix: ``value`` × the ratio of the site's
        reference (the geometric mean of its first ``MIX_REFERENCE`` calls, then fixed: a scale, not a
        level) to its queue's geometric mean (a billing call is not a long technical one). A queue's mean
        of log(value) is learnt over its last ``MIX_MEMORY`` calls (once per call: at the site's level,
        ``learn``; not while the site's chart of the metric is in alarm) and counts fully after
        ``MIX_PRIOR`` calls. Kept per site (a monitor partition holds several). The queue means keep
        learning while a team is in alarm: a team that alone works a queue has its drift absorbed over that
        queue's memory. The risk adjustment of Steiner et al. (2000), the queue as the risk model."""
        mix = self.state["mix"].setdefault(f"{site}|{metric}", {})  # queue: [calls, mean log]; "*": reference
        if learn:
            y = math.log(value)
            q = mix.setdefault(queue, [0, 0.0])
            q[0] += 1
            q[1] += (y - q[1]) / min(q[0], MIX_MEMORY)
            reference = mix.setdefault("*", [0, 0.0])
            if reference[0] < MIX_REFERENCE:  # the site's first calls' mean, then fixed
                reference[0] += 1
                reference[1] += (y - reference[1]) / reference[0]
        q, reference = mix.get(queue), mix.get("*")
        if q is None or reference is None:
            return value
        return value * math.exp(q[0] / (q[0] + MIX_PRIOR) * (reference[1] - q[1]))

    def _design_mix(self, site: str, metric: str, weight: float, value: float, learn: bool) -> float:
        """A weighted score as if its call had been drawn at the site's usual rate: ``value`` + the site's
        reference − the mean of the scores drawn in its design band (the inclusion probability 1/``weight``
        by powers of two). Adaptive sampling draws calls it expects to be poor with high probability, so a
        score's expected value depends on how likely its call was to be drawn (on the simulated centers
        of ``bench/monitoring.py``: from 72 % in the likeliest band to 88 % in the least likely). A few
        evaluations weighted by 1/p are then an unbiased but skewed estimate: a subgroup of likely calls
        only is low by several sigmas, one with a rare unlikely call is high by less, and a CUSUM of
        lower scores meets its limit far sooner than its run length says. Within a band the scores are
        comparable (post-stratification on the design, Särndal, Swensson & Wretman 1992, §7.6; the risk
        adjustment of ``_case_mix``, the design as the risk model). Band means are learnt at the site's
        level (``learn``: not while its chart is in alarm) over their last ``MIX_MEMORY`` scores and count
        fully after ``MIX_PRIOR``; the reference is the weighted mean of the site's first ``MIX_REFERENCE``
        scores (its human QA then: the chart shows the site's level). A chart learnt before keeps its
        baseline: the adjustment grows in with its bands' counts."""
        name = f"{site}|{metric}|design"  # band: [scores, mean]; "*": the reference [scores, their weight, weighted mean]
        mix = self.state["mix"].setdefault(name, {}) if learn else self.state["mix"].get(name, {})
        band = str(min(12, int(math.log2(max(weight, 1.0)))))
        if learn:
            q = mix.setdefault(band, [0, 0.0])
            q[0] += 1
            q[1] += (value - q[1]) / min(q[0], MIX_MEMORY)
            reference = mix.setdefault("*", [0, 0.0, 0.0])
            if reference[0] < MIX_REFERENCE:
                reference[0] += 1
                reference[1] += weight
                reference[2] += weight * (value - reference[2]) / reference[1]
        q, reference = mix.get(band), mix.get("*")
        if q is None or reference is None:
            return value
        return value + q[0] / (q[0] + MIX_PRIOR) * (reference[2] - q[1])

    def _limit(self, level: str, family: Family, s: dict, at_ms: int) -> tuple[float, float]:
        """The series' limit (from its steps per week and allowance) and its baseline's memory in steps."""
        weeks = max(at_ms - s["first"], 86_400_000) / WEEK_MS
        steps = s["n"] / (family.subgroup if family.scale != "binary" else 1) / weeks
        limit = drift.limit(family, steps / self.config.allowance(level))
        return limit, max(family.learn, self.config.learn_weeks * steps)

    @staticmethod
    def _row(alert_id: str, status: str, at_ms: int, opened_ms: int, level: str, site: str, entity: str, metric: str,
             signal: Signal) -> dict:
        return {"alert_id": alert_id, "kind": "drift", "status": status, "at": format_ms(at_ms),
                "opened_at": format_ms(opened_ms), "level": level, "site_id": site, "entity_id": entity,
                "metric": metric, "severity": "warning" if status == "open" else None, "signals": 1,
                "evidence": json.dumps(asdict(signal))}


def state_row(key: str, family: Family, b: list, in_alarm: bool) -> dict:
    """A series' hour as stored in ``detector_state``, on the metric's scale (QA %, seconds of the
    geometric mean for durations, the share of calls for yes/no metrics):

    - ``value``, ``expected``: the mean of the hour's steps' values and of their expected values (the
      baseline, shrunk towards the peers', plus the peers' current deviation);
    - ``statistic``: the CUSUM's highest value in the hour (the one that crossed ``decision_limit`` when
      it signalled); ``start_statistic``: its value as the hour began; ``decision_limit``: the limit h of
      the step that reached ``statistic`` (h is revised from the series' volume at each of its first
      ``LIMIT_YOUNG`` observations, then every 50);
    - ``alarm_value``: the hour's value that brings the statistic from ``start_statistic`` to the limit
      with the hour's steps: for a normal or log chart (one step: exact) the mean ȳ with
      Σ(worse·(y − μ)/σ − k) = h − S₀, i.e. ȳ = μ̄ + worse·σ̄·((h − S₀)/n + k); for a yes/no chart the
      share of failures f/n with Σb + f·mean(a − b) = h − S₀ (a, b the log-likelihood ratios of a failure
      and of a success; on an item chart's two designs, of the design higher as each step began).
      Approximate over several steps (the statistic's floor at zero, changes of μ within the hour and
      steps after a signal in the hour are left out); empty when the chart could not
      signal in the hour (warming up, or in alarm as it began), or when no share of the hour's calls
      would reach the limit;
    - ``in_alarm``: the series is in alarm after the hour's last step.
    """
    level, site, entity, metric = key.split("|")
    n = b[B_STEPS]
    y, mu = b[B_Y] / n, b[B_MU] / n
    alarm_value = None
    if b[B_READY] and not b[B_ALARMED]:
        gap = b[B_H] - b[B_START]
        if family.scale == "binary":
            spread = (b[B_A] - b[B_B]) / n
            share = (gap - b[B_B]) / spread / n if spread > 0 else None
            alarm_value = round(max(share, 0.0), 4) if share is not None and share <= 1 else None
        else:
            alarm_value = drift._raw(family, mu + family.worse * (b[B_A] / n) * (gap / n + family.shift / 2))
    return {"series": key, "level": level, "site_id": site, "entity_id": entity, "metric": metric,
            "time": format_ms(b[B_HOUR] * HOUR_MS), "last_at": format_ms(b[B_LAST]), "steps": n,
            "observations": n * (family.subgroup if family.scale != "binary" else 1),
            "value": drift._raw(family, y), "expected": drift._raw(family, mu), "alarm_value": alarm_value,
            "start_statistic": round(b[B_START], 4), "statistic": round(b[B_MAX], 4), "decision_limit": round(b[B_H], 4),
            "ready": bool(b[B_READY]), "in_alarm": in_alarm, "version": n}
