"""The HTML report: the dashboards' queries (sinks/queries.py) over a period, as one self-contained
page with charts (plotly, its script inlined) and the figures behind them as tables.

It opens with **Today** (the period's last day, or ``Options.day``): the quality incidents open at the
day's end and those cleared during it, each with the chart of its series against the drift detector's
own expected value and limits (the ``detector_state`` rows the monitor stored: nothing is recomputed
here); the calls to review that day and why (each at its site's local time: the queue's day is the site's
local day), summed up first; the day's plan and the calls no reviewer can take; the agents and the
reviewers behind their monthly target (a reviewer's: the reviews their daily plans gave them,
``review_plan.reviewer_targets``); and the calibration outliers of the month. Every review row links to its
recording (``CALLQA_RECORDING_URL``) and every agent to their row in the report's Agents section
(``#agent-<id>``: the report is self-contained, so the agent's page is a section of it). Then the period:
sites, service by hour (one small chart per site), quality (each site's human-QA chart is its detector's
state), review rates (the top ten), coverage, calibration and the agents.

The period is whole days, [first midnight, the midnight after the last day): its queries are expanded as
Grafana expands a range, with its last millisecond as the inclusive end (``expand``). No ratio is shown
from fewer than ``Options.min_calls`` calls (``CALLQA_MIN_CALLS_FOR_RATIO``): the cell is blank and the
point left out. Works on any store: the embedded one after ``callqa demo`` or a replay, or a
ClickHouse server. Every table cell carries its raw value (``data-value``) beside the formatted text; every
chart of a detector's series carries the series in each trace's ``meta``.
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import quote

import jinja2
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from callqa import csat
from callqa.config import SCRIPT_LINK
from callqa.core.calibration import DEFAULT_THRESHOLD_PCT
from callqa.core.monitor import BY_LEVEL, METRICS
from callqa.core.sampling import PolicyConfig
from callqa.core.thresholds import RULES
from callqa.reasons import BAND_WORDS, METHOD_WORDS, metric_words, why
from sinks import macros
from sinks import queries as q

from .review_plan import daily_plan, local_hhmm, reviewer_targets

VARIABLES = (("site", q.VAR_SITE), ("queue", q.VAR_QUEUE), ("team", q.VAR_TEAM), ("agent", q.VAR_AGENT))
QUERIES = {
    "sites": q.SITE_COMPARISON, "hourly": q.SITE_HOURLY_CALLS, "qa_sites": q.site_daily("qa_human_pct"),
    "drifts": q.DRIFT_ALERTS, "agents": q.AGENT_SUMMARY,
    "rate_trend": q.SAMPLING_RATE_TREND, "rates": q.SAMPLING_RATES_NOW, "coverage": q.COVERAGE,
    "queue": q.REVIEW_QUEUE_DAILY, "calibration": q.CALIBRATION_EVALUATORS, "alerts": q.ALERTS_OPENED,
}
RATIO_COLUMNS = {"service_level", "abandon_rate", "transfer_rate", "fcr_rate", "occupancy", "rate",
                 "selected_share", "target_share", "agent_rate", "recorded_share"}
TARGETS = {r.metric: r.warning for r in RULES}  # the threshold rules' warning levels, shown as targets
# which count of calls each ratio is drawn from: a ratio of fewer than Options.min_calls is left out
GUARDED = {"calls_offered": ("service_level", "asa_s", "abandon_rate"),
           "calls_handled": ("aht_s", "transfer_rate", "fcr_rate", "occupancy"),
           "recorded": ("selected_share",), "surveys": ("csat_pct", "nps")}
# column titles with their units and targets
TITLES = {
    "site_id": "site", "agent_id": "agent", "team_id": "team", "evaluator_id": "evaluator",
    "calls_offered": "calls offered", "calls_handled": "calls handled",
    "service_level": f"service level, % (target ≥ {TARGETS['service_level']:.0%})",
    "asa_s": f"speed of answer, s (target ≤ {TARGETS['asa_s']:g} s)",
    "abandon_rate": f"abandoned, % (target ≤ {TARGETS['abandon_rate']:.0%})",
    "aht_s": "handle time, s", "transfer_rate": "transferred, %", "fcr_rate": "first-call resolution, %",
    "occupancy": "occupancy, %", "qa_human_pct": "human QA, %", "qa_auto_pct": "automatic QA, %",
    "opened_at": "opened (UTC)", "value": "value", "baseline": "expected", "statistic": "CUSUM statistic",
    "limit": "CUSUM limit", "entity_id": "scope", "rate": "review rate, %",
    "factors_changed": "factors changed", "because": "because of", "since": "since (UTC)",
    "time": "day", "queued": "calls queued", "method": "method",
    "recorded": "recorded calls", "selected": "selected", "selected_share": "selected, %",
    "target_share": "target: base rate, %", "evaluated": "human evaluations",
    "target_evaluations": "target, pro rata", "calls": "calls", "mean_deviation": "mean deviation, points",
    "mean_abs_deviation": f"mean |deviation|, points (flag > {DEFAULT_THRESHOLD_PCT:g})",
    "flagged": f"flagged (> {DEFAULT_THRESHOLD_PCT:g} points)", "kind": "kind", "metric": "metric",
    "opened": "opened", "status": "status", "level": "level", "recorded_share": "recorded, %",
    "csat_pct": "CSAT, % satisfied (4-5 of 5)", "nps": "NPS", "surveys": "surveys answered",
}
# the service KPIs the threshold rules watch, in words (the drift metrics' are callqa.reasons.METRIC_WORDS)
KPI_WORDS = {"service_level": "service level", "asa_s": "speed of answer", "abandon_rate": "abandoned calls"}
STATUS_WORDS = {"open": "open", "widened": "open", "narrowed": "open", "updated": "open", "closed": "cleared",
                "merged": "merged"}
MAX_CHARTED_METRICS = 3  # an incident's chart shows at most this many of its metrics, side by side


@dataclass(frozen=True)
class Options:
    """``day``: the report's "Today" (default: the period's last day); ``recording_url``: the link of a
    recording (``CALLQA_RECORDING_URL``); ``min_calls``: the least calls a ratio is drawn from
    (``CALLQA_MIN_CALLS_FOR_RATIO``); ``monthly_target``: human evaluations per agent and month
    (``CALLQA_QA_MONTHLY_TARGET``); ``top``: agents on the review-rate chart; ``config``: the day's plan
    (``callqa plan``) and each site's time zone, when given."""

    day: date | None = None
    recording_url: str = "{storage_uri}"
    min_calls: int = 20
    monthly_target: int = PolicyConfig.min_per_month
    top: int = 10
    config: object | None = None  # callqa.config.Config: the day's plan (reviewers) and the sites' time zones

    @classmethod
    def from_config(cls, config, day: date | None = None) -> Options:
        return cls(day=day, recording_url=config.recording_url, min_calls=config.min_calls_for_ratio,
                   monthly_target=config.qa_monthly_target, config=config)


class EmptyStore(ValueError):
    """The store holds no KPI history for the period."""


NO_HISTORY = "the store holds no KPI history yet: replay, ingest or simulate some traffic first"


def data_days(store) -> tuple[date, date]:
    """The first and the last day the store holds calls for."""
    (first, last), = store.query(q.DATA_DAYS)[1]
    if not last or last.startswith("1970"):
        raise EmptyStore(NO_HISTORY)
    return date.fromisoformat(first), date.fromisoformat(last)


def data_period(store) -> tuple[date, date]:
    """The last seven days that hold data (the report's default period)."""
    end = data_days(store)[1]
    return end - timedelta(days=6), end


def bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The whole days from ``first`` to ``last`` as a time range."""
    return datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC)


LAST_MS = timedelta(milliseconds=1)
_TO_TIME = re.compile(r"\$__toTime\b")  # not $__toTime_ms


def expand(sql: str, start: datetime, end: datetime, values: dict[str, list[str]], interval_s: int = 3600) -> str:
    """A dashboard query for the period [start, end) (``end`` exclusive: the midnight after its last day).
    Grafana hands the plugin a range whose end is inclusive (a day ends at 23:59:59.999) and its macros
    keep ``<=`` that end (``$__dateFilter``: ``day <= toDate(end)``); so does the report: ``end`` - 1 ms,
    never the next midnight. The store's times are to the millisecond (DateTime64(3)) where the plugin
    writes ``$__timeFilter`` and ``$__toTime`` to the second, so the report writes them to the millisecond
    (``$__timeFilter_ms``, ``$__toTime_ms``): the period's last second counts, the next day does not."""
    sql = _TO_TIME.sub("$__toTime_ms", sql.replace("$__timeFilter(", "$__timeFilter_ms("))
    return macros.expand(sql, start, end - LAST_MS, values, interval_s=interval_s)


def rows(store, sql: str, start: datetime, end: datetime, values: dict[str, list[str]]) -> list[dict]:
    """A dashboard query run for the period [start, end) (``expand``) and the variables' values, as dicts."""
    columns, found = store.query(expand(sql, start, end, values))
    return [dict(zip(columns, row)) for row in found]


def guard(found: list[dict], minimum: int) -> list[dict]:
    """Leave out (None) every ratio drawn from fewer than ``minimum`` calls (``GUARDED``)."""
    for row in found:
        for count, ratios in GUARDED.items():
            if count in row and (row[count] or 0) < minimum:
                row.update({r: None for r in ratios if r in row})
    return found


def recording_link(template: str, row: dict) -> str:
    """A recording's link: the template with the call's ``storage_uri``, ``call_id`` and ``recording_id``
    (percent-encoded but for ``/`` and ``:``); the default template is the storage URI as it is."""
    if template == "{storage_uri}":
        link = row["storage_uri"]
    else:
        link = template.format(**{k: quote(str(row.get(k) or ""), safe="/:") for k in ("storage_uri", "call_id",
                                                                                       "recording_id")})
    return "" if SCRIPT_LINK.match(link) else link  # a storage URI is input data: never a script to run


def agent_anchor(agent_id: str) -> str:
    """The agent's page: their row in the report's Agents section."""
    return f"#agent-{quote(agent_id, safe='')}"


def minute(value) -> str:
    """A stored time to the minute (UTC)."""
    return str(value)[:16].replace("T", " ") if value else ""


def _family(series: str):
    level, _, _, metric = series.split("|")
    return BY_LEVEL.get((level, metric), METRICS.get(metric))


def shown(family):
    """How a value on a drift metric's scale is written, rounded once: a yes/no metric as a share of calls
    (%), a duration in seconds, a QA score in % (unknown: the number)."""
    if family is None:
        return lambda v: f"{v:,.1f}"
    return ((lambda v: f"{v:.0%}") if family.scale == "binary" else
            (lambda v: f"{v:,.0f} s") if family.scale == "log" else (lambda v: f"{v:.1f} %"))


def axis_title(series: str) -> str:
    """The unit of a series' values on its metric's scale and what one point is (the metric is the
    chart's title)."""
    family = _family(series)
    if family is None:
        return ""
    if family.scale == "binary":
        return "share of calls, %"
    n = family.subgroup
    if family.scale == "log":
        return f"s, geometric mean of {n} calls"
    return f"%, {'one evaluation' if n == 1 else f'mean of {n} evaluations'}"


def scope_words(level: str, entity: str) -> str:
    return f"{level} {entity}"


def _duration(start: str, end: datetime) -> str:
    t = datetime.fromisoformat(str(start)[:19]).replace(tzinfo=UTC)
    minutes = max(0, int((end - t).total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    return (f"{days} d " if days else "") + f"{rest // 60} h {rest % 60:02d} min"


# -- Today ---------------------------------------------------------------------------------------------
def incident_series(incident: dict) -> list[str]:
    """The series an incident's chart shows: per metric (up to ``MAX_CHARTED_METRICS``) the series at the
    incident's scope, else the first of its series on that metric."""
    listed = json.loads(incident["evidence"] or "{}").get("series") or []
    listed = [listed] if isinstance(listed, str) else listed
    chosen = []
    for metric in incident["metric"].split(",")[:MAX_CHARTED_METRICS]:
        own = f"{incident['level']}|{incident['site_id']}|{incident['entity_id']}|{metric}"
        found = own if own in listed else next((s for s in listed if s.endswith(f"|{metric}")), None)
        if found:
            chosen.append(found)
    return chosen


def _evidence(incident: dict, states: list[dict]) -> str:
    """What the incident's first series showed in the hour it opened (its stored state), else the alarm's
    own evidence."""
    opened = str(incident["opened_at"])[:13]
    series = incident["series"][0] if incident["series"] else None
    row = next((s for s in states if s["series"] == series and str(s["time"])[:13] == opened), None)
    if row is not None:
        family = _family(series)
        show = shown(family)
        unit = "calls" if family.scale != "normal" else "evaluations"
        return (f"{metric_words(series.rsplit('|', 1)[1])} {show(row['value'])} over {row['observations']} {unit} "
                f"in the hour it opened, {show(row['expected'])} expected; CUSUM {row['statistic']:.1f} "
                f"past its limit {row['decision_limit']:.1f}")
    e = json.loads(incident["evidence"] or "{}")
    show = shown(_family(series or f"{incident['level']}|{incident['site_id']}|{incident['entity_id']}|"
                                   f"{incident['metric'].split(',')[0]}"))
    number = lambda v: "?" if v is None else show(v)
    return (f"value {number(e.get('value'))}, expected {number(e.get('baseline_mean'))}; "
            f"CUSUM {e.get('statistic', 0):.1f} past its limit {e.get('limit', 0):.1f}")


def calibration_outliers(store, day: date, end: datetime) -> list[dict]:
    """Evaluators with calibration scores flagged this month to the end of ``day``
    (``callqa.core.calibration``: more than ``DEFAULT_THRESHOLD_PCT`` points from the reference)."""
    from callqa.core.calibration import calibrate

    found = store.query(q.CALIBRATION_EVALUATIONS.format(month=f"{day:%Y-%m}"))[1]
    evaluations = [
        {"evaluation_id": r[0], "call_id": r[1], "agent_id": r[2], "evaluator_id": r[3], "form_id": r[4],
         "form_version": r[5], "event_time": r[6].replace(" ", "T"),
         "items": [{"item_id": i, "score": s, "max_score": m} for i, s, m in zip(r[7], r[8], r[9])]}
        for r in found if r[6] < f"{end:%Y-%m-%d %H:%M:%S}"]
    if not evaluations:
        return []
    deviations, _ = calibrate(evaluations)
    by: dict[str, list] = {}
    for d in deviations:
        by.setdefault(d.evaluator_id, []).append(d)
    out = []
    for evaluator, ds in by.items():
        flagged = [d for d in ds if d.flagged]
        if flagged:
            worst = max(ds, key=lambda d: abs(d.deviation))
            out.append({"evaluator_id": evaluator, "calls": len(ds), "flagged": len(flagged),
                        "mean_deviation": round(sum(d.deviation for d in ds) / len(ds), 1),
                        "largest_deviation": round(worst.deviation, 1), "call_id": worst.call_id})
    return sorted(out, key=lambda r: (-r["flagged"], -abs(r["mean_deviation"]), r["evaluator_id"]))


def today(store, day: date, values: dict[str, list[str]], options: Options) -> dict:
    """The decisions of ``day``: incidents with their series' stored state, reviews, agents behind target,
    calibration outliers."""
    start, end = bounds(day, day)
    incidents = [r for r in rows(store, q.TODAY_INCIDENTS, start, end, values)]
    for incident in incidents:
        incident["status_word"] = STATUS_WORDS.get(incident["status"], incident["status"])
        incident["series"] = incident_series(incident)
        opened = datetime.fromisoformat(str(incident["opened_at"])[:19]).replace(tzinfo=UTC)
        since = max(opened - timedelta(hours=24), end - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
        incident["states"] = rows(store, q.DETECTOR_SERIES, since, end, {"series": incident["series"]}) \
            if incident["series"] else []
        incident["evidence_words"] = _evidence(incident, incident["states"])
        finished = datetime.fromisoformat(str(incident["last_at"])[:19]).replace(tzinfo=UTC) \
            if incident["status_word"] == "cleared" else end
        incident["open_for"] = _duration(incident["opened_at"], finished)
    numbers = {incident["alert_id"]: i for i, incident in enumerate(incidents, 1)}
    reviews = rows(store, q.TODAY_REVIEWS, start, end, values)
    for r in reviews:
        r["why"] = why(r, options.monthly_target, numbers)
        r["drawn_for"] = drawn_for(r)
        r["recording"] = recording_link(options.recording_url, r)
        r["timezone"] = zone_name(options, r["site_id"])  # the queue's day is the site's local day: so is the time
        r["local_time"] = local_hhmm(r["at"], r["timezone"])
    behind = rows(store, q.agents_behind_target(options.monthly_target), start, end, values)
    plan = daily_plan(store, options.config, day.isoformat(), numbers) if options.config is not None else None
    reviewers = [r for r in reviewer_targets(store, options.config, day.isoformat(), plan)
                 if r["evaluated"] < r["due"]] if plan is not None else []
    calibration = calibration_outliers(store, day, end)
    return {"day": day, "incidents": incidents, "reviews": reviews, "behind": behind,
            "plan": plan["plans"] if plan else [], "unassigned": plan["unassigned"] if plan else [],
            "planned": {k: plan[k] for k in ("queued", "planned", "unassigned_calls", "capacity")} if plan else None,
            "reviewers_behind": reviewers, "calibration": calibration,
            "recordings": call_recordings(store, [r["call_id"] for r in calibration], options.recording_url)}


def zone_name(options: Options, site: str) -> str:
    """A site's time zone (CALLQA_SITE_TIMEZONES; UTC without a configuration)."""
    return options.config.kpi.clock.name(site) if options.config is not None else "UTC"


def drawn_for(row: dict) -> str:
    """What drew a queued call, in the words of ``why``'s branches (the review list's summary)."""
    if row["reason"] == "coverage":
        return "coverage"
    if row["reason"] == "pace":
        return "pace"
    kind = row.get("signal_kind") or ""
    if kind.startswith("drift:") and json.loads(row.get("signal_evidence") or "{}").get("incident"):
        return "incident"
    return "ops" if kind.startswith("ops:") else "random"


DRAWN_WORDS = {"incident": "for incidents", "ops": "for operational changes", "coverage": "by the coverage rule",
               "pace": "for the monthly minimum", "random": "drawn at random at the agent's rate"}


def call_recordings(store, calls: list[str], template: str) -> dict[str, str]:
    """The recording link of each of ``calls`` that has a recording (its latest ``recording.completed``)."""
    if not calls:
        return {}
    quoted = ", ".join("'" + c.replace("\\", "\\\\").replace("'", "\\'") + "'" for c in sorted(set(calls)))
    found = store.query(q.CALL_RECORDINGS.format(calls=quoted))[1]
    links = {call: recording_link(template, {"call_id": call, "recording_id": rid, "storage_uri": uri})
             for call, rid, uri in found if uri}
    return {call: link for call, link in links.items() if link}


# -- collecting ------------------------------------------------------------------------------------------
def collect(store, start: datetime, end: datetime, options: Options = Options()) -> dict:
    """Every figure of the report for [start, end], with every site, queue, team and agent selected."""
    values: dict[str, list[str]] = {}
    for name, sql in VARIABLES:
        values[name] = [r[0] for r in store.query(expand(sql, start, end, values))[1]] or [""]
    if values["site"] == [""]:
        raise EmptyStore(NO_HISTORY)
    figures = {name: rows(store, sql, start, end, values) for name, sql in QUERIES.items()}
    if not any(r["calls_offered"] for r in figures["sites"]):
        raise EmptyStore(f"no calls between {start:%Y-%m-%d} and {end:%Y-%m-%d}; choose a period with data")
    for name in ("sites", "hourly", "coverage", "agents"):
        guard(figures[name], options.min_calls)
    # per site: its human-QA drift chart, as the detector holds it
    figures["control"] = rows(store, q.DETECTOR_SERIES, start, end,
                              {"series": [f"site|{s}|{s}|qa_human" for s in values["site"]]})
    figures["rates"] = [r for r in figures["rates"] if r["cause"] != "initial"]
    for r in figures["rates"]:
        r["because"], r["signal"] = because_words(r["because"]), signal_words(r["signal"])
    for r in figures["drifts"]:  # the alarm's own numbers, unrounded: the table rounds them once, with units
        e = json.loads(r["latest_evidence"] or "{}")
        r.update(value=e.get("value"), baseline=e.get("baseline_mean"), statistic=e.get("statistic"),
                 limit=e.get("limit"))
    figures["csat"] = csat.item_table(rows(store, q.CSAT_ITEMS, start, end, values),  # which QA items matter to customers
                                      rows(store, q.CSAT_PAIRS, start, end, values))
    day = options.day or (end - timedelta(seconds=1)).date()
    figures["today"] = today(store, day, values, options)
    figures["shift_shares"] = rows(store, q.SHIFT_BAND_SHARES, start, end, values)  # bands of each site's local clock
    for r in figures["shift_shares"]:
        r["timezone"] = options.config.kpi.clock.name(r["site_id"]) if options.config is not None else "UTC"
    figures["options"] = options
    return figures


_DRIFT_BECAUSE = re.compile(r"^(\S+) (.+): (\S+) drift \((\w+)\)$")  # SAMPLING_RATES_NOW's reason of a drift


def because_words(text: str) -> str:
    """A rate change's reason with its drift metric in words ('site s1: sentiment_negative drift (cusum)' →
    'site s1: negative customers drift (CUSUM chart)')."""
    found = _DRIFT_BECAUSE.match(text or "")
    if not found:
        return text or ""
    level, entity, metric, chart = found.groups()
    return f"{level} {entity}: {metric_words(metric)} drift ({chart.upper() if chart == 'cusum' else chart} chart)"


def signal_words(kind: str) -> str:
    """A rate change's signal kind in words ('drift:site' → 'quality drift at site level',
    'ops:system_change' → 'operational change: system change')."""
    kind = kind or ""
    if kind.startswith("drift:"):
        return f"quality drift at {kind[6:]} level"
    if kind.startswith("ops:"):
        return f"operational change: {kind[4:].replace('_', ' ')}"
    return kind.replace("_", " ")


# -- charts ----------------------------------------------------------------------------------------------
def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, margin={"l": 60, "r": 20, "t": 60, "b": 90},
                      template="plotly_white", legend={"orientation": "h", "y": -0.25, "yanchor": "top"})
    return fig


def _figure(traces, title: str, y_title: str, x_title: str = "", percent: bool = False, target: float | None = None,
            target_name: str = "") -> go.Figure:
    fig = _layout(go.Figure(traces), title)
    fig.update_layout(yaxis_title=y_title, xaxis_title=x_title)
    if percent:
        fig.update_yaxes(tickformat=".0%")
    if target is not None:
        fig.add_hline(y=target, line_dash="dot", line_color="firebrick", annotation_text=target_name)
    return fig


def _held_to(found: list[dict], end: str) -> list[dict]:
    """Rate changes, each agent's last rate carried on to the end of the period (a step line)."""
    last = {r["agent_id"]: r for r in found}
    return found + [{**r, "time": end} for r in last.values()]


def site_multiples(hourly: list[dict], column: str, title: str, y_title: str, percent: bool,
                   target: float, target_name: str) -> go.Figure:
    """One small chart per site (shared axes) of an hourly ratio; hours of too few calls are left out."""
    sites = sorted({r["site_id"] for r in hourly})
    columns = min(3, max(1, len(sites)))
    fig = make_subplots(rows=math.ceil(len(sites) / columns) or 1, cols=columns, shared_yaxes=True,
                        subplot_titles=sites, horizontal_spacing=0.04)
    for i, site in enumerate(sites):
        mine = [r for r in hourly if r["site_id"] == site]
        fig.add_trace(go.Scatter(x=[minute(r["time"]) for r in mine], y=[r[column] for r in mine], mode="markers+lines",
                                 name=site, showlegend=False, connectgaps=False, marker={"size": 4},
                                 text=[f"{r['calls_offered']} calls" for r in mine], meta={"site": site, "role": column}),
                      row=i // columns + 1, col=i % columns + 1)
    fig.add_hline(y=target, line_dash="dot", line_color="firebrick", annotation_text=target_name)
    _layout(fig, title, height=300 * (math.ceil(len(sites) / columns) or 1))
    fig.update_yaxes(title_text=y_title, col=1)
    fig.update_xaxes(title_text="hour (UTC)")
    if percent:
        fig.update_yaxes(tickformat=".0%")
    return fig


def detector_chart(title: str, series: list[str], states: list[dict], min_calls: int) -> go.Figure:
    """The drift detector's state of each series (one column each): above, the hour's value (left out for
    a share of fewer than ``min_calls`` calls), the expected value (once the chart is warm) and the alarm
    line (the hour's value that would reach the limit); below, the hour's highest CUSUM statistic against
    its decision limit. Every value is a stored ``detector_state`` column; in-alarm hours are red."""
    fig = make_subplots(rows=2, cols=max(1, len(series)), shared_xaxes=True, row_heights=[0.62, 0.38],
                        vertical_spacing=0.08, horizontal_spacing=0.08,
                        subplot_titles=[f"{k.split('|')[0]} {k.split('|')[2]}: {metric_words(k.split('|')[3])}"
                                        for k in series] + [""] * len(series))
    for c, key in enumerate(series, 1):
        mine = [s for s in states if s["series"] == key]
        family = _family(key)
        binary = family is not None and family.scale == "binary"
        x = [minute(s["time"]) for s in mine]
        shown = [None if binary and s["observations"] < min_calls else s["value"] for s in mine]
        trace = partial(_trace, fig, x, key, c)
        trace("observed", shown, mode="markers+lines", line={"color": "#1f77b4", "width": 1}, connectgaps=False,
              text=[f"{s['observations']} {'calls' if family and family.scale != 'normal' else 'evaluations'}"
                    + (" (in alarm)" if s["in_alarm"] else "") for s in mine],
              marker={"size": 6, "color": ["firebrick" if s["in_alarm"] else "#1f77b4" for s in mine]})
        trace("expected", [s["expected"] if s["ready"] else None for s in mine], mode="lines",
              line={"color": "#2ca02c", "shape": "hv"})
        trace("alarm line", [s["alarm_value"] for s in mine], mode="lines", connectgaps=False,
              line={"color": "firebrick", "dash": "dash", "shape": "hv", "width": 1})
        trace("CUSUM statistic", [s["statistic"] for s in mine], mode="lines+markers", marker={"size": 4},
              line={"color": "#444", "width": 1, "shape": "hv"})
        trace("decision limit", [s["decision_limit"] for s in mine], mode="lines",
              line={"color": "firebrick", "shape": "hv"})
        fig.update_yaxes(title_text=axis_title(key), row=1, col=c)
        fig.update_yaxes(title_text="CUSUM statistic", row=2, col=c)
        fig.update_xaxes(title_text="hour (UTC)", row=2, col=c)
        if binary:
            fig.update_yaxes(tickformat=".0%", row=1, col=c)
    return _layout(fig, title, height=420)


def _trace(fig: go.Figure, x: list, series: str, column: int, role: str, y: list, **kw) -> None:
    """One trace of a detector chart: the CUSUM's below, the rest above; its series and role in ``meta``."""
    fig.add_trace(go.Scatter(x=x, y=y, name=role, legendgroup=role, showlegend=column == 1,
                             meta={"series": series, "role": role}, **kw),
                  row=2 if role in ("CUSUM statistic", "decision limit") else 1, col=column)


def top_rates(trend: list[dict], n: int) -> tuple[list[dict], int]:
    """The rate changes of the ``n`` agents with the highest review rate in the period (and how many agents)."""
    highest: dict[str, float] = {}
    for r in trend:
        highest[r["agent_id"]] = max(highest.get(r["agent_id"], 0.0), r["rate"])
    top = set(sorted(highest, key=lambda a: (-highest[a], a))[:n])
    return [r for r in trend if r["agent_id"] in top], len(highest)


def _lines(found: list[dict], y: str, by: str, shape: str = "linear") -> list[go.Scatter]:
    groups: dict[str, list[dict]] = {}
    for row in found:
        groups.setdefault(row[by], []).append(row)
    return [go.Scatter(x=[minute(r["time"]) for r in g], y=[r[y] for r in g], name=key, mode="lines",
                       line={"shape": shape}) for key, g in groups.items()]


def charts(f: dict, end: datetime) -> dict[str, go.Figure]:
    options: Options = f.get("options") or Options()
    sites = [r["site_id"] for r in f["sites"]]
    made = {f"qa-{site}": detector_chart(f"{site}: human QA against its drift chart (the detector's expected "
                                         "value and limits)", [f"site|{site}|{site}|qa_human"], f["control"],
                                         options.min_calls) for site in sites}
    for i, incident in enumerate(f["today"]["incidents"], 1):
        if incident["series"]:
            made[f"incident-{i}"] = detector_chart(
                f"#{i} {incident['status_word']}: {scope_words(incident['level'], incident['entity_id'])}, "
                f"opened {minute(incident['opened_at'])}", incident["series"], incident["states"], options.min_calls)
    coverage = f["coverage"]
    agents = [r["agent_id"] for r in coverage]
    rated, of = top_rates(f["rate_trend"], options.top)
    calibration = f["calibration"]
    return made | {
        "sl": site_multiples(f["hourly"], "service_level", f"Service level by site and hour (hours of fewer than "
                             f"{options.min_calls} calls left out)", "service level, %", True, TARGETS["service_level"],
                             f"target {TARGETS['service_level']:.0%}"),
        "asa": site_multiples(f["hourly"], "asa_s", f"Average speed of answer by site and hour (hours of fewer than "
                              f"{options.min_calls} calls left out)", "seconds", False, TARGETS["asa_s"],
                              f"target {TARGETS['asa_s']:g} s"),
        "qa_sites": _figure(_lines(f["qa_sites"], "qa_human_pct", "site_id"), "Human QA score per site and day",
                            "human QA score, %", "day (UTC)"),
        "rates": _figure(_lines(_held_to(rated, f"{end:%Y-%m-%d %H:%M}"), "rate", "agent_id", shape="hv"),
                         f"Review rate over time: the {min(options.top, of)} agents with the highest rate (of {of})",
                         "share of calls reviewed, %", "time (UTC)", percent=True),
        "coverage": _figure([go.Bar(x=agents, y=[r["selected_share"] for r in coverage], name="selected for review")],
                            "Coverage: share of each agent's recorded calls selected for review",
                            "selected, % of recorded calls", "agent", percent=True,
                            target=coverage[0]["target_share"] if coverage else None,
                            target_name=f"target: base rate {PolicyConfig.base_rate:.0%}"),
        "evaluations": _figure([go.Bar(x=agents, y=[r["evaluated"] for r in coverage], name="human evaluations")],
                               "Human evaluations per agent", "human evaluations", "agent",
                               target=coverage[0]["target_evaluations"] if coverage else None,
                               target_name=f"target: {options.monthly_target} a month, pro rata"),
        "calibration": _figure([go.Bar(x=[r["evaluator_id"] for r in calibration],
                                       y=[r["flagged"] / r["calls"] if r["calls"] else None for r in calibration],
                                       name="flagged")],
                               f"Calibration: share of each evaluator's scores more than {DEFAULT_THRESHOLD_PCT:g} "
                               "points from the call's mean", "flagged, % of calibration scores", "evaluator",
                               percent=True),
    }


# -- tables ----------------------------------------------------------------------------------------------
def _text(column: str, value) -> str:
    if value is None:
        return ""
    if column in RATIO_COLUMNS and isinstance(value, (int, float)):
        return f"{100 * value:.1f}%"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(column: str, value, text: str | None = None, href: str | None = None) -> str:
    shown = html.escape(_text(column, value) if text is None else text)
    if href:
        shown = f'<a href="{html.escape(href)}">{shown}</a>'
    raw = "" if value is None else str(value)
    return f'<td data-column="{html.escape(column)}" data-value="{html.escape(raw)}">{shown}</td>'


def table(name: str, found: list[dict], columns: list[str] | None = None, limit: int = 60, titles: dict | None = None,
          texts: dict | None = None, links: dict | None = None, row_id=None, empty: str = "none in this period") -> str:
    """A table of ``found`` rows: ``titles`` per column (default ``TITLES``), ``texts`` (column → row → the
    text shown), ``links`` (column → row → href), ``row_id`` (row → the row's id)."""
    if not found:
        return f'<p class="empty" id="table-{name}">{html.escape(empty)}</p>'
    columns = columns or list(found[0])
    titles, texts, links = {**TITLES, **(titles or {})}, texts or {}, links or {}
    head = "".join(f"<th>{html.escape(titles.get(c, c.replace('_', ' ')))}</th>" for c in columns)
    body = "".join(
        (f'<tr id="{html.escape(row_id(r))}">' if row_id else "<tr>")
        + "".join(_cell(c, r[c], texts[c](r) if c in texts else None, links[c](r) if c in links else None)
                  for c in columns) + "</tr>" for r in found[:limit])
    more = f'<p class="more">{len(found) - limit} more rows not shown</p>' if len(found) > limit else ""
    return f'<table id="table-{name}" data-rows="{len(found)}"><tr>{head}</tr>{body}</table>{more}'


def csat_table(found: list[dict]) -> str:
    """The QA items against CSAT (``callqa.csat.item_table``), strongest adjusted effect first."""
    interval = lambda mid, low, high: "" if mid is None else f"{mid:+.2f} [{low:.2f}, {high:.2f}]"
    return table("csat", found, ["kind", "item", "calls", "failed", "csat_passed", "csat_failed", "difference",
                                 "correlation", "adjusted", "p_holm", "significant", "same_as"],
                 titles={"failed": "calls failed", "csat_passed": "CSAT passed", "csat_failed": "CSAT failed",
                         "difference": "difference [95% CI]", "correlation": "correlation (point-biserial)",
                         "adjusted": "adjusted effect [95% CI]", "p_holm": "p (Holm)", "same_as": "inseparable from"},
                 texts={"csat_passed": lambda r: f"{r['csat_passed']:.2f}", "csat_failed": lambda r: f"{r['csat_failed']:.2f}",
                        "difference": lambda r: interval(r["difference"], r["ci_low"], r["ci_high"]),
                        "correlation": lambda r: f"{r['correlation']:.3f}",
                        "adjusted": lambda r: interval(r["adjusted"], r["adjusted_low"], r["adjusted_high"]),
                        "p_holm": lambda r: "" if r["p_holm"] is None else f"{r['p_holm']:.2g}",
                        "significant": lambda r: {True: "yes", False: "no", None: ""}[r["significant"]],
                        "same_as": lambda r: ", ".join(r["same_as"])},
                 empty=f"no item with {csat.MIN_GROUP} calls passed and {csat.MIN_GROUP} failed among the calls "
                       "with an evaluation and a survey in this period")


def agent_rows(f: dict) -> list[dict]:
    """One row per agent (the agent's page): the period's calls and QA, their review rate now and why,
    their evaluations this month."""
    rates = {r["agent_id"]: r for r in f["rates"]}
    coverage = {r["agent_id"]: r for r in f["coverage"]}
    behind = {r["agent_id"]: r for r in f["today"]["behind"]}
    out = []
    for r in f["agents"]:
        rate, cov = rates.get(r["agent_id"]) or {}, coverage.get(r["agent_id"]) or {}
        out.append({**r, "evaluated": cov.get("evaluated"), "rate": rate.get("rate"),
                    "because": rate.get("because") or rate.get("signal") or "",  # in words (collect)
                    "behind_target": r["agent_id"] in behind})
    return out


PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title|e }}</title>
<script>window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-errors', (document.documentElement.getAttribute('data-errors') || '') + e.message + ';');
});</script>
<script>{{ plotly }}</script>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; } .empty, .more, .note { color: #777; }
td[data-column="why"], td[data-column="evidence"], td[data-column="because"] { text-align: left; max-width: 460px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
nav a { margin-right: 12px; } #today { background: #fbfbf6; padding: 4px 12px 12px; border: 1px solid #eee; }
.incident { margin: 8px 0 20px; }
</style></head>
<body>
<h1>{{ title|e }}</h1>
<p class="note">{{ start }} to {{ end }} (UTC) · generated {{ generated }} · every figure below is read from the store
with the Grafana dashboards' queries; no ratio is shown from fewer than {{ min_calls }} calls.</p>
<nav><a href="#today">Today</a><a href="#sites">Sites</a><a href="#quality">Quality and drift</a>
<a href="#plan">Monitoring plan</a><a href="#coverage">Coverage</a><a href="#calibration">Calibration</a>
<a href="#agents">Agents</a></nav>
<section id="today" data-day="{{ day }}">
<h2>Today: {{ day }} (UTC)</h2>
<h3>Quality incidents open at the end of the day, and cleared during it</h3>
{{ tables.today_incidents }}
{% for chart in incident_charts %}<div class="incident" id="incident-{{ loop.index }}" data-series="{{ chart.series|e }}">{{ chart.div }}</div>{% endfor %}
<h3>Who to review today and why</h3>
{% if review_summary %}<p class="summary" id="today-reviews-summary">{{ review_summary|e }}</p>{% endif %}
{{ tables.today_reviews }}
<h3>Today's review plan: each reviewer's calls (each site's local day and clock)</h3>{{ tables.today_plan }}
<h4>Calls no reviewer can take</h4>
{% if plan_summary %}<p class="summary" id="today-plan-summary">{{ plan_summary|e }}.</p>{% endif %}
{{ tables.today_unassigned }}
<h3>Agents behind their monthly target ({{ target }} human evaluations a month, pro rata to today)</h3>{{ tables.today_behind }}
<h3>Reviewers behind their monthly target (the reviews their daily plans gave them this month before today)</h3>
{{ tables.today_reviewers }}
<h3>Calibration outliers this month (scores more than {{ threshold }} points from the reference)</h3>{{ tables.today_calibration }}
</section>
<h2 id="sites">Sites</h2>{{ tables.sites }}
{{ charts.sl }}{{ charts.asa }}
<h2 id="quality">Quality and drift</h2>
{{ charts.qa_sites }}
{% for name, chart in charts.items() if name.startswith("qa-") %}{{ chart }}{% endfor %}
<h3>Drift alarms</h3>{{ tables.drifts }}
<h3>Alerts opened</h3>{{ tables.alerts }}
<h3 id="csat">Which QA items matter to customers</h3>
<p class="note">Calls with both a QA evaluation and a post-call survey: mean CSAT (1-5) of the calls that passed
each item (80% of its points) and of those that failed it, the difference with its 95% interval and the
correlation; and the effect adjusted for the other items (a regression of CSAT on every item at once: items
fail together, so a plain difference carries its companions' effects), significant at 5% after Holm's
correction. Items with at least {{ min_group }} calls passed and {{ min_group }} failed.</p>{{ tables.csat }}
<h2 id="plan">Monitoring plan</h2>
{{ charts.rates }}
<h3>Review-rate changes in force at the end of the period, and why</h3>{{ tables.rates }}
<h3>Review queue per day</h3>{{ tables.queue }}
<h2 id="coverage">Coverage against targets</h2>
<div class="grid">{{ charts.coverage }}{{ charts.evaluations }}</div>
{{ tables.coverage }}
<h3>Shift-hour shares: calls recorded and selected per shift band (first hour, middle, last two hours of the agent's
shift, on the site's local clock) against the policy's targets</h3>{{ tables.shift_shares }}
<h2 id="calibration">Calibration</h2>
{{ charts.calibration }}{{ tables.calibration }}
<h2 id="agents">Agents</h2>{{ tables.agents }}
</body></html>
""")


def methods_words(row: dict) -> str:
    return ", ".join(METHOD_WORDS.get(m, m.replace("_", " ")) for m in row["methods"])


def kpi_words(metric: str) -> str:
    """A threshold rule's KPI or a drift metric, in words."""
    return KPI_WORDS.get(metric) or metric_words(metric)


def _alarm_number(column: str, row: dict) -> str:
    """A drift alarm's value or expected value on its metric's scale, its CUSUM statistic or limit: each
    rounded once, as Today's evidence writes them."""
    v = row[column]
    if v is None:
        return ""
    if column in ("statistic", "limit"):
        return f"{v:.1f}"
    return shown(BY_LEVEL.get((row["level"], row["metric"]), METRICS.get(row["metric"])))(v)


def review_summary(t: dict) -> str:
    """The day's review list in one paragraph: how many calls, what drew them, how, and the plan's reach."""
    reviews = t["reviews"]
    if not reviews:
        return ""
    drawn = {k: sum(r["drawn_for"] == k for r in reviews) for k in DRAWN_WORDS}
    methods: dict[str, int] = {}
    for r in reviews:
        methods[r["method"]] = methods.get(r["method"], 0) + 1
    text = (f"{len(reviews)} calls to review, queued on each site's local day {t['day']} (riskiest first): "
            + ", ".join(f"{n} {DRAWN_WORDS[k]}" for k, n in drawn.items() if n) + ". How: "
            + ", ".join(f"{n} {METHOD_WORDS.get(m, m.replace('_', ' '))}"
                        for m, n in sorted(methods.items(), key=lambda x: (-x[1], x[0]))) + ".")
    if t["planned"]:
        text += f" Planned for reviewers: {plan_summary(t['planned'])}."
    return text


def plan_summary(planned: dict) -> str:
    return (f"{planned['planned']} of {planned['queued']} calls planned, {planned['unassigned_calls']} unassigned "
            f"(capacity {planned['capacity']['reviews']} reviews a day)")


def render(figures: dict, start: datetime, end: datetime, title: str) -> str:
    options: Options = figures.get("options") or Options()
    made = charts(figures, end)
    divs = {name: fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{name}",
                              config={"displaylogo": False, "responsive": True})
            for name, fig in made.items()}
    t = figures["today"]
    incidents = t["incidents"]
    for i, incident in enumerate(incidents, 1):
        incident["number"] = i
    agent_link = {"agent_id": lambda r: agent_anchor(r["agent_id"])}
    tables = {
        "today_incidents": table(
            "today-incidents", incidents, ["alert_id", "status_word", "level", "entity_id", "metric", "opened_at",
                                           "open_for", "evidence_words"],
            titles={"alert_id": "#", "status_word": "status", "entity_id": "scope", "metric": "metrics",
                    "open_for": "open for", "evidence_words": "evidence"},
            texts={"alert_id": lambda r: f"#{r['number']}", "opened_at": lambda r: minute(r["opened_at"]),
                   "metric": lambda r: ", ".join(metric_words(m) for m in r["metric"].split(","))},
            links={"alert_id": lambda r: f"#incident-{r['number']}",
                   "entity_id": lambda r: agent_anchor(r["entity_id"]) if r["level"] == "agent" else None},
            empty="no incident open or cleared this day"),
        "today_reviews": table(
            "today-reviews", t["reviews"], ["call_id", "at", "timezone", "agent_id", "team_id", "method", "why", "risk"],
            limit=200, titles={"call_id": "call (recording)", "at": "time (site's local)", "timezone": "time zone",
                               "why": "why", "risk": "risk (× base rate)"},
            texts={"at": lambda r: r["local_time"], "method": lambda r: METHOD_WORDS.get(r["method"], r["method"])},
            links={"call_id": lambda r: r["recording"], **agent_link}, empty="no call queued for review this day"),
        "today_reviewers": table(
            "today-reviewers", t["reviewers_behind"], ["reviewer", "name", "evaluated", "due", "behind_by",
                                                       "capacity", "assigned_today"],
            titles={"reviewer": "reviewer (evaluator id)", "evaluated": "human evaluations this month",
                    "due": "target so far: reviews their daily plans gave them before today",
                    "behind_by": "behind by", "capacity": "reviews a day (capacity)",
                    "assigned_today": "reviews planned today"}, limit=200,
            empty="no reviewer behind their monthly target" if t["planned"] is not None
            else "no configuration given: no plans to measure reviewers against"),
        "today_behind": table(
            "today-behind", t["behind"], ["agent_id", "team_id", "evaluated", "due", "target", "queued_today"],
            titles={"evaluated": "human evaluations this month", "due": "due by today", "target": "monthly target",
                    "queued_today": "calls queued today"}, links=agent_link, limit=200,
            empty="no agent behind their monthly target"),
        "today_calibration": table(
            "today-calibration", t["calibration"], ["evaluator_id", "calls", "flagged", "mean_deviation",
                                                    "largest_deviation", "call_id"],
            titles={"calls": "calibration scores this month", "largest_deviation": "largest deviation, points",
                    "call_id": "on call (recording)"}, links={"call_id": lambda r: t["recordings"].get(r["call_id"])},
            empty="no calibration outlier this month"),
        "today_plan": table(
            "today-plan", t["plan"], ["reviewer", "agent_id", "site_id", "timezone", "local_times", "target", "methods",
                                      "reasons", "assignment"],
            limit=200, titles={"timezone": "time zone", "local_times": "calls (site's local time)",
                               "target": "reviews", "methods": "how", "reasons": "why these calls",
                               "assignment": "why this reviewer"},
            texts={"local_times": lambda r: ", ".join(r["local_times"]), "methods": methods_words,
                   "reasons": lambda r: "; ".join(r["reasons"])}, links=agent_link,
            empty="no plan: no call queued for this day (or no configuration given)"),
        "today_unassigned": table(
            "today-unassigned", t["unassigned"], ["agent_id", "site_id", "language", "methods", "calls", "reason"],
            limit=200, titles={"methods": "how", "calls": "calls", "reason": "why no reviewer takes them"},
            texts={"methods": methods_words, "language": lambda r: r["language"] or "unknown"}, links=agent_link,
            empty="none: every queued call has a reviewer" if t["planned"] is not None else "no plan"),
        "shift_shares": table(
            "shift-shares", figures["shift_shares"], ["site_id", "timezone", "band", "recorded", "recorded_share",
                                                      "selected", "selected_share", "target_share"],
            titles={"timezone": "time zone", "band": "shift band (agent's shift, site's local time)",
                    "recorded": "recorded calls", "selected": "selected for review"},
            texts={"band": lambda r: BAND_WORDS.get(r["band"], r["band"])}),
        "sites": table("sites", figures["sites"]),
        "drifts": table("drifts", figures["drifts"], ["opened_at", "status", "level", "entity_id", "metric", "chart",
                                                      "value", "baseline", "statistic", "limit"],
                        titles={"value": "value (its latest evidence)", "baseline": "expected"},
                        texts={"opened_at": lambda r: minute(r["opened_at"]),
                               "metric": lambda r: metric_words(r["metric"]),
                               "status": lambda r: "open" if r["status"] == "open" else "cleared",
                               "chart": lambda r: "CUSUM" if r["chart"] == "cusum" else r["chart"],
                               **{c: partial(_alarm_number, c) for c in ("value", "baseline", "statistic", "limit")}}),
        "alerts": table("alerts", figures["alerts"], texts={"metric": lambda r: kpi_words(r["metric"])}),
        "rates": table("rates", figures["rates"], links=agent_link,
                       texts={"since": lambda r: minute(r["since"])}),
        "queue": table("queue", figures["queue"], texts={"time": lambda r: str(r["time"])[:10],
                                                         "method": lambda r: METHOD_WORDS.get(r["method"], r["method"])}),
        "coverage": table("coverage", figures["coverage"], links=agent_link),
        "calibration": table("calibration", figures["calibration"]),
        "csat": csat_table(figures["csat"]),
        "agents": table("agents", agent_rows(figures), ["agent_id", "team_id", "site_id", "calls_handled", "aht_s",
                                                        "transfer_rate", "qa_human_pct", "evaluated", "rate",
                                                        "because", "behind_target"],
                        limit=1000, row_id=lambda r: agent_anchor(r["agent_id"])[1:],
                        titles={"evaluated": "human evaluations", "rate": "review rate now, %",
                                "behind_target": "behind monthly target"}),
    }
    incident_charts = [{"div": divs.pop(f"incident-{i}"), "series": ",".join(inc["series"])}
                       for i, inc in enumerate(incidents, 1) if f"incident-{i}" in divs]
    return PAGE.render(title=title, plotly=get_plotlyjs(), charts=divs, tables=tables, incident_charts=incident_charts,
                       start=f"{start:%Y-%m-%d %H:%M}", end=f"{end:%Y-%m-%d %H:%M}", day=t["day"].isoformat(),
                       target=options.monthly_target, threshold=f"{DEFAULT_THRESHOLD_PCT:g}", min_calls=options.min_calls,
                       review_summary=review_summary(t), plan_summary=plan_summary(t["planned"]) if t["planned"] else "",
                       min_group=csat.MIN_GROUP,
                       generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write(store, start: datetime, end: datetime, path: Path, title: str = "callqa report",
          options: Options = Options()) -> dict:
    """Collect the figures, write the page to ``path``; return the figures."""
    figures = collect(store, start, end, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(figures, start, end, title), encoding="utf-8")
    return figures
