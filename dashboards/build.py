"""The Grafana dashboards and alert rules, built with grafana-foundation-sdk from the queries in
``sinks/queries.py``. ``python -m dashboards`` writes them under ``dashboards/`` (committed; a test
checks the files are what this code builds)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import (
    alerting,
    bargauge,
    dashboard,
    expr,
    piechart,
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
    MatcherConfig,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from callqa.core.thresholds import RULES
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


def series(title: str, sql: str, unit: str = "short", width: int = 12, units: dict[str, str] | None = None,
           bars: bool = False, description: str = "", tooltip_only: tuple[str, ...] = ()):
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(Sql(sql, TIME_SERIES)).unit(unit).span(width).height(8))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).stacking(
            StackingConfig().mode(common.StackingMode.NORMAL))
    for column in tooltip_only:  # a figure to read on hover, not to draw
        panel = panel.with_override(MatcherConfig(id_val="byName", options=column), [DynamicConfigValue(
            id_val="custom.hideFrom", value={"viz": True, "legend": True, "tooltip": False})])
    return _units(panel, units or {})


def grid(title: str, sql: str, width: int = 12, height: int = 8, units: dict[str, str] | None = None,
         description: str = ""):
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(Sql(sql)).span(width).height(height))
    return _units(panel, units or {})


def big_number(title: str, sql: str, column: str, unit: str, width: int = 6):
    return (stat.Panel().title(title).datasource(DATASOURCE).with_target(Sql(sql)).unit(unit).span(width).height(5)
            .reduce_options(ReduceDataOptions().values(True).calcs(["lastNotNull"])
                            .fields(f"/^{column}$/")))


def _variable(name: str, label: str, sql: str):
    return (dashboard.QueryVariable(name).label(label).query(sql.strip()).datasource(DATASOURCE).multi(True)
            .include_all(True).refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(VariableSort.ALPHABETICAL_ASC)
            .current(VariableOption(selected=True, text="All", value="$__all")))


VARIABLES = {"site": ("Site", q.VAR_SITE), "queue": ("Queue", q.VAR_QUEUE), "team": ("Team", q.VAR_TEAM),
             "agent": ("Agent", q.VAR_AGENT)}


def _dashboard(uid: str, title: str, description: str, time_from: str, variables: tuple[str, ...], panels: list,
               refresh: str = "5m") -> dict:
    board = (dashboard.Dashboard(title).uid(uid).description(description).tags(["callqa"]).timezone("utc")
             .time(time_from, "now").refresh(refresh).editable())
    for name in variables:
        board = board.with_variable(_variable(name, *VARIABLES[name]))
    for panel in panels:
        board = board.with_panel(panel)
    out = _plain(board.build())
    out.setdefault("templating", {}).setdefault("list", [])  # none, as Grafana saves a board without variables
    return out


def _plain(model) -> dict:
    """The SDK model as plain JSON data."""
    return json.loads(json.dumps(model, cls=JSONEncoder))


PCT = "percentunit"


def live() -> dict:
    return _dashboard("callqa-live", "callqa · live operations wallboard",
                      "Service level, speed of answer, waiting calls, abandonment and agent states, per site and queue.",
                      "now-6h", ("site", "queue", "team", "agent"), [
        big_number("Service level", q.LIVE_SITES, "service_level", PCT),
        big_number("Average speed of answer", q.LIVE_SITES, "asa_s", "s"),
        big_number("Abandonment", q.LIVE_SITES, "abandon_rate", PCT),
        big_number("Longest wait", q.LIVE_SITES, "longest_wait_s", "s"),
        series("Service level and abandonment (15 min)", q.LIVE_SERVICE_TREND, PCT),
        series("Speed of answer and longest wait (15 min)", q.LIVE_WAIT_TREND, "s"),
        grid("Calls waiting now", q.LIVE_WAITING, width=8, units={"longest_wait_s": "s"}),
        piechart.Panel().title("Agents by state").datasource(DATASOURCE).with_target(Sql(q.AGENT_STATE_COUNTS))
        .span(6).height(8).reduce_options(ReduceDataOptions().values(True).calcs(["lastNotNull"])),
        grid("Agent states", q.AGENT_STATES, width=10),
    ], refresh="30s")


def agent_quality() -> dict:
    return _dashboard("callqa-agent-quality", "callqa · agent quality",
                      "QA scores by section and category, automatic QA items, trends and coaching examples.",
                      "now-30d", ("site", "team", "agent"), [
        series("QA score per day (human and automatic, %)", q.QA_TREND, "percent", width=24),
        bargauge.Panel().title("Sections (human evaluations, %)").datasource(DATASOURCE).with_target(Sql(q.QA_SECTIONS))
        .unit("percent").min(0).max(100).span(8).height(8)
        .reduce_options(ReduceDataOptions().values(True).fields("/^pct$/")),
        grid("Agents: score and categories (%)", q.QA_AGENTS, width=16),
        grid("Automatic QA: items passed", q.AUTO_QA_ITEMS, width=8, units={"pass_rate": PCT}),
        grid("Coaching examples", q.COACHING, width=16, units={"pct": "percent"}),
    ])


def drift_and_plan() -> dict:
    board = _dashboard("callqa-drift", "callqa · drift and monitoring plan",
                       "Control charts and drift alerts; each agent's review rate and why; the review queue; "
                       "coverage against the base rate and the monthly minimum.",
                       "now-30d", ("site", "team", "agent"), [
        series("Control chart: human QA score per day (%)", q.QA_CONTROL_CHART, "percent", width=12,
               description="X-bar chart of the selection's evaluations: centre and sigma from the first three days "
                           "shown, limits centre ± 3 sigma / sqrt(evaluations that day); red marks: drift detected.",
               tooltip_only=("evaluations",)),
        grid("Drift alerts", q.DRIFT_ALERTS, width=12),
        grid("Review rate per agent, and why", q.SAMPLING_RATES_NOW, width=12, units={"rate": PCT}),
        series("Review-rate changes", q.SAMPLING_RATE_TREND, PCT, width=12),
        series("Review queue per day, by method", q.REVIEW_QUEUE_DAILY, bars=True, width=12),
        grid("Coverage against targets", q.COVERAGE, width=12,
             units={"selected_share": PCT, "target_share": PCT}),
    ])
    board["annotations"] = {"list": [{
        "name": "Drift detected", "enable": True, "iconColor": "red", "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
        "target": ClickHouseQuery(q.DRIFT_ANNOTATIONS, TABLE, "Anno").to_json()}]}
    return board


def calibration() -> dict:
    return _dashboard("callqa-calibration", "callqa · calibration",
                      "Calibration sessions: each evaluator's deviation from the call's mean score, and item agreement.",
                      "now-90d", ("site",), [
        grid("Evaluators: deviation from the reference (points)", q.CALIBRATION_EVALUATORS, width=12),
        series("Mean deviation per week", q.CALIBRATION_TREND, "short", width=12),
        grid("Items: agreement between evaluators", q.CALIBRATION_ITEMS, width=24, units={"full_agreement": PCT}),
    ])


def site_comparison() -> dict:
    return _dashboard("callqa-sites", "callqa · site comparison",
                      "Sites side by side from the day and month rollups: service, handling, resolution and quality.",
                      "now-90d", ("site",), [
        grid("Sites over the range", q.SITE_COMPARISON, width=24, height=6,
             units={k: PCT for k in ("service_level", "abandon_rate", "transfer_rate", "fcr_rate", "occupancy")}),
        series("Service level per day", q.site_daily("service_level"), PCT, width=8),
        series("Average handle time per day", q.site_daily("aht_s"), "s", width=8),
        series("Automatic QA score per day (%)", q.site_daily("qa_auto_pct"), "percent", width=8),
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


def pipeline() -> dict:
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


DASHBOARDS = {"callqa-live": live, "callqa-agent-quality": agent_quality, "callqa-drift": drift_and_plan,
              "callqa-calibration": calibration, "callqa-sites": site_comparison, "callqa-pipeline": pipeline}


# Alert rules -------------------------------------------------------------------------------------

def _rule(uid: str, title: str, sql: str, op: str, limit: float, summary: str, severity: str, window_s: int,
          dashboard_uid: str):
    return (alerting.Rule(title).uid(uid).condition("C").for_val("5m").no_data_state("OK").exec_err_state("Error")
            .labels({"severity": severity, "team": "operations"})
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
    """Grafana alerting file provisioning: the service KPIs at their warning limits, open quality drifts,
    and the pipeline's lag and freshness (Prometheus)."""
    words = {"service_level": "Service level", "abandon_rate": "Abandonment", "asa_s": "Average speed of answer"}
    limit = lambda r: f"{r.warning:.0%}" if r.metric != "asa_s" else f"{r.warning:g} s"
    rules = [
        _rule(f"callqa-{r.metric.replace('_', '-')}", f"{words[r.metric]} {'below' if r.worse < 0 else 'above'} "
              f"{limit(r)}", q.kpi_alert(r.metric), "lt" if r.worse < 0 else "gt", r.warning,
              f"{words[r.metric]} of {{{{ $labels.level }}}} {{{{ $labels.entity_id }}}} ({{{{ $labels.site_id }}}}) "
              f"is {{{{ $values.A }}}} in the latest {r.window_s // 60} minutes",
              "critical" if r.metric == "service_level" else "warning", 2 * r.window_s, "callqa-live")
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
    ]
    group = []
    for rule in rules:
        body = _plain(rule.build())
        for key in ("folderUID", "orgID", "ruleGroup"):
            body.pop(key, None)
        group.append(body)
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "callqa", "folder": "callqa", "interval": "1m",
                                         "rules": group}]}
