"""The Grafana dashboards and alert rules, built with grafana-foundation-sdk from the queries in
``sinks/queries.py``. ``python -m dashboards`` writes them under ``dashboards/`` (committed; a test
checks the files are what this code builds)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from grafana_foundation_sdk.builders import (
    alerting,
    bargauge,
    dashboard,
    expr,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.alerting import RelativeTimeRange
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    FieldColorModeId,
    MatcherConfig,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from callqa.config import SETTINGS
from callqa.core.calibration import DEFAULT_THRESHOLD_PCT
from callqa.core.surveys import ITEM_PASS_SHARE, MIN_GROUP
from callqa.core.thresholds import RULES, ThresholdRule
from sinks import queries as q

DATASOURCE_UID = "callqa-clickhouse"
PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE = DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)
TABLE, TIME_SERIES = 1, 0  # the plugin's result formats
PROMETHEUS_UID = "prometheus"  # provisioning/datasources/prometheus.yaml: the Prometheus of docker-compose.yml
PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


@dataclass
class ClickHouseQuery(variants.Dataquery):
    """A raw-SQL query of the ClickHouse plugin (v4 query model)."""

    raw_sql: str
    format: int
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID}, "editorType": "sql",
                "rawSql": self.raw_sql.strip(), "format": self.format,
                "queryType": "timeseries" if self.format == TIME_SERIES else "table"}


class Sql(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, sql: str, fmt: int = TABLE, ref_id: str = "A"):
        self._query = ClickHouseQuery(sql, fmt, ref_id)

    def build(self) -> ClickHouseQuery:
        return self._query


def _units(panel, units: dict[str, str]):
    for column, unit in units.items():
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column),
                                    [DynamicConfigValue(id_val="unit", value=unit)])
    return panel


# Colours of the core's severities (callqa.core.thresholds.severity): none, warning, critical.
SEVERITY_COLOURS = {None: "green", "warning": "orange", "critical": "red"}
RULE = {r.metric: r for r in RULES}  # the wallboard's limits: the threshold monitor's own rules, nothing else


def rule_steps(rule: ThresholdRule) -> list[dict]:
    """Grafana threshold steps that colour a value as the core judges it. Grafana takes the last step at or
    below the value; the core's limits are strict (a value at a limit is not past it), so where higher is
    worse the steps start at the next float above each limit."""
    if rule.worse < 0:
        steps = [(None, "critical"), (rule.critical, "warning"), (rule.warning, None)]
    else:
        above = lambda limit: math.nextafter(limit, math.inf)
        steps = [(None, None), (above(rule.warning), "warning"), (above(rule.critical), "critical")]
    return [{"value": value, "color": SEVERITY_COLOURS[level]} for value, level in steps]


def _thresholds(rule: ThresholdRule) -> dict:
    return {"mode": "absolute", "steps": rule_steps(rule)}


def _coloured(panel, columns: dict[str, ThresholdRule]):
    """Table cells of these columns coloured by their rule."""
    for column, rule in columns.items():
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column), [
            DynamicConfigValue(id_val="thresholds", value=_thresholds(rule)),
            DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
            DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"})])
    return panel


def series(title: str, sql: str, unit: str = "short", width: int = 12, units: dict[str, str] | None = None,
           bars: bool = False, description: str = "", tooltip_only: tuple[str, ...] = (),
           targets: dict[str, ThresholdRule] | None = None, axis: str = ""):
    """A time series panel; ``targets``: columns drawn with their rule's limits as dashed lines; ``axis``: the
    y axis' label."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(Sql(sql, TIME_SERIES)).unit(unit).span(width).height(8))
    if axis:
        panel = panel.axis_label(axis)
    for column, rule in (targets or {}).items():
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column), [
            DynamicConfigValue(id_val="thresholds", value=_thresholds(rule)),
            DynamicConfigValue(id_val="custom.thresholdsStyle", value={"mode": "dashed"})])
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).stacking(
            StackingConfig().mode(common.StackingMode.NORMAL))
    for column in tooltip_only:  # a figure to read on hover, not to draw
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column), [DynamicConfigValue(
            id_val="custom.hideFrom", value={"viz": True, "legend": True, "tooltip": False})])
    return _units(panel, units or {})


def grid(title: str, sql: str, width: int = 12, height: int = 8, units: dict[str, str] | None = None,
         description: str = "", coloured: dict[str, ThresholdRule] | None = None):
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(Sql(sql)).span(width).height(height))
    return _coloured(_units(panel, units or {}), coloured or {})


def big_number(title: str, sql: str, column: str, unit: str, width: int = 6, rule: ThresholdRule | None = None,
               description: str = "", no_value: str = ""):
    """A stat panel of one column; with a rule, its background coloured as the core judges the value;
    ``no_value``: what it says when the value is blank."""
    panel = (stat.Panel().title(title).datasource(DATASOURCE).with_target(Sql(sql)).unit(unit).span(width).height(5)
             .reduce_options(ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields(f"/^{column}$/")))
    if description:
        panel = panel.description(description)
    if no_value:
        panel = panel.no_value(no_value)
    if rule is None:
        return panel
    return (panel.decimals(1).color_mode(common.BigValueColorMode.BACKGROUND)
            .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.THRESHOLDS))
            .thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
                        .steps([Threshold(s["value"], s["color"]) for s in rule_steps(rule)])))


def _variable(name: str, label: str, sql: str):
    return (dashboard.QueryVariable(name).label(label).query(sql.strip()).datasource(DATASOURCE).multi(True)
            .include_all(True).refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(VariableSort.ALPHABETICAL_ASC)
            .current(VariableOption(selected=True, text="All", value="$__all")))


VARIABLES = {"site": ("Site", q.VAR_SITE), "queue": ("Queue", q.VAR_QUEUE), "team": ("Team", q.VAR_TEAM),
             "agent": ("Agent", q.VAR_AGENT)}


def _dashboard(uid: str, title: str, description: str, time_from: str, variables: tuple[str, ...], panels: list,
               refresh: str = "5m", time_to: str = "now", extra: tuple = ()) -> dict:
    """A board; ``extra``: variables after the standard ones (constants, board-specific queries)."""
    board = (dashboard.Dashboard(title).uid(uid).description(description).tags(["callqa"]).timezone("utc")
             .time(time_from, time_to).refresh(refresh).editable())
    for name in variables:
        board = board.with_variable(_variable(name, *VARIABLES[name]))
    for variable in extra:
        board = board.with_variable(variable)
    for panel in panels:
        board = board.with_panel(panel)
    out = _plain(board.build())
    out.setdefault("templating", {}).setdefault("list", [])  # none, as Grafana saves a board without variables
    return out


def _plain(model) -> dict:
    """The SDK model as plain JSON data."""
    return json.loads(json.dumps(model, cls=JSONEncoder))


PCT = "percentunit"
MINUTE = "time:YYYY-MM-DD HH:mm"  # times to the minute
TOP_RATES = 10  # a chart of review rates shows the agents with the highest (the report's Options.top)


def _pct(limit: float) -> str:
    return f"{limit:.0%}"


def _default(env: str) -> str:
    return next(s.default for s in SETTINGS if s.env == env)


@dataclass(frozen=True)
class BoardSettings:
    """What the boards take from callqa's settings. Grafana cannot read callqa's environment: the boards carry
    these as dashboard constants (``recording_url``, ``min_calls``) or in their SQL, from the settings'
    defaults; ``python -m dashboards --recording-url T --min-calls N --monthly-target N`` writes others."""

    recording_url: str = _default("CALLQA_RECORDING_URL")  # a recording's link: {storage_uri}, {call_id}, {recording_id}
    min_calls: int = int(_default("CALLQA_MIN_CALLS_FOR_RATIO"))  # no ratio drawn from fewer calls
    monthly_target: int = int(_default("CALLQA_QA_MONTHLY_TARGET"))  # human evaluations per agent and month


DEFAULTS = BoardSettings()


def _constant(name: str, value, description: str):
    return dashboard.ConstantVariable(name).value(str(value)).description(description)


def _min_calls(settings: BoardSettings):
    return _constant("min_calls", settings.min_calls, "CALLQA_MIN_CALLS_FOR_RATIO: no ratio is drawn from fewer calls")


def _fields(panel, fields: dict[str, dict]):
    """Per column (by name) its field properties: displayName, links, custom.hidden, unit..."""
    for column, properties in fields.items():
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column),
                                    [DynamicConfigValue(id_val=k, value=v) for k, v in properties.items()])
    return panel


def _link(title: str, url: str, new_tab: bool = False) -> list[dict]:
    return [{"title": title, "url": url, "targetBlank": new_tab}]


# The agent's page: the agent-quality board for the agent of the row, over the same range.
AGENT_PAGE = _link("The agent's page", "/d/callqa-agent-quality?${__url_time_range}&var-site=${__data.fields.site_id}"
                   "&var-team=${__data.fields.team_id}&var-agent=${__data.fields.agent_id}")
_FIXED = lambda colour: {"mode": "fixed", "fixedColor": colour}
_TOOLTIP_ONLY = {"viz": True, "legend": True, "tooltip": False}
# A drift chart's scales (sinks.queries.SCALES): each its query, unit and left-axis label; the CUSUM on the right.
DETECTOR_AXES = {"normal": ("A", "percent", "QA score, % (the hour's evaluations)"),
                 "log": ("B", "s", "seconds (geometric mean of the hour's calls)"),
                 "binary": ("C", PCT, "share of the hour's calls")}
DETECTOR_FIELDS = {
    "value": {"displayName": "observed", "color": _FIXED("blue"), "custom.showPoints": "always", "custom.pointSize": 5},
    "expected": {"displayName": "expected (the detector's baseline)", "color": _FIXED("green"),
                 "custom.lineInterpolation": "stepAfter"},
    "alarm_value": {"displayName": "alarm line (the hour's value that reaches the limit)", "color": _FIXED("red"),
                    "custom.lineInterpolation": "stepAfter", "custom.lineStyle": {"fill": "dash", "dash": [10, 10]}},
    "in_alarm_value": {"displayName": "in alarm", "color": _FIXED("dark-red"), "custom.drawStyle": "points",
                       "custom.pointSize": 10},
    "observations": {"displayName": "calls or evaluations", "unit": "none", "custom.hideFrom": _TOOLTIP_ONLY},
    "statistic": {"displayName": "CUSUM statistic", "color": _FIXED("text"), "custom.lineInterpolation": "stepAfter"},
    "decision_limit": {"displayName": "CUSUM decision limit", "color": _FIXED("red"),
                       "custom.lineInterpolation": "stepAfter"},
}


def detector_panel(title: str, values: dict[str, str], cusum: str, repeat: str, description: str):
    """A drift chart as the detector holds it (``detector_state``): per hour the value against the expected
    value and the alarm line on the metric's own scale (left: one query per scale, with its unit), and the
    CUSUM statistic against its decision limit (right). One panel per value of ``repeat`` (small multiples)."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).span(24).height(9)
             .repeat(repeat).repeat_direction("h").max_per_row(2))
    for scale, sql in values.items():
        ref, unit, axis = DETECTOR_AXES[scale]
        panel = panel.with_target(Sql(sql, TIME_SERIES, ref)).override_by_query(ref, [
            DynamicConfigValue(id_val="unit", value=unit), DynamicConfigValue(id_val="custom.axisLabel", value=axis)])
    panel = panel.with_target(Sql(cusum, TIME_SERIES, "D")).override_by_query("D", [
        DynamicConfigValue(id_val="unit", value="none"), DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        DynamicConfigValue(id_val="custom.axisLabel", value="CUSUM statistic")])
    return _fields(panel, DETECTOR_FIELDS)


def live(settings: BoardSettings = DEFAULTS) -> dict:
    sl, ab, asa = RULE["service_level"], RULE["abandon_rate"], RULE["asa_s"]
    colours = (f"Coloured as callqa's threshold alerts judge: service level below {_pct(sl.warning)} warning, below "
               f"{_pct(sl.critical)} critical; abandonment above {_pct(ab.warning)} / {_pct(ab.critical)}; speed of "
               f"answer above {asa.warning:g} s / {asa.critical:g} s (callqa.core.thresholds.RULES).")
    queue_colours = {"service_level_today": sl, "service_level_30m": sl, "abandon_rate_30m": ab, "asa_s_30m": asa}
    local_day = ("\"Today\" is each site's own local day (CALLQA_SITE_TIMEZONES), summed over the sites chosen. ")
    few = (f"No ratio from fewer than {settings.min_calls} calls offered (CALLQA_MIN_CALLS_FOR_RATIO): blank, "
           "with the calls offered in 'Queues now'. ")
    blank = f"fewer than {settings.min_calls} calls"
    return _dashboard("callqa-live", "callqa · live operations wallboard",
                      "Now (the end of the range) per queue: contacts waiting and the oldest wait, service level today "
                      "and in the last 30 minutes against the target; agents staffed, available, on contact, in "
                      "after-call work or not ready, with the time in state. " + local_day + few + colours,
                      "now-6h", ("site", "queue", "team", "agent"), [
        big_number(f"Service level today (target {_pct(sl.warning)})", q.LIVE_SERVICE_NOW, "service_level_today",
                   PCT, width=4, rule=sl, description=local_day + few + colours, no_value=blank),
        big_number("Service level, last 30 minutes", q.LIVE_SERVICE_NOW, "service_level_30m", PCT, width=4, rule=sl,
                   description=few + colours, no_value=blank),
        big_number("Abandonment, last 30 minutes", q.LIVE_SERVICE_NOW, "abandon_rate_30m", PCT, width=4, rule=ab,
                   description=few + colours, no_value=blank),
        big_number("Speed of answer, last 30 minutes", q.LIVE_SERVICE_NOW, "asa_s_30m", "s", width=4, rule=asa,
                   description=few + colours, no_value=blank),
        big_number("Contacts waiting", q.CONTACTS_WAITING_TOTAL, "waiting", "none", width=4),
        big_number("Oldest waiting", q.CONTACTS_WAITING_TOTAL, "oldest_wait_s", "s", width=4),
        grid("Queues now", q.QUEUES_NOW, width=24, height=8, description=local_day + few + colours,
             units={"oldest_wait_s": "s", "service_level_today": PCT, "service_level_30m": PCT,
                    "service_level_target": PCT, "abandon_rate_30m": PCT, "asa_s_30m": "s"},
             coloured=queue_colours),
        grid("Agents now, per site", q.AGENTS_BY_SITE, width=10, units={"longest_not_ready_s": "s"},
             description="Staffed: logged in (available, on contact, after-call work or not ready)."),
        grid("Agents: state and time in state", q.AGENTS_NOW, width=14, units={"time_in_state_s": "s"}),
        series("Service level and abandonment (15 min)", q.LIVE_SERVICE_TREND, PCT, axis="% of calls offered",
               targets={"service_level": sl, "abandon_rate": ab}, tooltip_only=("calls_offered",),
               description=f"Per site over the chosen queues; none from fewer than {settings.min_calls} calls "
                           f"(CALLQA_MIN_CALLS_FOR_RATIO). Dashed: the threshold rules' limits. " + colours),
        series("Speed of answer and longest wait (15 min)", q.LIVE_WAIT_TREND, "s", axis="seconds",
               targets={"asa_s": asa}, tooltip_only=("calls_offered",),
               description=f"Speed of answer none from fewer than {settings.min_calls} calls offered. Dashed: the "
                           f"threshold rule's limits ({asa.warning:g} s, {asa.critical:g} s)."),
        grid("Sites over the range", q.LIVE_SITES, width=24, height=5, description=colours,
             units={"service_level": PCT, "abandon_rate": PCT, "asa_s": "s", "longest_wait_s": "s"},
             coloured={"service_level": sl, "abandon_rate": ab, "asa_s": asa}),
    ], refresh="30s", extra=(_min_calls(settings),))


def agent_quality(settings: BoardSettings = DEFAULTS) -> dict:
    return _dashboard("callqa-agent-quality", "callqa · agent quality",
                      "QA scores by section and category, automatic QA items, trends and coaching examples.",
                      "now-30d", ("site", "team", "agent"), [
        series("QA score and CSAT per day (human and automatic QA, % of points; CSAT, % satisfied)", q.QA_TREND,
               "percent", width=24, tooltip_only=("surveys",), units={"surveys": "none"},
               description=f"CSAT: % of survey answers 4 or 5 of 5; none from fewer than {settings.min_calls} "
                           "answers (CALLQA_MIN_CALLS_FOR_RATIO, as the report); the answers on hover."),
        bargauge.Panel().title("Sections (human evaluations, %)").datasource(DATASOURCE).with_target(Sql(q.QA_SECTIONS))
        .unit("percent").min(0).max(100).span(8).height(8)
        .reduce_options(ReduceDataOptions().values(True).fields("/^pct$/")),
        grid("Agents: score and categories (%)", q.QA_AGENTS, width=16),
        grid("Automatic QA: items passed", q.AUTO_QA_ITEMS, width=8, units={"pass_rate": PCT}),
        grid("Coaching examples", q.COACHING, width=16, units={"pct": "percent"}),
        grid("Which QA items matter to customers: CSAT when the item passed and when it failed", q.CSAT_ITEMS, width=24,
             description="Calls with a QA evaluation and a post-call survey: mean CSAT (1-5) of the calls that passed "
                         f"each item ({ITEM_PASS_SHARE:.0%} of its points) and of those that failed it, the difference "
                         f"with its 95% interval (Welch) and the point-biserial correlation; items with at least {MIN_GROUP} "
                         "calls each "
                         "way. Items fail together, so a difference carries its companions' effects: the report "
                         "(callqa report) adds the effect of each item with the others held fixed."),
    ], extra=(_min_calls(settings),))


def drift_and_plan(settings: BoardSettings = DEFAULTS) -> dict:
    board = _dashboard("callqa-drift", "callqa · drift and monitoring plan",
                       "Control charts and drift alerts; each agent's review rate and why; the review queue; "
                       "coverage against the base rate and the monthly minimum.",
                       "now-30d", ("site", "team", "agent"), [
        detector_panel("Human QA drift chart: site ${site}", {"normal": q.QA_CONTROL_CHART}, q.QA_CONTROL_CUSUM, "site",
                       "The site's human-QA drift chart as the detector holds it (detector_state: nothing recomputed "
                       "here): per hour the score against the detector's expected value and the alarm line (the "
                       "hour's score that would reach the limit), and on the right the CUSUM statistic against its "
                       "decision limit; red dots: in alarm. One chart per chosen site."),
        grid("Drift alerts", q.DRIFT_ALERTS, width=12, units={"opened_at": MINUTE}),
        grid("Review rate per agent, and why", q.SAMPLING_RATES_NOW, width=12, units={"rate": PCT}),
        series(f"Review-rate changes: the {TOP_RATES} agents with the highest rate", q.top_rate_trend(TOP_RATES), PCT,
               width=12, axis="share of calls reviewed").line_interpolation(common.LineInterpolation.STEP_AFTER),
        series("Review queue per day, by method", q.REVIEW_QUEUE_DAILY, bars=True, width=12),
        grid("Coverage against targets", q.COVERAGE, width=12,
             units={"selected_share": PCT, "target_share": PCT}),
    ])
    board["annotations"] = {"list": [{
        "name": "Drift detected", "enable": True, "iconColor": "red", "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
        "target": ClickHouseQuery(q.DRIFT_ANNOTATIONS, TABLE, "Anno").to_json()}]}
    return board


def calibration(settings: BoardSettings = DEFAULTS) -> dict:
    return _dashboard("callqa-calibration", "callqa · calibration",
                      "Calibration sessions: each evaluator's deviation from the call's mean score, and item agreement.",
                      "now-90d", ("site",), [
        grid("Evaluators: deviation from the reference (points)", q.CALIBRATION_EVALUATORS, width=12),
        series("Mean deviation per week", q.CALIBRATION_TREND, "short", width=12),
        grid("Items: agreement between evaluators", q.CALIBRATION_ITEMS, width=24, units={"full_agreement": PCT}),
    ])


def site_comparison(settings: BoardSettings = DEFAULTS) -> dict:
    return _dashboard("callqa-sites", "callqa · site comparison",
                      "Sites side by side from the day and month rollups: service, handling, resolution and quality.",
                      "now-90d", ("site",), [
        grid("Sites over the range", q.SITE_COMPARISON, width=24, height=6,
             units={k: PCT for k in ("service_level", "abandon_rate", "transfer_rate", "fcr_rate", "occupancy")}),
        series("Service level per day", q.site_daily("service_level"), PCT, width=8, axis="% of calls offered",
               targets={"service_level": RULE["service_level"]}),
        series("Average handle time per day", q.site_daily("aht_s"), "s", width=8),
        series("Automatic QA score per day (%)", q.site_daily("qa_auto_pct"), "percent", width=8),
        series("CSAT per day (% of survey answers 4 or 5 of 5)", q.site_daily("csat_pct"), "percent", width=8),
        grid("Months", q.SITE_MONTHLY, width=24, units={"service_level": PCT}),
    ])


def promql(query: str, legend: str = "", ref_id: str = "A"):
    return prometheus.Dataquery().expr(query).legend_format(legend).range().ref_id(ref_id).datasource(PROMETHEUS)


def prom_series(title: str, queries: list[tuple[str, str]], unit: str = "short", width: int = 12,
                description: str = ""):
    """A time series of PromQL queries, each (expression, legend)."""
    panel = (timeseries.Panel().title(title).description(description).datasource(PROMETHEUS).unit(unit)
             .span(width).height(8))
    for ref_id, (query, legend) in zip("ABCDEFGH", queries):
        panel = panel.with_target(promql(query, legend, ref_id))
    return panel


def prom_number(title: str, query: str, legend: str = "", unit: str = "none", width: int = 4, description: str = ""):
    return (stat.Panel().title(title).description(description).datasource(PROMETHEUS).with_target(promql(query, legend))
            .unit(unit).span(width).height(5).reduce_options(ReduceDataOptions().values(False).calcs(["lastNotNull"])))


# Pipeline alert thresholds (the rules below; README "Operating callqa").
LAG_LIMIT = 10_000  # messages a partition may be behind for LAG_FOR before the lag alerts fire
LAG_FOR = "5m"
STALE_AFTER_S = 120  # a sink with input waiting and no successful write for this long is stale ...
STALE_FOR = "1m"  # ... once that has lasted this long
RATE = "[$__rate_interval]"
SINK_LAG = "max by (topic, partition) (callqa_consumer_lag)"
STAGE_LAG = "max by (stage, partition) (callqa_stage_lag)"
SINK_STALE = ("(time() - callqa_last_write_timestamp_seconds) and on (instance) "
              "(sum by (instance) (callqa_consumer_lag) > 0)")
STALL_FOR = "2m"  # a worker with input waiting and no message applied in 5 min, for this long, is stalled
WORKER_STALLED = ("(sum by (instance) (callqa_stage_lag) > 0) unless on (instance) "
                  "(sum by (instance) (rate(callqa_stage_messages_total[5m])) > 0)")
TARGET_DOWN = '1 - up{job="callqa-worker"}'  # Prometheus's own series: 1 while a scrape target does not answer


def pipeline(settings: BoardSettings = DEFAULTS) -> dict:
    return _dashboard("callqa-pipeline", "callqa · pipeline health",
                      "The worker and the sink from their Prometheus metrics (callqa.metrics), and the store's own view "
                      "of what was written (panels marked 'store': they work without Prometheus).",
                      "now-6h", (), [
        prom_series("Consumer lag per partition (messages)", [(SINK_LAG, "sink {{topic}}/{{partition}}"),
                                                              (STAGE_LAG, "stage {{stage}}/{{partition}}")],
                    description=f"Messages behind the end of each partition: the sink's topics and the worker stages' "
                                f"inputs. Alerts above {LAG_LIMIT} for {LAG_FOR}."),
        prom_series("Seconds since the last successful write", [
            ("time() - (callqa_last_write_timestamp_seconds > 0)", "{{instance}}")], "s",
                    description=f"Per sink process. Alerts above {STALE_AFTER_S} s while its lag is above 0."),
        prom_series("Events stored per second, by type", [
            (f"sum by (type) (rate(callqa_events_total{RATE}))", "{{type}}")], "ops", width=8),
        prom_series("Dead letters per second, by reason", [
            (f"sum by (reason) (rate(callqa_dead_letters_total{RATE}))", "{{reason}}")], "ops", width=8),
        prom_series("Rows written per second, per table", [
            (f"sum by (table) (rate(callqa_rows_written_total{RATE}))", "{{table}}"),
            (f"sum by (table) (rate(callqa_rows_refused_total{RATE}))", "refused {{table}}")], "ops", width=8,
                    description="Rows stored, and rows the store refused (kept as dead letters)."),
        prom_series("Insert latency p95", [
            (f"histogram_quantile(0.95, sum by (table, le) (rate(callqa_insert_seconds_bucket{RATE})))", "{{table}}")],
                    "s", width=8),
        prom_series("Rows per insert (mean)", [
            (f"sum by (table) (rate(callqa_batch_rows_sum{RATE})) / sum by (table) (rate(callqa_batch_rows_count{RATE}))",
             "{{table}}")], width=8),
        prom_series("Input messages applied per second, per worker stage", [
            (f"sum by (stage) (rate(callqa_stage_messages_total{RATE}))", "{{stage}}")], "ops", width=8),
        prom_number("Store up (all sinks)", "min(callqa_store_up)", width=6,
                    description="1 while every sink's store answers; 0 while one retries its writes."),
        prom_number("Open incidents, by level", "sum by (level) (callqa_open_incidents)", "{{level}}", width=12),
        prom_number("Review queue", "sum(callqa_review_queue)", width=6,
                    description="Calls queued for review, neither dropped nor evaluated since (the workers' count)."),
        series("Dead letters by reason (store)", q.DEAD_LETTERS_BY_REASON, bars=True),
        series("Rows stored per table (store)", q.ROWS_STORED, bars=True),
        grid("Tables: rows stored in the range, and freshness (store)", q.TABLE_FRESHNESS, width=12,
             units={"seconds_since_last": "s"}),
        big_number("Review backlog (store)", q.REVIEW_BACKLOG, "review_backlog", "none", width=4),
        grid("Open incidents by level (store)", q.OPEN_INCIDENTS_BY_LEVEL, width=8, height=5),
    ], refresh="30s")


def today(settings: BoardSettings = DEFAULTS) -> dict:
    """The decisions of the day: open incidents with their drift charts, who to review and why, agents behind
    their monthly target, calibration outliers."""
    chart = _link("Chart this incident", "/d/callqa-today?${__url_time_range}&${site:queryparam}"
                  "&${__data.fields.series_params:raw}")
    target = settings.monthly_target
    return _dashboard("callqa-today", "callqa · today",
                      "The day's decisions. The tables are of the range's last day (UTC; by default today), the "
                      "charts show the whole range (by default the seven days to the end of today).",
                      "now-6d/d", ("site",), [
        _fields(grid("Quality incidents: open at the end of the day, and cleared during it", q.TODAY_INCIDENT_LIST,
                     width=24, height=7,
                     description="The widest scope first. Evidence: what the incident's first charted series showed "
                                 "in the hour it opened (the detector's stored state). Click an incident or its "
                                 "metrics to chart it below."), {
            "alert_id": {"displayName": "incident", "links": chart}, "metrics": {"links": chart},
            "opened": {"displayName": "opened (UTC)"}, "open_for": {"displayName": "open for"},
            "series": {"displayName": "charted series"}, "minutes_open": {"custom.hidden": True},
            "series_params": {"custom.hidden": True}}),
        detector_panel("${series}", q.INCIDENT_CHART, q.INCIDENT_CUSUM, "series",
                       "An incident's series as the drift detector holds it (detector_state: nothing recomputed "
                       "here): per hour the value against the detector's expected value and the alarm line (the "
                       "hour's value that would reach the limit), on the metric's own scale; on the right the CUSUM "
                       "statistic against its decision limit; red dots: in alarm. A share of fewer than "
                       f"{settings.min_calls} calls is not drawn. One chart per series of the 'series' variable "
                       "(by default every series of the day's incidents)."),
        _fields(grid("Who to review today, and why", q.today_review_list(target), width=24, height=10,
                     description="The day's review queue, highest risk first: why each call was drawn (the incident "
                                 "or operational change holding the agent's rate up, the coverage rule, the monthly "
                                 f"minimum of {target}, or a random draw). The call links to its recording "
                                 "(CALLQA_RECORDING_URL: the board's constant recording_url), the agent to their page."), {
            "call_id": {"displayName": "call (recording)", "links": _link("Recording", "${__data.fields.recording:raw}", True)},
            "agent_id": {"displayName": "agent", "links": AGENT_PAGE}, "time": {"displayName": "time (UTC)"},
            "method_words": {"displayName": "method"}, "risk": {"displayName": "risk (× base rate)"},
            "recording": {"custom.hidden": True}}),
        _fields(grid(f"Agents behind their monthly target ({target} human evaluations a month, pro rata)",
                     q.today_behind_target(target), width=12,
                     description="Human evaluations this month to the end of the day against the target pro rata "
                                 "from the agent's first call of the month (CALLQA_QA_MONTHLY_TARGET), furthest "
                                 "behind first."), {
            "agent_id": {"displayName": "agent", "links": AGENT_PAGE},
            "first_call": {"displayName": "first call this month", "unit": MINUTE},
            "evaluated": {"displayName": "evaluated this month"}, "due": {"displayName": "due by the day's end"},
            "target": {"displayName": "monthly target"}, "queued_today": {"displayName": "queued today"}}),
        _fields(grid(f"Calibration outliers this month (scores more than {DEFAULT_THRESHOLD_PCT:g} points from the "
                     "reference)", q.TODAY_CALIBRATION_OUTLIERS, width=12,
                     description="Evaluators with a calibration score more than the threshold from the call's mean "
                                 "score (callqa.core.calibration), this month to the end of the day."), {
            "calls": {"displayName": "calibration scores"},
            "mean_deviation": {"displayName": "mean deviation, points"},
            "largest_deviation": {"displayName": "largest deviation, points"}, "call_id": {"displayName": "on call"}}),
    ], time_to="now/d", extra=(
        dashboard.QueryVariable("series").label("Series").query(q.VAR_INCIDENT_SERIES.strip()).datasource(DATASOURCE)
        .description("Drift series to chart (level|site|entity|metric): by default every series of the day's "
                     "incidents; any other series key can be typed in")
        .multi(True).include_all(True).allow_custom_value(True).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.DISABLED).current(VariableOption(selected=True, text="All", value="$__all")),
        _constant("recording_url", settings.recording_url,
                  "CALLQA_RECORDING_URL: a recording's link, with {storage_uri}, {call_id} and {recording_id}"),
        _min_calls(settings)))


DASHBOARDS = {"callqa-today": today, "callqa-live": live, "callqa-agent-quality": agent_quality, "callqa-drift": drift_and_plan,
              "callqa-calibration": calibration, "callqa-sites": site_comparison, "callqa-pipeline": pipeline}


# Alert rules -------------------------------------------------------------------------------------

def _rule(uid: str, title: str, sql: str, op: str, limit: float, summary: str, severity: str | None, window_s: int,
          dashboard_uid: str, for_: str = "5m"):
    """A rule on a store query; ``severity`` None: the query's ``severity`` column labels each instance."""
    labels = {"team": "operations"} | ({"severity": severity} if severity else {})
    return (alerting.Rule(title).uid(uid).condition("C").for_val(for_).no_data_state("OK").exec_err_state("Error")
            .labels(labels)
            .annotations({"summary": summary, "__dashboardUid__": dashboard_uid})
            .queries([
                alerting.Query("A").datasource_uid(DATASOURCE_UID)
                .relative_time_range(RelativeTimeRange(from_val=window_s, to=0)).model(Sql(sql, TABLE)),
                alerting.Query("C").datasource_uid("__expr__").model(
                    expr.TypeThreshold().ref_id("C").datasource(DataSourceRef(type_val="__expr__", uid="__expr__"))
                    .expression("A").conditions([
                        expr.ExprTypeThresholdConditions().evaluator(
                            expr.ExprTypeThresholdConditionsEvaluator().type(op).params([limit]))])),
            ]))


def _prom_rule(uid: str, title: str, query: str, limit: float, summary: str, for_: str, severity: str):
    """A pipeline rule: a PromQL instant query (its series the alert instances) above ``limit`` for ``for_``."""
    return (alerting.Rule(title).uid(uid).condition("C").for_val(for_).no_data_state("OK").exec_err_state("Error")
            .labels({"severity": severity, "team": "operations"})
            .annotations({"summary": summary, "__dashboardUid__": "callqa-pipeline"})
            .queries([
                alerting.Query("A").datasource_uid(PROMETHEUS_UID).relative_time_range(RelativeTimeRange(from_val=600, to=0))
                .model(prometheus.Dataquery().expr(query).instant().ref_id("A").datasource(PROMETHEUS)),
                alerting.Query("C").datasource_uid("__expr__").model(
                    expr.TypeThreshold().ref_id("C").datasource(DataSourceRef(type_val="__expr__", uid="__expr__"))
                    .expression("A").conditions([
                        expr.ExprTypeThresholdConditions().evaluator(
                            expr.ExprTypeThresholdConditionsEvaluator().type("gt").params([limit]))])),
            ]))


def alert_rules() -> dict:
    """Grafana alerting file provisioning: callqa's own threshold alerts on the service KPIs while the core
    has them open (the core judges; its severity labels them), open quality incidents, and the pipeline's
    lag and freshness (Prometheus)."""
    words = {"service_level": "Service level", "abandon_rate": "Abandonment", "asa_s": "Average speed of answer"}
    limit = lambda r, x: _pct(x) if r.metric != "asa_s" else f"{x:g} s"
    rules = [
        _rule(f"callqa-{r.metric.replace('_', '-')}", f"{words[r.metric]} {'below' if r.worse < 0 else 'above'} "
              f"{limit(r, r.warning)}", q.threshold_alerts_open(r.metric), "gt", 0,
              f"{{{{ $labels.severity }}}}: {words[r.metric]} of {{{{ $labels.level }}}} {{{{ $labels.entity_id }}}} "
              f"({{{{ $labels.site_id }}}}) {'below' if r.worse < 0 else 'above'} {limit(r, r.warning)} (critical: "
              f"{limit(r, r.critical)}) in {{{{ $values.A }}}} judged {r.window_s // 60}-minute windows so far; callqa "
              f"alert {{{{ $labels.alert_id }}}}, open until the core clears it",
              None, 3600, "callqa-live", for_="0s")
        for r in RULES]
    rules.append(_rule("callqa-quality-drift", "Quality incident open", q.OPEN_INCIDENTS, "gt", 0,
                       "{{ $labels.metric }} of {{ $labels.level }} {{ $labels.entity_id }} drifted towards worse "
                       "quality (incident {{ $labels.alert_id }}: one per root cause, its scope may have changed since); "
                       "its agents' review rates are raised", "warning", 86400,
                       "callqa-drift"))
    rules += [
        _prom_rule("callqa-sink-lag", f"Sink over {LAG_LIMIT} messages behind", SINK_LAG, LAG_LIMIT,
                   f"The sink is {{{{ $values.A }}}} messages behind on {{{{ $labels.topic }}}}/{{{{ $labels.partition }}}} "
                   f"(over {LAG_LIMIT} for {LAG_FOR})", LAG_FOR, "warning"),
        _prom_rule("callqa-stage-lag", f"Worker stage over {LAG_LIMIT} messages behind", STAGE_LAG, LAG_LIMIT,
                   f"Worker stage {{{{ $labels.stage }}}} partition {{{{ $labels.partition }}}} is {{{{ $values.A }}}} "
                   f"messages behind its input (over {LAG_LIMIT} for {LAG_FOR})", LAG_FOR, "warning"),
        _prom_rule("callqa-sink-stale", f"Sink stale: no write for {STALE_AFTER_S} s with input waiting", SINK_STALE,
                   STALE_AFTER_S, "The sink {{ $labels.instance }} has stored nothing for {{ $values.A }} s while its "
                   "topics hold messages not yet stored (is ClickHouse answering? `callqa check`)", STALE_FOR, "critical"),
        _prom_rule("callqa-worker-stalled", "Worker stalled: input waiting, nothing applied for 5 min", WORKER_STALLED, 0,
                   "The worker {{ $labels.instance }} has {{ $values.A }} messages waiting and applied none in 5 min "
                   "(hung or stopped?): restart it", STALL_FOR, "critical"),
        _prom_rule("callqa-target-down", "A callqa process does not answer its metrics scrape", TARGET_DOWN, 0,
                   "{{ $labels.instance }} has not answered Prometheus for 1 min: the process is down or hung",
                   "1m", "critical"),
    ]
    group = []
    for rule in rules:
        body = _plain(rule.build())
        for key in ("folderUID", "orgID", "ruleGroup"):
            body.pop(key, None)
        group.append(body)
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "callqa", "folder": "callqa", "interval": "1m",
                                         "rules": group}]}
