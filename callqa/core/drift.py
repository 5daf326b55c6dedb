"""Drift charts with a false-alarm budget: one-sided CUSUMs of log-likelihood ratios.

A series (an agent's handle time, a team's missing apologies, ...) is charted on the scale its data
has (``Family``):

- ``normal``: scores (QA %), as means of ``subgroup`` observations standardised by the baseline;
- ``log``: durations (handle, hold), as means of log(seconds) (they are log-normal); ``positive``
  drops zeros (hold time is charted over the calls that had a hold);
- ``binary``: yes/no per call with 1 the worse outcome (a transfer, a negative customer, a failed
  automatic-QA item), each a Bernoulli trial against the baseline rate.

Each step adds the log-likelihood ratio of "worse by the design shift" against "as expected" (Page's
CUSUM; normal: z − δ/2 per step in z units, δ = ``shift`` sigmas of a step; binary: x·ln(p1/p0) +
(1−x)·ln((1−p1)/(1−p0)) with odds(p1) = odds(p0)·``odds_ratio``) and signals when the sum passes a
limit h set from the in-control average run length (ARL0, in steps) the false-alarm budget allows:
normal, Siegmund's approximation ARL0 = (e^{2kb} − 2kb − 1)/(2k²), k = δ/2, b = h + 1.166 (Montgomery,
Introduction to Statistical Quality Control, 8th ed., §9.1.7); binary, h = ln ARL0 (Lorden's bound on
any likelihood-ratio CUSUM, 1971). The bound runs 4 to 30 times longer than asked when the rate is known;
it is kept because a binomial series' rate is estimated from few events (an agent's holds): the tighter
ln(ARL0 · KL0) raised false alarms with no drift from 0–0.018 to 0–0.094 per agent-month in
``bench/monitoring.py`` and found drifts only 5–20 % sooner.

A binary chart may run a second CUSUM beside it (``stop``), designed for the worse outcome becoming
nearly certain (an agent who no longer apologises at all): both add up the same steps, the chart
signals when either passes the limit, and each is given twice the run length (h = ln 2·ARL0). An alarm
of either clears on the recovery CUSUM of the ``odds_ratio`` design.

"As expected" is the series' baseline plus ``shift``: the current deviation of its peers (an agent is
compared with their team in the same hours, so a team-wide move is the team's, not fifteen agents').
The baseline keeps learning slowly (weight max(1/n, 1/``learn``), ``learn`` steps: about four weeks of
the series) while the series is in control,
and a short baseline is shrunk towards the peers' (``prior`` pseudo-observations). After a signal the
series is *in alarm* until the opposite CUSUM (back to expected against still shifted) passes
``recover`` (ln 1000); an alarm held ``accept_ms`` becomes the new baseline (a lasting change).

State is one list of floats per series; an update is O(1).

>>> c, s = Family("normal", worse=-1, floor=1.0), new_state()  # a QA score: lower is worse
>>> [step(s, 85.0 + (i % 5 - 2), c, 20.0) for i in range(200)].count(None)
200
>>> next(i for i in range(50) if step(s, 80.0, c, 20.0)) < 10
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

# state layout: one list per series (S2: the binary ``stop`` design's CUSUM)
N, MEAN, VAR, S, ALARM, R, OPENED, SUM, COUNT, WSUM, W2, S2 = range(12)
NEW = (0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0)
P_CLIP = (0.002, 0.998)


@dataclass(frozen=True)
class Family:
    """How a metric is charted: ``scale`` normal | log | binary; ``subgroup`` observations per step
    (normal and log); ``shift`` the design shift in sigmas of a step (normal, log) and ``odds_ratio``
    (binary); ``worse`` +1 when higher is worse (normal, log; binary: 1 is always the worse outcome);
    ``positive`` charts only values > 0 (log) or turns a value into 1 when > 0 (binary); ``floor`` the
    least per-observation sigma (in charted units); ``warmup`` steps before the chart may signal;
    ``stop`` (binary) a second CUSUM beside the ``odds_ratio`` one, designed for the worse outcome's
    probability rising to ``stop`` (a behaviour that stops), the two sharing the false-alarm allowance;
    ``by_design`` (weighted scores) adjusts each score to its inclusion probability's band (the monitor's
    ``_design_mix``)."""

    scale: str
    subgroup: int = 1
    shift: float = 1.0
    odds_ratio: float = 3.0
    worse: int = 1
    positive: bool = False
    floor: float = 0.0
    warmup: int = 20
    stop: float = 0.0
    by_design: bool = False
    learn: int = 500
    prior: float = 5.0
    recover: float = 6.9  # ln 1000
    accept_ms: int = 7 * 86_400_000


@dataclass(frozen=True)
class Signal:
    """Evidence of a drift: the statistic and its limit, the value, the expected level and its sigma."""

    chart: str  # cusum | cleared | accepted
    direction: int
    value: float
    statistic: float
    limit: float
    baseline_mean: float
    baseline_sigma: float
    observations: int


class Step(NamedTuple):
    """One step of a chart as it saw it (charted units): the subgroup's value ``y`` and its expected
    value ``mu``; ``a``, ``b``: the step's log-likelihood ratio is ``x·a + (1−x)·b`` (binary), or
    ``a`` is the step's sigma (normal, log); the CUSUM statistic before and after the step (after: the
    value that crossed the limit when it signalled); whether it could signal (``ready``) and whether it
    was in alarm already (the statistic then rests while the recovery CUSUM runs)."""

    y: float
    mu: float
    a: float
    b: float
    before: float
    after: float
    ready: bool
    in_alarm: bool


def new_state() -> list[float]:
    return list(NEW)


def cusum_limit(arl0: float, shift: float) -> float:
    """The limit h (in sigmas) of a one-sided normal CUSUM with reference k = shift/2 whose in-control
    average run length is ``arl0`` steps (Siegmund's approximation solved by fixed point)."""
    k = shift / 2
    b = 3.0
    for _ in range(60):
        after = math.log(max(2 * k * k * arl0 + 2 * k * b + 1, 1.0 + 1e-9)) / (2 * k)
        if after == b:  # a fixed point in floats: the steps left would change nothing
            break
        b = after
    return max(b - 1.166, 0.5)


def limit(family: Family, arl0: float) -> float:
    """The limit for an in-control run length of ``arl0`` steps (see the module's docstring); a binary
    chart with a ``stop`` design runs two CUSUMs, each for twice the run length (Bonferroni)."""
    if family.scale != "binary":
        return cusum_limit(arl0, family.shift)
    return math.log(max(arl0, 2.0) * (2 if family.stop else 1))


def statistic(s: list[float]) -> float:
    """The chart's CUSUM statistic: the higher of its designs'."""
    return max(s[S], s[S2]) if len(s) > S2 else s[S]


def transform(family: Family, x: float) -> float | None:
    """The charted value of an observation, or None when it is not charted (a zero on a positive log scale)."""
    if family.scale == "log":
        return math.log(x) if x > 0 else (None if family.positive else 0.0)
    if family.scale == "binary":
        return 1.0 if (x > 0 if family.positive else x >= 0.5) else 0.0
    return x


def expected(s: list[float], family: Family, peer: tuple[float, float, float] | None) -> tuple[float, float]:
    """The expected charted value and per-observation variance: the baseline shrunk towards the
    peers' baseline (``peer`` = their baseline mean, variance, current deviation), plus the peers'
    current deviation."""
    n, mean, var = s[N], s[MEAN], s[VAR]
    shift = 0.0
    if peer is not None:
        p_mean, p_var, shift = peer
        w = n / (n + family.prior)
        mean, var = w * mean + (1 - w) * p_mean, w * var + (1 - w) * p_var
    if family.scale == "binary":
        p = min(P_CLIP[1], max(P_CLIP[0], mean + shift))
        return p, p * (1 - p)
    return mean + shift, max(var, family.floor ** 2, 1e-12)


def step(s: list[float], x: float, family: Family, h: float, peer: tuple[float, float, float] | None = None,
         at_ms: int = 0, weight: float = 1.0, learn: float | None = None, level: float | None = None,
         seen: list | None = None) -> Signal | None:
    """Add one observation (raw units); returns a Signal when the series goes into alarm (``cusum``),
    comes back (``cleared``) or its alarm becomes the new baseline (``accepted``). ``weight``: an
    inverse inclusion probability (normal and log scales): a subgroup's value is the weighted mean, as
    informative as (Σw)²/Σw² observations. ``learn``: the baseline's memory in steps (default
    ``family.learn``; the monitor gives four weeks of the series' steps). ``level``: the series' current
    level (charted units), the new baseline when an alarm is accepted (without it, learnt afresh).
    ``seen``: when given, a completed step appends what the chart saw (``Step``), for its stored state."""
    y = transform(family, x)
    if y is None:
        return None
    if len(s) == S2:  # saved before the stop design
        s.append(0.0)
    if not family.stop:
        s[S2] = 0.0
    if family.scale != "binary":
        s[SUM] += weight * y
        s[COUNT] += 1
        s[WSUM] += weight
        s[W2] += weight * weight
        if s[COUNT] < family.subgroup:
            return None
        y, m = s[SUM] / s[WSUM], s[WSUM] ** 2 / s[W2]
        s[SUM], s[COUNT], s[WSUM], s[W2] = 0.0, 0, 0.0, 0.0
    else:
        m = 1
    mu, var = expected(s, family, peer)
    shift = peer[2] if peer is not None else 0.0
    ready = s[N] >= family.warmup
    if family.scale == "binary":
        p0 = mu
        odds = p0 / (1 - p0) * family.odds_ratio
        p1 = odds / (1 + odds)
        designs = [(math.log(q / p0), math.log((1 - q) / (1 - p0))) for q in ([p1, max(family.stop, p1)] if family.stop else [p1])]
        llr, llr2 = (designs[0][0], designs[-1][0]) if y else (designs[0][1], designs[-1][1])
        sigma = math.sqrt(var)
    else:
        sigma = math.sqrt(var / m)
        z = family.worse * (y - mu) / sigma
        llr = llr2 = z - family.shift / 2
    out = None
    start = statistic(s)
    higher = 1 if s[S2] > s[S] else 0  # the design the step's stored a, b are of: the higher as it begins
    if ready and not s[ALARM]:
        s[S] = max(0.0, s[S] + llr)
        if family.stop:
            s[S2] = max(0.0, s[S2] + llr2)
        if statistic(s) > h:
            s[ALARM], s[R], s[OPENED] = 1, 0.0, at_ms
            out = Signal("cusum", family.worse if family.scale != "binary" else 1, _raw(family, y), statistic(s), h,
                         _raw(family, mu), sigma, int(s[N]))
    if seen is not None:  # a binary step's a, b: the log-likelihood ratios of the design higher as it began
        a, b = designs[higher] if family.scale == "binary" else (sigma, 0.0)
        seen.append(Step(y, mu, a, b, start, statistic(s), bool(ready), bool(s[ALARM]) and out is None))
    if out is not None:
        s[S] = s[S2] = 0.0
    elif s[ALARM]:
        s[R] = max(0.0, s[R] - llr)
        if s[R] > family.recover or at_ms - s[OPENED] >= family.accept_ms:
            accepted = s[R] <= family.recover
            out = Signal("accepted" if accepted else "cleared", 0, _raw(family, y), s[R], family.recover,
                         _raw(family, mu), sigma, int(s[N]))
            s[ALARM], s[R], s[S], s[S2] = 0, 0.0, 0.0, 0.0
            if accepted and level is None:  # a lasting change: learn the new level afresh
                s[N], s[MEAN], s[VAR] = 0, 0.0, 0.0
            elif accepted:  # a lasting change at a known level: the baseline moves there, keeping its spread
                s[N], s[MEAN] = family.warmup, level
            return out
    if not s[ALARM]:  # learn only while in control
        _learn(s, y - shift, m, family, learn or family.learn)
    return out


def _learn(s: list[float], y: float, m: float, family: Family, learn: float) -> None:
    s[N] += 1
    w = max(1 / s[N], 1 / learn)
    d = y - s[MEAN]
    s[MEAN] += w * d
    if family.scale != "binary":  # per-observation variance from subgroup means: m × var(mean)
        s[VAR] = (1 - w) * (s[VAR] + w * d * d * m) if s[N] > 1 else 0.0


def _raw(family: Family, y: float) -> float:
    return round(math.exp(y), 3) if family.scale == "log" else round(y, 4)
