"""KPI windows: the counters each call, segment and agent-state interval adds to its windows.

Windows hold sums only, so a change is applied as a difference (retract the old contribution, add
the new): updates are O(1), order-independent, and a duplicate event never counts twice. Ratios
(ASA, service level, AHT, ...) are derived from the sums when a row is made; the formula table is in
README.md. The longest wait comes from ``wait_hist``, a count of waits per whole second, which can
be retracted like the sums.

Window keys are ``level|site|entity|size_s|start_ms`` strings (they are Kafka keys too). Site and
queue windows carry call counters; team and agent windows carry segment and agent-state counters.
Windows of whole days start at their site's local midnight (``KpiConfig.clock``, ``callqa.core.clock``);
shorter ones are aligned to UTC.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field

from schemas import format_ms

from .clock import SiteClock
from .expiry import Expiry

COUNTERS = (
    "offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "incomplete",
    "sl_numerator", "sl_denominator", "wait_answered_ms",
    "handled", "talk_ms", "hold_ms", "hold_count", "acw_ms", "transferred",
    "transferred_in", "callbacks_queued", "callbacks_handled",
    "fcr_eligible", "fcr_resolved", "logged_in_ms", "not_ready_ms",
    "qa_human_n", "qa_human_score", "qa_human_max", "qa_auto_n", "qa_auto_score", "qa_auto_max",
    "qa_test_call_n", "qa_test_call_score", "qa_test_call_max",
    "qa_etiquette_score", "qa_etiquette_max", "qa_knowledge_score", "qa_knowledge_max",
    "qa_procedure_score", "qa_procedure_max",
    "csat_responses", "csat_sum", "csat_satisfied", "nps_responses", "nps_promoters", "nps_detractors",
    "survey_resolved_responses", "survey_resolved",  # post-call surveys (callqa.core.surveys)
)
HIST = "wait_hist"  # waits counted per whole second: the longest wait, retractable
LIVE_WINDOW_S = 300  # site and queue also get 5-minute buckets: the live "last 30 minutes" sums six
SL_FORMULAS = ("answered_and_abandoned", "offered", "answered")
QUEUE_READINGS = ("standard", "multi_stint")  # QueueMetrics' two readings of a call that visits several queues


@dataclass(frozen=True)
class QueueRules:
    """Service-level rules of a queue."""

    sl_threshold_s: int = 20
    short_abandon_s: int = 5
    sl_formula: str = "answered_and_abandoned"  # in-SL answers over: answered + abandoned | offered | answered


@dataclass(frozen=True)
class KpiConfig:
    window_sizes_s: tuple[int, ...] = (900, 3600, 86400)
    default_rules: QueueRules = QueueRules()
    queue_rules: dict[str, QueueRules] = field(default_factory=dict)
    allowed_lateness_s: int = 3600
    call_timeout_s: int = 4 * 3600
    fcr_horizon_s: int = 72 * 3600
    redelivery_s: int = 24 * 3600  # a settled call is known this long after its last event (≤ fcr_horizon_s)
    queue_reading: str = "standard"  # "standard": each queue counts its own stint; "multi_stint": a call counts once, in its first queue
    watermark_quorum: int = 2  # distinct entities that must reach an event time before a watermark moves to it (core.watermark)
    ordering_slack_s: int = 0  # drift charts and the sampler: how long ordered input is held for late arrivals
    clock: SiteClock = field(default_factory=SiteClock)  # each site's time zone (CALLQA_SITE_TIMEZONES)

    def rules(self, queue: str | None) -> QueueRules:
        return self.queue_rules.get(queue or "", self.default_rules)

    def sizes(self, level: str) -> tuple[int, ...]:
        return (LIVE_WINDOW_S, *self.window_sizes_s) if level in ("site", "queue") else self.window_sizes_s

    @property
    def window_retention_ms(self) -> int:
        """How long a window stays open for corrections after it ends (FCR settles last)."""
        return (max(self.fcr_horizon_s, self.call_timeout_s) + self.allowed_lateness_s) * 1000


def window_key(level: str, site: str, entity: str, size_s: int, start_ms: int) -> str:
    return f"{level}|{site}|{entity}|{size_s}|{start_ms}"


def keys_at(config: KpiConfig, t_ms: int, entities: list[tuple[str, str, str]]) -> list[str]:
    """Window keys of every (level, site, entity) at time ``t_ms``, for each window size of the level
    (whole days from the site's local midnight)."""
    out = []
    clock = config.clock
    for level, site, entity in entities:
        for size in config.sizes(level):
            start = t_ms - t_ms % (size * 1000) if clock.utc or size % 86400 else clock.window_start(site, size, t_ms)
            out.append(window_key(level, site, entity, size, start))
    return out


def _merge(into: dict, counters: dict, sign: int = 1) -> None:
    """Add (or, with sign -1, subtract) counters; ``wait_hist`` is a nested count per second."""
    for name, value in counters.items():
        if name == HIST:
            hist = into.setdefault(HIST, {})
            for bucket, n in value.items():
                hist[bucket] = hist.get(bucket, 0) + sign * n
                if not hist[bucket]:
                    del hist[bucket]
            if not hist:
                del into[HIST]
        elif value:
            total = into.get(name, 0) + sign * value
            if total:
                into[name] = total
            else:
                del into[name]


def _copy(counters: dict) -> dict:
    """A fresh copy of ``counters`` without zeros (the form ``_merge`` keeps)."""
    out = {}
    for name, value in counters.items():
        if name == HIST:
            hist = {bucket: n for bucket, n in value.items() if n}
            if hist:
                out[HIST] = hist
        elif value:
            out[name] = value
    return out


def add(into: dict, keys: list[str], counters: dict) -> None:
    """Add ``counters`` to each window of ``keys`` in a contribution map. Windows that get only these
    counters share one dict: a contribution's values are never changed in place."""
    clean = _copy(counters)
    for key in keys:
        held = into.get(key)
        if held is None:
            into[key] = clean
        else:
            merged = _copy(held)
            _merge(merged, clean)
            into[key] = merged


def diff(old: dict, new: dict) -> list[tuple[str, dict]]:
    """Per window, what must be added to move from the old contribution to the new one (windows that
    share counters share their delta, computed once; deltas are not to be changed in place)."""
    deltas, made = [], {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before is after or before == after:
            continue
        pair = (id(before), id(after))
        delta = made.get(pair)
        if delta is None:
            delta = made[pair] = _copy(after) if after else {}
            if before:
                _merge(delta, before, -1)
        if delta:
            deltas.append((key, delta))
    deltas.sort(key=lambda d: d[0])
    return deltas


def _ratio(num: float, den: float, scale: float = 1.0, digits: int = 6) -> float | None:
    return round(num / den / scale, digits) if den else None


_ZEROS = dict.fromkeys(COUNTERS, 0)
_UTC = SiteClock()
_QA = tuple((f"qa_{k}_pct", f"qa_{k}_score", f"qa_{k}_max")
            for k in ("human", "auto", "test_call", "etiquette", "knowledge", "procedure"))


def row(key: str, acc: dict, clock: SiteClock | None = None) -> dict:
    """The KPI row of a window aggregate (what goes to the KPI topic and table). ``local_day``: the
    site's local date of the window's start (``clock``; UTC without one), what the day rollup groups by."""
    level, site, entity, size, start = key.split("|")
    size_s, start_ms = int(size), int(start)
    clock = clock or _UTC
    c = _ZEROS | acc
    hist = c.pop(HIST, None) or {}
    handled = c["handled"]
    staffed = c["logged_in_ms"] - c["not_ready_ms"]
    handle_ms = c["talk_ms"] + c["hold_ms"] + c["acw_ms"]
    longest = max(map(int, hist), default=0)
    out = {"level": level, "site_id": site, "entity_id": entity, "window_s": size_s,
           "window_start": format_ms(start_ms), "window_end": format_ms(clock.window_end(site, size_s, start_ms)),
           "local_day": clock.local_date(site, start_ms)}
    out |= {name: c[name] for name in COUNTERS}
    out.update({
        "max_wait_ms": longest * 1000,
        "service_level": _ratio(c["sl_numerator"], c["sl_denominator"]),
        "asa_s": _ratio(c["wait_answered_ms"], c["answered"], 1000, 3),
        "abandon_rate": _ratio(c["abandoned"], c["offered"]),
        "aht_s": _ratio(handle_ms, handled, 1000, 3),
        "avg_talk_s": _ratio(c["talk_ms"], handled, 1000, 3),
        "avg_hold_s": _ratio(c["hold_ms"], handled, 1000, 3),
        "avg_acw_s": _ratio(c["acw_ms"], handled, 1000, 3),
        "transfer_rate": _ratio(c["transferred"], handled),
        "fcr_rate": _ratio(c["fcr_resolved"], c["fcr_eligible"]),
        "occupancy": _ratio(handle_ms, staffed) if level in ("agent", "team", "site") else None,
        "not_ready_ratio": _ratio(c["not_ready_ms"], c["logged_in_ms"]),
        "csat_pct": _ratio(100 * c["csat_satisfied"], c["csat_responses"], 1, 3),  # top-two box (4-5 of 5)
        "csat_avg": _ratio(c["csat_sum"], c["csat_responses"], 1, 3),
        "nps": _ratio(100 * (c["nps_promoters"] - c["nps_detractors"]), c["nps_responses"], 1, 3),
        "survey_resolved_rate": _ratio(c["survey_resolved"], c["survey_resolved_responses"]),
    })
    out |= {pct: _ratio(100 * c[score], c[most], 1, 3) for pct, score, most in _QA}
    out["longest_wait_s"] = float(longest)
    out["version"] = c.get("version", 0)
    return out


class KpiAggregator:
    """Applies deltas to window aggregates; remembers which windows changed since the last drain."""

    def __init__(self, windows: MutableMapping[str, dict], config: KpiConfig):
        self.windows = windows
        self.config = config
        self.dirty: set[str] = set()
        self._final: list[dict] = []  # rows of changed windows that left the state before a drain
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(k)) for k in windows)

    def _due(self, key: str) -> int:
        _, _, _, size, start = key.split("|")
        return int(start) + int(size) * 1000 + self.config.window_retention_ms

    def apply(self, key: str, delta: dict) -> dict:
        """Apply one delta; returns the window's aggregate."""
        acc = self.windows.get(key)
        if acc is None:
            acc = {"version": 0}
            self.expiry.push(key, self._due(key))
        _merge(acc, delta)
        acc["version"] = acc.get("version", 0) + 1
        self.windows[key] = acc
        self.dirty.add(key)
        return acc

    def drain(self) -> list[dict]:
        """Rows of the windows changed since the last drain."""
        rows = self._final + [row(key, self.windows[key], self.config.clock) for key in sorted(self.dirty)
                              if key in self.windows]
        self._final = []
        self.dirty.clear()
        return rows

    def sweep(self, watermark_ms: int, owns=lambda key: True) -> int:
        """Forget windows past their retention; returns how many."""
        gone = 0
        for key in list(self.expiry.due(watermark_ms)):
            if key in self.windows and owns(key):
                if key in self.dirty:
                    self._final.append(row(key, self.windows[key], self.config.clock))
                    self.dirty.discard(key)
                del self.windows[key]
                gone += 1
        return gone
