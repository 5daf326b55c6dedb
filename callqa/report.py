"""The HTML report: the dashboards' queries (sinks/queries.py) over a period, as one self-contained
page with charts (plotly, its script inlined) and the figures behind them as tables.

Works on any store: the embedded one after ``callqa demo`` or a replay, or a ClickHouse server.
Every table cell carries its raw value (``data-value``) beside the formatted text.
"""
from __future__ import annotations

import html
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import jinja2
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from callqa.core.calibration import DEFAULT_THRESHOLD_PCT
from callqa.core.thresholds import RULES
from sinks import macros
from sinks import queries as q

VARIABLES = (("site", q.VAR_SITE), ("queue", q.VAR_QUEUE), ("team", q.VAR_TEAM), ("agent", q.VAR_AGENT))
QUERIES = {
    "sites": q.SITE_COMPARISON, "hourly": q.SITE_HOURLY_TREND, "qa_sites": q.site_daily("qa_human_pct"),
    "drifts": q.DRIFT_ALERTS,
    "rate_trend": q.SAMPLING_RATE_TREND, "rates": q.SAMPLING_RATES_NOW, "coverage": q.COVERAGE,
    "queue": q.REVIEW_QUEUE_DAILY, "calibration": q.CALIBRATION_EVALUATORS, "alerts": q.ALERTS_OPENED,
}
RATIO_COLUMNS = {"service_level", "abandon_rate", "transfer_rate", "fcr_rate", "occupancy", "rate",
                 "selected_share", "target_share"}
LIMITS = {r.metric: r.warning for r in RULES}


class EmptyStore(ValueError):
    """The store holds no KPI history for the period."""


NO_HISTORY = "the store holds no KPI history yet: replay, ingest or simulate some traffic first"


def data_period(store) -> tuple[date, date]:
    """The last seven days that hold data (the report's default period)."""
    (last,), = store.query("SELECT toString(max(day)) FROM kpi_daily WHERE level = 'site' AND offered > 0")[1]
    if not last or last.startswith("1970"):
        raise EmptyStore(NO_HISTORY)
    end = date.fromisoformat(last)
    return end - timedelta(days=6), end


def bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The whole days from ``first`` to ``last`` as a time range."""
    return datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC)


def rows(store, sql: str, start: datetime, end: datetime, values: dict[str, list[str]]) -> list[dict]:
    """A dashboard query run for [start, end] and the variables' values, as dicts."""
    columns, found = store.query(macros.expand(sql, start, end, values, interval_s=3600))
    return [dict(zip(columns, row)) for row in found]


def collect(store, start: datetime, end: datetime) -> dict[str, list[dict]]:
    """Every figure of the report for [start, end], with every site, queue, team and agent selected."""
    values: dict[str, list[str]] = {}
    for name, sql in VARIABLES:
        values[name] = [r[0] for r in store.query(macros.expand(sql, start, end, values))[1]] or [""]
    if values["site"] == [""]:
        raise EmptyStore(NO_HISTORY)
    figures = {name: rows(store, sql, start, end, values) for name, sql in QUERIES.items()}
    # per site: its control chart and the drifts detected there
    for name, sql in (("control", q.QA_CONTROL_CHART), ("drift_marks", q.DRIFT_ANNOTATIONS)):
        figures[name] = [{"site_id": site, **row} for site in values["site"]
                         for row in rows(store, sql, start, end, {**values, "site": [site]})]
    figures["rates"] = [r for r in figures["rates"] if r["cause"] != "initial"]
    if not any(r["calls_offered"] for r in figures["sites"]):
        raise EmptyStore(f"no calls between {start:%Y-%m-%d} and {end:%Y-%m-%d}; choose a period with data")
    return figures


def _lines(rows: list[dict], y: str, by: str, shape: str = "linear") -> list[go.Scatter]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[by], []).append(row)
    return [go.Scatter(x=[r["time"] for r in g], y=[r[y] for r in g], name=key, mode="lines",
                       line={"shape": shape}) for key, g in groups.items()]


def _figure(traces, title: str, y_title: str, percent: bool = False, limit: float | None = None,
            limit_name: str = "") -> go.Figure:
    fig = go.Figure(traces)
    fig.update_layout(title=title, height=360, margin={"l": 60, "r": 20, "t": 50, "b": 40}, template="plotly_white",
                      yaxis_title=y_title, legend={"orientation": "h"})
    if percent:
        fig.update_yaxes(tickformat=".0%")
    if limit is not None:
        fig.add_hline(y=limit, line_dash="dot", line_color="firebrick", annotation_text=limit_name)
    return fig


def _held_to(rows: list[dict], end: str) -> list[dict]:
    """Rate changes, each agent's last rate carried on to the end of the period (a step line)."""
    last = {r["agent_id"]: r for r in rows}
    return rows + [{**r, "time": end} for r in last.values()]


def control_chart(site: str, rows: list[dict], marks: list[dict]) -> go.Figure:
    """A site's human QA per day against its baseline limits, with the moments drift was detected."""
    x = [r["time"] for r in rows]
    low = min((r["lower_limit"] for r in rows if r["lower_limit"] is not None), default=0)
    return _figure(
        [go.Scatter(x=x, y=[r["qa_pct"] for r in rows], name="human QA %", mode="lines+markers",
                    text=[f"{r['evaluations']} evaluations" for r in rows])]
        + [go.Scatter(x=x, y=[r[k] for r in rows], name=k.replace("_", " "), mode="lines",
                      line={"dash": "solid" if k == "centre" else "dash", "width": 1, "shape": "hvh"})
           for k in ("centre", "upper_limit", "lower_limit")]
        + [go.Scatter(x=[m["time"] for m in marks], y=[low] * len(marks), name="drift detected", mode="markers",
                      marker={"symbol": "x", "size": 9, "color": "firebrick"}, text=[m["text"] for m in marks],
                      hoverinfo="text+x")],
        f"{site}: human QA score per day, control limits from the first three days, drifts detected", "%")


def charts(f: dict[str, list[dict]], end: datetime) -> dict[str, go.Figure]:
    sites = [r["site_id"] for r in f["sites"]]
    made = {f"qa-{site}": control_chart(site, [r for r in f["control"] if r["site_id"] == site],
                                        [m for m in f["drift_marks"] if m["site_id"] == site]) for site in sites}
    coverage = f["coverage"]
    agents = [r["agent_id"] for r in coverage]
    return made | {
        "sl": _figure(_lines(f["hourly"], "service_level", "site_id"), "Service level by hour", "service level",
                      percent=True, limit=LIMITS["service_level"], limit_name="alert limit"),
        "asa": _figure(_lines(f["hourly"], "asa_s", "site_id"), "Average speed of answer by hour", "seconds",
                       limit=LIMITS["asa_s"], limit_name="alert limit"),
        "qa_sites": _figure(_lines(f["qa_sites"], "qa_human_pct", "site_id"), "Human QA score per site and day", "%"),
        "rates": _figure(_lines(_held_to(f["rate_trend"], f"{end:%Y-%m-%d %H:%M:%S}"), "rate", "agent_id", shape="hv"),
                         "Each agent's review rate over time", "share of calls reviewed", percent=True),
        "coverage": _figure([go.Bar(x=agents, y=[r["selected_share"] for r in coverage], name="selected for review")],
                            "Coverage: share of each agent's recorded calls selected for review", "share",
                            percent=True, limit=coverage[0]["target_share"] if coverage else None,
                            limit_name="base rate"),
        "evaluations": _figure([go.Bar(x=agents, y=[r["evaluated"] for r in coverage], name="human evaluations")],
                               "Human evaluations per agent", "evaluations",
                               limit=coverage[0]["target_evaluations"] if coverage else None,
                               limit_name="monthly minimum, pro rata"),
        "calibration": _figure([go.Bar(x=[r["evaluator_id"] for r in f["calibration"]],
                                       y=[r["mean_deviation"] for r in f["calibration"]], name="mean deviation")],
                               "Calibration: each evaluator's mean deviation from the reference", "points",
                               limit=-DEFAULT_THRESHOLD_PCT, limit_name=f"-{DEFAULT_THRESHOLD_PCT:g} points"),
    }


def _cell(column: str, value) -> str:
    if value is None:
        text = ""
    elif column in RATIO_COLUMNS and isinstance(value, (int, float)):
        text = f"{100 * value:.1f}%"
    elif isinstance(value, float):
        text = f"{value:,.1f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    raw = "" if value is None else str(value)
    return f'<td data-column="{html.escape(column)}" data-value="{html.escape(raw)}">{html.escape(text)}</td>'


def table(name: str, rows: list[dict], columns: list[str] | None = None, limit: int = 60) -> str:
    if not rows:
        return f'<p class="empty" id="table-{name}">none in this period</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(c, r[c]) for c in columns) + "</tr>" for r in rows[:limit])
    more = f'<p class="more">{len(rows) - limit} more rows not shown</p>' if len(rows) > limit else ""
    return f'<table id="table-{name}" data-rows="{len(rows)}"><tr>{head}</tr>{body}</table>{more}'


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
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } .empty, .more, .note { color: #777; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
</style></head>
<body>
<h1>{{ title|e }}</h1>
<p class="note">{{ start }} to {{ end }} (UTC) · generated {{ generated }} · every figure below is read from the store
with the Grafana dashboards' queries.</p>
<h2>Sites</h2>{{ tables.sites }}
<div class="grid">{{ charts.sl }}{{ charts.asa }}</div>
<h2>Quality and drift</h2>
{{ charts.qa_sites }}
{% for name, chart in charts.items() if name.startswith("qa-") %}{{ chart }}{% endfor %}
<h3>Drift alerts</h3>{{ tables.drifts }}
<h3>Alerts opened</h3>{{ tables.alerts }}
<h2>Monitoring plan</h2>
{{ charts.rates }}
<h3>Review-rate changes in force at the end of the period, and why</h3>{{ tables.rates }}
<h3>Review queue per day</h3>{{ tables.queue }}
<h2>Coverage against targets</h2>
<div class="grid">{{ charts.coverage }}{{ charts.evaluations }}</div>
{{ tables.coverage }}
<h2>Calibration</h2>
{{ charts.calibration }}{{ tables.calibration }}
</body></html>
""")


def render(figures: dict[str, list[dict]], start: datetime, end: datetime, title: str) -> str:
    made = charts(figures, end)
    divs = {name: fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{name}",
                              config={"displaylogo": False, "responsive": True})
            for name, fig in made.items()}
    tables = {
        "sites": table("sites", figures["sites"]),
        "drifts": table("drifts", figures["drifts"], ["opened_at", "status", "level", "entity_id", "metric", "chart",
                                                      "value", "baseline", "statistic", "limit"]),
        "alerts": table("alerts", figures["alerts"]),
        "rates": table("rates", figures["rates"]),
        "queue": table("queue", figures["queue"]),
        "coverage": table("coverage", figures["coverage"]),
        "calibration": table("calibration", figures["calibration"]),
    }
    return PAGE.render(title=title, plotly=get_plotlyjs(), charts=divs, tables=tables,
                       start=f"{start:%Y-%m-%d %H:%M}", end=f"{end:%Y-%m-%d %H:%M}",
                       generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write(store, start: datetime, end: datetime, path: Path, title: str = "callqa report") -> dict[str, list[dict]]:
    """Collect the figures, write the page to ``path``; return the figures."""
    figures = collect(store, start, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(figures, start, end, title), encoding="utf-8")
    return figures
