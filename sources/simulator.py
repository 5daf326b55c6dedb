"""A realistic multi-site contact-center traffic simulator producing canonical events.

Arrivals: open 08:00-21:00 local time, busiest 10:00-12:00 and on Mondays, about 40% of an hour's
calls in its first 15 minutes. Call types with their own service-time distributions; callers with
exponential patience (abandonment rises with waiting); holds, transfers, after-call work; repeat
callers. Agents with shifts, breaks and lunch (not-ready reasons), tenure cohorts and performance
tiers. Every answered call gets a recording and a speech-analytics result; a sample gets a human QA
evaluation on the hotline 100-point form, and a share a post-call survey whose CSAT follows the call's
form items (``CSAT_ITEM_WEIGHTS``).

Drift injection (``DriftSpec``) changes behaviour from a given time; the ground truth (each drift,
and every call whose true quality is poor) is written to a side file.
Deterministic for a seed. Event times are UTC; each site keeps its opening hours, shifts and days in its
local time (``SimConfig.clock``: CALLQA_SITE_TIMEZONES, UTC by default), and its agents' profiles name it.
"""
from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from callqa.core.clock import SiteClock
from callqa.core.scorecard import DEFAULT_FORM, load_form
from callqa.core.surveys import ITEM_PASS_SHARE
from schemas import format_ms

from .base import envelope
from .pii import CallerHasher

SOURCE = "simulator"
EPOCH = date(1970, 1, 1).toordinal()
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# share of a day's calls by hour of day (08..20), peak 10-12
HOURLY = {8: 0.05, 9: 0.08, 10: 0.115, 11: 0.115, 12: 0.085, 13: 0.08, 14: 0.085, 15: 0.085, 16: 0.08,
          17: 0.07, 18: 0.06, 19: 0.05, 20: 0.04}
WEEKDAY = (1.25, 1.10, 1.0, 1.0, 0.95, 0.60, 0.50)  # Monday..Sunday volume factors
FIRST_QUARTER_SHARE = 0.40
# call type: (share, median talk s, lognormal sigma)
CALL_TYPES = {"billing": (0.35, 200, 0.55), "cards": (0.25, 160, 0.5), "tech": (0.20, 360, 0.6),
              "sales": (0.15, 280, 0.55), "complaints": (0.05, 420, 0.6)}
SHIFTS = ((8, 17), (10, 19), (12, 21))
TIERS = (("high", 0.2, 0.88, 92), ("middle", 0.6, 1.0, 85), ("low", 0.2, 1.15, 74))  # tier, share, AHT factor, QA mean
CALLS_PER_AGENT_DAY = 55
PATIENCE_MEAN_S = 110
HOLD_P, TRANSFER_P, QA_SAMPLE_P = 0.22, 0.05, 0.03
POOR_SCORE = 60  # a call whose true QA score is below this is "poor" in the ground truth
# Post-call surveys (``survey.completed``): SURVEY_P of answered calls get one, by IVR right after the call
# (70%) or by SMS within the day. CSAT follows the call's true quality items (the items a reviewer scores; for
# a call nobody reviews, drawn the same way): each item the call fails (under ITEM_PASS_SHARE of its points)
# takes CSAT_ITEM_WEIGHTS[item] off the call's satisfaction mean CSAT_BASE; the answer is that mean rounded at
# random (up with the mean's fraction as probability), except CSAT_MOOD_P of answers, uniform 1-5 (the
# customer's mood, not the call). So a call's expected CSAT is (1 - CSAT_MOOD_P) x (CSAT_BASE - the weights of
# its failed items) + CSAT_MOOD_P x 3: an item's true effect on mean CSAT is (1 - CSAT_MOOD_P) x its weight,
# every other item has none. NPS (0-10, asked in 60%) follows the CSAT given; "resolved" (asked in 80%) is
# the call's own resolution, misreported in 10%.
SURVEY_P = 0.15
CSAT_BASE = 4.7
CSAT_ITEM_WEIGHTS = {"waiting.apology_after_hold": 1.5, "knowledge.accuracy": 1.0, "answering.listens_responds": 0.7,
                     "greeting.standard": 0.5}  # at most CSAT_BASE - 1 in all
CSAT_MOOD_P = 0.2
# calibration: a few calls scored by every evaluator and the lead; each evaluator's bias in points
CALIBRATION_P = 0.003
CALIBRATION_BIAS = {"qa-lead": 0.0, "qa-01": 0.0, "qa-02": 2.0, "qa-03": -9.0, "qa-04": 0.0, "qa-05": -2.0, "qa-06": 1.0}

PHRASES = {
    "zh": {"greeting": "您好，工号{agent}很高兴为您服务，请问您贵姓？", "need": "请问有什么可以帮您？",
           "customer": "我想咨询一下{topic}的问题。", "hold": "请您稍等，我帮您查询一下。",
           "apology": "不好意思，让您久等了。", "answer": "您的问题已经为您处理好了。",
           "other": "请问还有其他可以帮您的吗？", "thanks": "感谢您的来电，再见。", "bye": "好的，谢谢。"},
    "en": {"greeting": "Good morning, this is agent {agent}, may I have your name please?",
           "need": "How can I help you today?", "customer": "I have a question about {topic}.",
           "hold": "Please hold for a moment while I check that for you.",
           "apology": "Sorry to keep you waiting.", "answer": "That is sorted out for you now.",
           "other": "Is there anything else I can help you with?", "thanks": "Thank you for calling, goodbye.",
           "bye": "Thanks, bye."},
}


class DriftSpecError(ValueError):
    """A --drift value that cannot be read; the message says what is expected."""


KINDS = ("qa", "apology", "aht", "hold", "transfer")
KEYS = {"site", "team", "agent", "from", "to", "ramp", "delta", "factor"}


@dataclass(frozen=True)
class DriftSpec:
    """``KIND:key=value,...`` with KIND qa (QA mean moves by ``delta`` points), apology (agents stop
    apologising after holds), aht (handle time times ``factor``, announced by an ops.changed
    ``system_change``), hold (hold time times ``factor``) or transfer (transfer probability times
    ``factor``); scope ``site=``, ``team=`` or ``agent=``; ``from=`` and optional ``to=`` ISO date or
    date-time (UTC), or ``+N`` days after ``first_day`` (e.g. ``from=+2``, ``to=+9.5``); optional
    ``ramp=`` hours over which the drift grows to its full size."""

    kind: str
    scope_level: str
    scope_id: str
    start_ms: int
    delta: float = 0.0
    factor: float = 1.0
    end_ms: int | None = None
    ramp_ms: int = 0

    @classmethod
    def parse(cls, text: str, first_day: date | None = None) -> "DriftSpec":
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise DriftSpecError(f"drift {text!r}: kind must be one of {', '.join(KINDS)} "
                                 "(e.g. qa:team=site-1/team-1,delta=-15,from=2024-03-05)")
        try:
            pairs = [part.split("=", 1) for part in rest.split(",") if part]
            args = dict(pairs)
        except ValueError:
            raise DriftSpecError(f"drift {text!r}: expected key=value pairs after '{kind}:'") from None
        if len(args) != len(pairs):
            raise DriftSpecError(f"drift {text!r}: a key is given twice")
        unknown = set(args) - KEYS
        if unknown:
            raise DriftSpecError(f"drift {text!r}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
        scopes = [k for k in ("site", "team", "agent") if k in args]
        if len(scopes) != 1 or "from" not in args:
            raise DriftSpecError(f"drift {text!r}: needs exactly one of site=, team=, agent= and a from=")
        try:
            start = _when(args["from"], first_day)
            end = _when(args["to"], first_day) if "to" in args else None
            delta = _finite(args.get("delta", -15 if kind == "qa" else 0), "delta")
            factor = _finite(args.get("factor", 1.3 if kind in ("aht", "hold", "transfer") else 1.0), "factor")
            ramp = _finite(args.get("ramp", 0), "ramp")
        except (ValueError, OverflowError) as exc:
            raise DriftSpecError(f"drift {text!r}: {exc}") from None
        if not 0 < factor <= 100:
            raise DriftSpecError(f"drift {text!r}: factor must be > 0 and at most 100")
        if not 0 <= ramp <= 24 * 366:
            raise DriftSpecError(f"drift {text!r}: ramp must be 0 to 8784 hours")
        if abs(delta) > 100:
            raise DriftSpecError(f"drift {text!r}: delta must be -100 to 100 points")
        if end is not None and end <= start:
            raise DriftSpecError(f"drift {text!r}: to= must be after from=")
        return cls(kind, scopes[0], args[scopes[0]], start, delta=delta, factor=factor, end_ms=end,
                   ramp_ms=int(ramp * 3_600_000))

    def strength(self, agent: "Agent", t: int) -> float:
        """How much of the drift holds for an agent at ``t``: 0 outside its scope and period, rising
        linearly over the ramp, then 1."""
        if t < self.start_ms or (self.end_ms is not None and t >= self.end_ms):
            return 0.0
        if not self.in_scope(agent):
            return 0.0
        return min(1.0, (t - self.start_ms) / self.ramp_ms) if self.ramp_ms else 1.0

    def applies(self, agent: "Agent", t: int) -> bool:
        return self.strength(agent, t) > 0

    def in_scope(self, agent: "Agent") -> bool:
        return {"site": agent.site, "team": agent.team, "agent": agent.id}[self.scope_level] == self.scope_id

    def truth(self) -> dict:
        iso = lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        return {"kind": self.kind, "scope_level": self.scope_level, "scope_id": self.scope_id, "from": iso(self.start_ms),
                "to": iso(self.end_ms) if self.end_ms is not None else None, "ramp_hours": self.ramp_ms / 3_600_000,
                "delta": self.delta, "factor": self.factor}


def _when(text: str, first_day: date | None) -> int:
    if text.startswith("+") and first_day is not None:
        at = datetime.combine(first_day, datetime.min.time(), UTC) + timedelta(days=_finite(text, "from/to"))
    else:
        at = datetime.fromisoformat(text)
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def _finite(text, name: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {text}")
    return value


@dataclass
class Agent:
    id: str
    site: str
    team: str
    hire: date
    tier: str
    aht_factor: float
    qa_mean: float
    shift: tuple[int, int]
    apologises: float  # probability of apologising after a hold
    greets: float


@dataclass
class SimConfig:
    sites: int = 3
    agents_per_site: int = 200
    days: int = 1
    start: date = date(2024, 3, 4)  # a Monday
    seed: int = 1
    drifts: tuple[DriftSpec, ...] = ()
    hash_key: str = ""
    label_noise: float = 5.0  # points of noise in the poor-call label the processors cannot see
    closed_loop: bool = False  # human evaluations only of the calls callqa queues for review (``review``)
    qa_sample_p: float = QA_SAMPLE_P  # share of answered calls with a human evaluation (not closed loop)
    survey_p: float = SURVEY_P  # share of answered calls with a post-call survey
    clock: SiteClock = field(default_factory=SiteClock)  # each site's time zone: its days and hours are local
    reviewers: tuple = ()  # named reviewers (callqa.core.reviewers.Reviewer) as the evaluators; none: qa-01..qa-06


@dataclass
class Truth:
    drifts: list[dict] = field(default_factory=list)
    poor_calls: list[str] = field(default_factory=list)
    calls: int = 0
    qa_pct: dict[str, list] = field(default_factory=dict)  # closed loop: agent → [sum, n] of every call's QA %


class Simulator:
    def __init__(self, config: SimConfig):
        self.c = config
        self.rng = random.Random(config.seed)
        self.hash = CallerHasher(config.hash_key or f"simulator-{config.seed}")
        self.truth = Truth(drifts=[d.truth() for d in config.drifts])
        self.agents = self._agents()
        for d in config.drifts:
            if not any(d.in_scope(a) for a in self.agents):
                raise DriftSpecError(f"drift {d.kind}:{d.scope_level}={d.scope_id}: no such {d.scope_level} in the "
                                     f"simulated center (sites site-1..site-{config.sites}, teams site-N/team-M, "
                                     f"agents site-N-aNNNN)")
        self.callers: dict[str, list[str]] = {}
        self.reviewable: dict[str, tuple] = {}  # closed loop: call → what a reviewer would score, for 3 days
        self._n = 0

    def _agents(self) -> list[Agent]:
        rng, agents = self.rng, []
        for s in range(1, self.c.sites + 1):
            for a in range(1, self.c.agents_per_site + 1):
                u = rng.random()
                tenure_days = rng.randint(10, 85) if u < 0.10 else rng.randint(90, 360) if u < 0.30 else rng.randint(365, 3000)
                t = rng.random()
                tier = TIERS[0] if t < 0.2 else TIERS[1] if t < 0.8 else TIERS[2]
                new = tenure_days < 90
                agents.append(Agent(
                    id=f"site-{s}-a{a:04d}", site=f"site-{s}", team=f"site-{s}/team-{(a - 1) // 15 + 1}",
                    hire=self.c.start - timedelta(days=tenure_days), tier=tier[0],
                    aht_factor=tier[2] * (1.2 if new else 1.0), qa_mean=tier[3] - (6 if new else 0),
                    shift=SHIFTS[a % len(SHIFTS)], apologises=0.93 if tier[0] != "low" else 0.75,
                    greets=0.97 if tier[0] != "low" else 0.85))
        return agents

    def _id(self, call: str, kind: str) -> str:
        return f"sim{self.c.seed}:{call}:{kind}"

    def events(self) -> Iterator[dict]:
        """Every event in event-time order. Days are simulated one at a time; what a day produces
        for later (evaluations submitted up to two days on) waits until its time comes."""
        start_ms = int(datetime.combine(self.c.start, datetime.min.time(), UTC).timestamp() * 1000)
        sites, clock, first = sorted({a.site for a in self.agents}), self.c.clock, self.c.start.toordinal() - EPOCH
        pending = self._profiles(min(start_ms, *(clock.midnight(s, first) for s in sites))) + self._ops_events()
        for d in range(self.c.days):
            day = self.c.start + timedelta(days=d)
            for site in sites:
                pending += self._site_day(site, day)
            pending.sort(key=lambda e: (e["event_time"], e["event_id"]))
            # what comes later starts at a site's next local midnight at the earliest
            cut = format_ms(min(clock.midnight(s, first + d + 1) for s in sites))
            i = bisect.bisect_left([e["event_time"] for e in pending], cut)
            yield from pending[:i]
            pending = pending[i:]
            if self.reviewable:
                cutoff = start_ms + (d - 2) * DAY_MS
                self.reviewable = {k: v for k, v in self.reviewable.items() if v[2] >= cutoff}
        yield from pending

    def review(self, call_id: str, probability: float, at_ms: int) -> dict | None:
        """Closed loop: a reviewer's human evaluation of a call callqa queued (selected with
        ``probability``), submitted at ``at_ms`` (at least an hour after the call); None when the call
        is unknown, already reviewed, or more than two days old."""
        entry = self.reviewable.pop(call_id, None)
        if entry is None:
            return None
        agent, site, end, items, evaluator = entry
        return envelope(self._id(call_id, "evaluation.submitted"), "evaluation.submitted", max(at_ms, end + HOUR_MS),
                        site, SOURCE, call_id=call_id, evaluation_id=f"ev-{call_id}", agent_id=agent,
                        evaluator_id=evaluator, form_id=DEFAULT_FORM[0], form_version=DEFAULT_FORM[1], kind="human",
                        items=items, inclusion_probability=round(min(1.0, max(probability, 1e-6)), 6))

    def _profiles(self, t: int) -> list[dict]:
        return [envelope(f"sim{self.c.seed}:profile:{a.id}", "agent.profile", t - DAY_MS, a.site, SOURCE,
                         agent_id=a.id, team_id=a.team, hire_date=a.hire.isoformat(), tier=a.tier,
                         shift={"start": f"{a.shift[0]:02d}:00", "end": f"{a.shift[1]:02d}:00",
                                "timezone": self.c.clock.name(a.site)})
                for a in self.agents]

    def _ops_events(self) -> list[dict]:
        out = []
        for i, d in enumerate(self.c.drifts):
            if d.kind == "aht":
                site = next(a.site for a in self.agents if d.in_scope(a))
                end = {"effective_to": format_ms(d.end_ms)} if d.end_ms is not None else {}
                out.append(envelope(f"sim{self.c.seed}:ops:{i}", "ops.changed", d.start_ms, site, SOURCE, **end,
                                    change_id=f"sim-change-{i}", change_type="system_change",
                                    scope={"level": d.scope_level, "ids": [d.scope_id]},
                                    effective_from=format_ms(d.start_ms),
                                    description="Simulated system change (injected drift)"))
        return out

    def _arrivals(self, site: str, day: date, agents: int) -> list[int]:
        rng = self.rng
        volume = agents * CALLS_PER_AGENT_DAY * WEEKDAY[day.weekday()]
        times = []
        for hour, share in HOURLY.items():
            n = _poisson(rng, volume * share)
            base = self.c.clock.at_local(site, day, hour)
            for _ in range(n):
                if rng.random() < FIRST_QUARTER_SHARE:
                    times.append(base + int(rng.random() * HOUR_MS / 4))
                else:
                    times.append(base + HOUR_MS // 4 + int(rng.random() * HOUR_MS * 3 / 4))
        times.sort()
        return times

    def _site_day(self, site: str, day: date) -> list[dict]:
        """A site's local day: shifts, breaks and calls."""
        rng, out = self.rng, []
        at = lambda hour: self.c.clock.at_local(site, day, hour)  # a local hour of the day, as UTC ms
        agents = [a for a in self.agents if a.site == site]
        lang = "zh" if int(site.rsplit("-", 1)[1]) % 2 else "en"
        breaks: dict[str, list[tuple[int, int, str]]] = {}
        heap = []
        for a in agents:
            s0, s1 = at(a.shift[0]), at(a.shift[1])
            mid = (s0 + s1) // 2
            plan = [(s0 + 2 * HOUR_MS, s0 + 2 * HOUR_MS + 15 * 60_000, "break"),
                    (mid, mid + HOUR_MS, "lunch"),
                    (s1 - 2 * HOUR_MS, s1 - 2 * HOUR_MS + 15 * 60_000, "break")]
            if rng.random() < 0.15:
                start = s0 + rng.randint(1, 7) * HOUR_MS
                plan.append((start, start + 30 * 60_000, rng.choice(["training", "coaching", "meeting"])))
            plan.sort()
            breaks[a.id] = plan
            ev = lambda kind, t, state, reason=None, a=a: out.append(envelope(
                f"sim{self.c.seed}:{a.id}:{t}:{kind}", "agent.state_changed", t, site, SOURCE,
                agent_id=a.id, state=state, reason=reason))
            ev("login", s0, "logged_in")
            ev("ready", s0, "available")
            for b0, b1, why in plan:
                ev(f"nr-{why}", b0, "not_ready", why)
                ev(f"back-{why}", b1, "available")
            ev("logout", s1, "logged_out")
            heapq.heappush(heap, (s0, a.id))
        by_id = {a.id: a for a in agents}
        ends = {a.id: at(a.shift[1]) for a in agents}
        types, weights = list(CALL_TYPES), [v[0] for v in CALL_TYPES.values()]
        recent = self.callers.setdefault(site, [])
        for arrival in self._arrivals(site, day, len(agents)):
            self._n += 1
            call = f"{site}-{day:%Y%m%d}-{self._n:07d}"
            ctype = rng.choices(types, weights)[0]
            if recent and rng.random() < 0.25:
                caller = recent[-1 - int(rng.random() * min(len(recent), 2000))]
            else:
                caller = f"+86 1{rng.randint(30, 99)}{rng.randint(0, 99_999_999):08d}"
                recent.append(caller)
            ivr = int(rng.uniform(5, 40) * 1000)
            queued = arrival + ivr
            e = lambda etype, t, **f: out.append(envelope(self._id(call, etype), etype, t, site, SOURCE, call_id=call, **f))
            e("call.offered", arrival, queue_id=ctype, call_type=ctype, caller_hash=self.hash(caller))
            if rng.random() < 0.03:  # hangs up in the IVR
                e("call.abandoned", queued, stage="ivr")
                continue
            e("call.queued", queued, queue_id=ctype, priority=0)
            agent, free_at = self._next_agent(heap, by_id, breaks, ends, queued)
            patience = int(rng.expovariate(1 / PATIENCE_MEAN_S) * 1000)
            if agent is None or free_at - queued > patience:
                e("call.abandoned", queued + patience, queue_id=ctype, stage="queue", reason="caller_hangup")
                if agent is not None:
                    heapq.heappush(heap, (free_at, agent.id))
                continue
            answered = max(queued, free_at) + int(rng.uniform(2, 8) * 1000)
            heapq.heappush(heap, (self._serve(e, agent, call, ctype, answered, lang, out), agent.id))
        recent[:] = recent[-5000:]
        return out

    def _next_agent(self, heap, by_id, breaks, ends, t) -> tuple[Agent | None, int]:
        """The agent free soonest for a call queued at ``t`` (skipping breaks and ended shifts)."""
        while heap:
            free_at, agent_id = heapq.heappop(heap)
            start = max(free_at, t)
            if start >= ends[agent_id]:
                continue  # off shift for the rest of the day
            plan = breaks[agent_id]
            i = bisect.bisect_right(plan, (start, math.inf, "")) - 1
            if i >= 0 and plan[i][0] <= start < plan[i][1]:
                heapq.heappush(heap, (plan[i][1], agent_id))
                continue
            return by_id[agent_id], free_at
        return None, 0

    def _serve(self, e, a: Agent, call: str, ctype: str, answered: int, lang: str, out: list) -> int:
        """Events of an answered call; returns when the agent is free again."""
        rng = self.rng
        _, median, sigma = CALL_TYPES[ctype]
        factor = a.aht_factor
        qa_mean, apologises = a.qa_mean, a.apologises
        hold_factor, transfer_p = 1.0, TRANSFER_P
        for d in self.c.drifts:
            k = d.strength(a, answered)
            if not k:
                continue
            if d.kind == "aht":
                factor *= 1 + (d.factor - 1) * k
            elif d.kind == "qa":
                qa_mean += d.delta * k
            elif d.kind == "apology":
                apologises *= 1 - k
            elif d.kind == "hold":
                hold_factor *= 1 + (d.factor - 1) * k
            elif d.kind == "transfer":
                transfer_p *= 1 + (d.factor - 1) * k
        talk = int(rng.lognormvariate(math.log(median * factor), sigma) * 1000)
        e("call.agent_offered", answered - 3000, queue_id=ctype, agent_id=a.id, answered=True, ring_ms=3000)
        e("call.answered", answered, queue_id=ctype, agent_id=a.id)
        hold = None
        if rng.random() < HOLD_P:
            h0 = answered + int(talk * rng.uniform(0.2, 0.6))
            hold = (h0, h0 + int((rng.expovariate(1 / 60) * 1000 + 5000) * hold_factor))
            e("call.held", hold[0], agent_id=a.id)
            e("call.resumed", hold[1], agent_id=a.id)
        end = answered + talk + (hold[1] - hold[0] if hold else 0)
        if rng.random() < transfer_p:
            e("call.transferred", end - 2000, from_agent_id=a.id, to_queue_id="complaints" if ctype != "complaints" else "billing",
              transfer_type="blind")
        e("call.ended", end, agent_id=a.id, ended_by=rng.choice(["agent", "caller"]))
        acw = int(rng.expovariate(1 / 25) * 1000) + 3000
        score = max(0.0, min(100.0, rng.gauss(qa_mean, 7)))
        resolved = rng.random() < 0.55 + score / 250
        e("call.wrapup_ended", end + acw, agent_id=a.id, disposition=f"{ctype}/handled", resolved=resolved)
        e("recording.completed", end + 1000, recording_id=f"rec-{call}", agent_id=a.id, duration_ms=end - answered,
          storage_uri=f"s3://callqa-sim/{a.site}/{call}.wav")
        greeted = rng.random() < a.greets
        apologised = hold is not None and rng.random() < apologises
        self.truth.calls += 1
        noise = random.Random(f"{self.c.seed}:{call}:label").gauss(0, self.c.label_noise) if self.c.label_noise else 0.0
        if score + noise < POOR_SCORE or (hold is not None and not apologised):
            self.truth.poor_calls.append(call)
        e("speech.analyzed", end + 60_000, agent_id=a.id, language=lang,
          utterances=self._script(lang, a, ctype, end - answered, hold and (hold[0] - answered, hold[1] - answered),
                                  greeted, apologised),
          sentiment={"customer": round(max(-1.0, min(1.0, (score - 75) / 30 + rng.gauss(0, 0.2))), 2),
                     "agent": round(max(-1.0, min(1.0, rng.gauss(0.4, 0.2))), 2)})
        items = None  # the call's items as a reviewer scores them (what its survey's CSAT follows)
        if self.c.closed_loop:  # reviewers evaluate the calls callqa queues (``review``)
            review = random.Random(f"{self.c.seed}:{call}:review")
            items = self._items(score, hold is not None, apologised, greeted, review)
            self.reviewable[call] = (a.id, a.site, end, items, self._evaluator(review, a.site, lang))
            truth = self.truth.qa_pct.setdefault(a.id, [0.0, 0])
            truth[0] += 100 * sum(i["score"] for i in items) / sum(i["max_score"] for i in items)
            truth[1] += 1
        elif rng.random() < self.c.qa_sample_p:
            at, evaluator = end + rng.randint(1, 48) * HOUR_MS, self._evaluator(rng, a.site, lang)  # drawn in this order
            items = self._items(score, hold is not None, apologised, greeted)
            e("evaluation.submitted", at, evaluation_id=f"ev-{call}", agent_id=a.id, evaluator_id=evaluator,
              form_id=DEFAULT_FORM[0], form_version=DEFAULT_FORM[1], kind="human", items=items)
        self._survey(e, a, call, ctype, end, score, hold is not None, apologised, greeted, resolved, items)
        self._calibration(out, a, call, end, score, hold is not None, apologised, greeted)
        return end + acw

    def _survey(self, e, a: Agent, call: str, ctype: str, end: int, score: float, held: bool, apologised: bool,
                greeted: bool, resolved: bool, items: list[dict] | None) -> None:
        """A post-call survey for SURVEY_P of the calls, its CSAT driven by the call's items (see CSAT_ITEM_WEIGHTS).
        Drawn from the call's own generator, so the rest of the traffic stays as it was for a seed."""
        rng = random.Random(f"{self.c.seed}:{call}:survey")
        if rng.random() >= self.c.survey_p:
            return
        items = items or self._items(score, held, apologised, greeted, rng)
        failed = {i["item_id"] for i in items if i["score"] < ITEM_PASS_SHARE * i["max_score"]}
        mean = CSAT_BASE - sum(w for item, w in CSAT_ITEM_WEIGHTS.items() if item in failed)
        if rng.random() < CSAT_MOOD_P:
            csat = rng.randint(1, 5)
        else:
            csat = int(mean) + (rng.random() < mean - int(mean))
        nps = max(0, min(10, round(2.4 * csat - 1.5 + rng.gauss(0, 1.2)))) if rng.random() < 0.6 else None
        said_resolved = (resolved != (rng.random() < 0.1)) if rng.random() < 0.8 else None
        ivr = rng.random() < 0.7
        at = end + (int(rng.uniform(20, 120) * 1000) if ivr else int(rng.uniform(0.5, 20) * HOUR_MS))
        e("survey.completed", at, survey_id=f"sv-{call}", agent_id=a.id, queue_id=ctype, csat=csat, nps=nps,
          resolved=said_resolved, channel="ivr" if ivr else "sms")

    def _calibration(self, out: list, a: Agent, call: str, end: int, score: float, held: bool, apologised: bool,
                     greeted: bool) -> None:
        """Now and then a calibration session: the same call scored by every evaluator and the lead.
        Drawn from the call's own generator, so the rest of the traffic stays as it was for a seed."""
        rng = random.Random(f"{self.c.seed}:{call}:calibration")
        if rng.random() >= CALIBRATION_P:
            return
        for i, (evaluator, bias) in enumerate(self._calibration_bias().items()):
            out.append(envelope(
              f"sim{self.c.seed}:{call}:calibration:{evaluator}", "evaluation.submitted", end + 24 * HOUR_MS + i * 600_000,
              a.site, SOURCE, call_id=call, evaluation_id=f"cal-{call}-{evaluator}", agent_id=a.id, evaluator_id=evaluator, form_id=DEFAULT_FORM[0], form_version=DEFAULT_FORM[1],
              kind="calibration", items=self._items(max(0.0, min(100.0, score + bias)), held, apologised, greeted, rng)))

    def _evaluator(self, rng: random.Random, site: str, lang: str) -> str:
        """Who scores a call: qa-01..qa-06, or with named reviewers one of those of its site and language (any
        reviewer when none is)."""
        if not self.c.reviewers:
            return f"qa-{rng.randint(1, 6):02d}"
        pool = [r.id for r in self.c.reviewers if r.covers(site) and r.speaks(lang)] or [r.id for r in self.c.reviewers]
        return pool[rng.randint(1, len(pool)) - 1]

    def _calibration_bias(self) -> dict[str, float]:
        """Each calibration evaluator's bias: CALIBRATION_BIAS, or with named reviewers the lead's and, in the
        file's order, the biases of qa-01, qa-02, ... in turn (so the third reviewer is 9 points harsh)."""
        if not self.c.reviewers:
            return CALIBRATION_BIAS
        biases = [b for who, b in CALIBRATION_BIAS.items() if who != "qa-lead"]
        return {"qa-lead": 0.0, **{r.id: biases[i % len(biases)] for i, r in enumerate(self.c.reviewers)}}

    def _items(self, score: float, held: bool, apologised: bool, greeted: bool,
               rng: random.Random | None = None) -> list[dict]:
        rng, ratio = rng or self.rng, score / 100
        items = []
        for item, spec in load_form(*DEFAULT_FORM).items.items():
            max_score = spec["max"]
            if item == "waiting.apology_after_hold":
                value = max_score if not held or apologised else 0
            elif item == "greeting.standard":
                value = max_score if greeted else 0
            else:
                value = round(max(0.0, min(1.0, rng.gauss(ratio, 0.08))) * max_score)
            items.append({"item_id": item, "score": value, "max_score": max_score})
        return items

    def _script(self, lang, a: Agent, ctype: str, length: int, hold, greeted: bool, apologised: bool) -> list[dict]:
        p, lines, t = PHRASES[lang], [], 0

        def say(who, text, dur=3000):
            nonlocal t
            lines.append({"speaker": who, "start_ms": t, "end_ms": t + dur, "text": text})
            t += dur + 400

        say("agent", p["greeting"].format(agent=a.id[-4:]) if greeted else p["need"])
        say("customer", p["customer"].format(topic=ctype))
        if hold:
            t = max(t, hold[0] - 3500)
            say("agent", p["hold"])
            t = hold[1]
            if apologised:
                say("agent", p["apology"])
        t = max(t, length - 12_000)
        say("agent", p["answer"])
        say("agent", p["other"])
        say("customer", p["bye"], 1500)
        say("agent", p["thanks"], 2000)
        return lines


def _poisson(rng: random.Random, mean: float) -> int:
    """Poisson draw (normal approximation for large means, exact below)."""
    if mean > 50:
        return max(0, int(round(rng.gauss(mean, math.sqrt(mean)))))
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k
