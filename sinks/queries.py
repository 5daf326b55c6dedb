"""Named read queries: the one place each query lives (CLI, dashboards, alert rules and tests use these)."""
from __future__ import annotations

from callqa.core.calibration import DEFAULT_THRESHOLD_PCT
from callqa.core.sampling import PolicyConfig
from callqa.core.thresholds import RULES
from streams.gauges import REVIEW_DAYS

# Hourly service level, ASA, abandonment and AHT of one site and day (callqa query; README).
SITE_HOURLY = """
SELECT formatDateTime(window_start, '%H:00') AS hour, offered, answered, abandoned,
       round(service_level, 3) AS service_level, asa_s, round(abandon_rate, 3) AS abandon_rate, aht_s
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 3600 AND site_id = '{site}' AND toDate(window_start) = '{day}'
ORDER BY hour
"""

# The live view: the last 30 minutes per site and queue, from the six latest 5-minute buckets.
LIVE_LAST_30_MINUTES = """
SELECT level, site_id, entity_id, sum(offered) AS calls_offered, sum(answered) AS calls_answered,
       sum(abandoned) AS calls_abandoned,
       round(sum(sl_numerator) / nullIf(sum(sl_denominator), 0), 3) AS service_level,
       round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 1) AS asa_s
FROM kpi_windows FINAL
WHERE level IN ('site', 'queue') AND window_s = 300
  AND window_start >= (SELECT max(window_start) FROM kpi_windows WHERE window_s = 300) - INTERVAL 25 MINUTE
GROUP BY level, site_id, entity_id
ORDER BY level, site_id, entity_id
"""

SITE_KPI_SUMMARY = """
SELECT site_id,
       sum(offered) AS calls_offered,
       sum(answered) AS calls_answered,
       sum(abandoned) AS calls_abandoned,
       round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 2) AS asa_s,
       round(sum(abandoned) / nullIf(sum(offered), 0), 4) AS abandon_rate
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = {window_s:d}
GROUP BY site_id
ORDER BY site_id
"""

CALL_OUTCOMES = """
SELECT site_id, outcome, count() AS calls
FROM call_records FINAL
GROUP BY site_id, outcome
ORDER BY site_id, outcome
"""

# Coaching library: calls tagged for coaching (outstanding, poor, fail:<item>) by item, agent and period.
COACHING_EXAMPLES = """
SELECT evaluated_at, agent_id, call_id, kind, pct, grade, coaching_tags, comment
FROM evaluations FINAL
WHERE has(coaching_tags, '{tag}') AND evaluated_at >= '{start}' AND evaluated_at < '{end}'{agent_filter}
ORDER BY evaluated_at
"""

# Section and category scores (%) per agent, team or site ({level}_id) and period, by kind.
QA_SECTION_SCORES = """
SELECT {level}_id, kind, section, round(100 * sum(score) / sum(max), 1) AS pct, count() AS evaluations
FROM evaluations FINAL
ARRAY JOIN section_ids AS section, section_scores AS score, section_max AS max
WHERE evaluated_at >= '{start}' AND evaluated_at < '{end}'
GROUP BY {level}_id, kind, section
ORDER BY {level}_id, kind, section
"""

# Evaluations per agent this month against the monthly target (human QA and internal test calls).
EVALUATIONS_THIS_MONTH = """
SELECT agent_id, countIf(kind = 'human') AS human, countIf(kind = 'test_call') AS test_calls,
       {target:d} AS target, countIf(kind = 'human') >= {target:d} AS on_target
FROM evaluations FINAL
WHERE toStartOfMonth(evaluated_at) = toStartOfMonth(toDateTime64('{month}-01', 3, 'UTC'))
GROUP BY agent_id
ORDER BY human
"""

# Calibration evaluations of one month, as the calibration report reads them.
CALIBRATION_EVALUATIONS = """
SELECT evaluation_id, call_id, agent_id, evaluator_id, form_id, form_version, toString(evaluated_at),
       item_ids, item_scores, item_max
FROM evaluations FINAL
WHERE kind = 'calibration' AND formatDateTime(evaluated_at, '%Y-%m') = '{month}'
"""

# A day's review queue (what the reviewers' plans are made from).
REVIEW_QUEUE_DAY = """
SELECT call_id, agent_id, team_id, site_id, method, reason, risk
FROM review_queue FINAL
WHERE day = '{day}' AND status = 'queued'
ORDER BY risk DESC, call_id
"""

# Agents who took calls in the four weeks before a week, with the hours of day they worked.
ACTIVE_AGENTS = """
SELECT agent_id, any(site_id) AS site_id, groupUniqArray(toHour(answered_at)) AS hours
FROM call_records FINAL
WHERE agent_id != '' AND answered_at >= toDateTime64('{week}', 3, 'UTC') - INTERVAL 28 DAY
  AND answered_at < toDateTime64('{week}', 3, 'UTC')
GROUP BY agent_id
ORDER BY agent_id
"""

# The evaluation items agents failed most in the four weeks before a week.
FAILING_ITEMS = """
SELECT substring(tag, 6) AS item, count() AS failures
FROM evaluations FINAL ARRAY JOIN coaching_tags AS tag
WHERE startsWith(tag, 'fail:') AND evaluated_at >= toDateTime64('{week}', 3, 'UTC') - INTERVAL 28 DAY
  AND evaluated_at < toDateTime64('{week}', 3, 'UTC')
GROUP BY item
ORDER BY failures DESC, item
LIMIT {limit}
"""


# ---------------------------------------------------------------------------------------------------
# Dashboard queries (Grafana). Written with Grafana's variables (${site:singlequote}, ...) and the
# ClickHouse plugin's macros ($__timeFilter, ...): sinks/macros.py expands them as Grafana does.
# dashboards/ builds the panels and alert rules from these; nothing else holds their SQL.
# ---------------------------------------------------------------------------------------------------

SITES = "site_id IN (${site:singlequote})"
QUEUES = "entity_id IN (${queue:singlequote})"
AGENTS = "agent_id IN (${agent:singlequote})"

# KPI ratios from summed counters (the formulas of callqa.core.kpi.row), for any slice of windows or rollups.
RATIOS = {
    "service_level": "round(sum(sl_numerator) / nullIf(sum(sl_denominator), 0), 3)",
    "asa_s": "round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 1)",
    "abandon_rate": "round(sum(abandoned) / nullIf(sum(offered), 0), 3)",
    "aht_s": "round((sum(talk_ms) + sum(hold_ms) + sum(acw_ms)) / nullIf(sum(handled), 0) / 1000, 1)",
    "transfer_rate": "round(sum(transferred) / nullIf(sum(handled), 0), 3)",
    "fcr_rate": "round(sum(fcr_resolved) / nullIf(sum(fcr_eligible), 0), 3)",
    "occupancy": "round((sum(talk_ms) + sum(hold_ms) + sum(acw_ms)) / nullIf(sum(logged_in_ms) - sum(not_ready_ms), 0), 3)",
    "qa_human_pct": "round(100 * sum(qa_human_score) / nullIf(sum(qa_human_max), 0), 1)",
    "qa_auto_pct": "round(100 * sum(qa_auto_score) / nullIf(sum(qa_auto_max), 0), 1)",
}


def ratios(*names: str) -> str:
    return ", ".join(f"{RATIOS[n]} AS {n}" for n in names)


# Dashboard variables: sites, their queues, teams and agents (teams and agents as of their latest call).
VAR_SITE = "SELECT DISTINCT site_id FROM kpi_daily WHERE level = 'site' ORDER BY site_id"
VAR_QUEUE = f"SELECT DISTINCT entity_id FROM kpi_daily WHERE level = 'queue' AND {SITES} ORDER BY entity_id"
VAR_TEAM = f"SELECT DISTINCT team_id FROM agents FINAL WHERE {SITES} ORDER BY team_id"
VAR_AGENT = f"SELECT agent_id FROM agents FINAL WHERE {SITES} AND team_id IN (${{team:singlequote}}) ORDER BY agent_id"

# (1) Live operations wallboard ------------------------------------------------------------------
# Each site over the range, from the 5-minute buckets.
LIVE_SITES = f"""
SELECT site_id, sum(offered) AS calls_offered, {ratios('service_level', 'asa_s', 'abandon_rate')},
       max(max_wait_ms) / 1000 AS longest_wait_s
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 300 AND {SITES} AND $__timeFilter(window_start)
GROUP BY site_id ORDER BY site_id
"""

# Service level and abandonment per site, every 15 minutes, over the chosen queues.
LIVE_SERVICE_TREND = f"""
SELECT window_start AS time, site_id, {ratios('service_level', 'abandon_rate')}
FROM kpi_windows FINAL
WHERE level = 'queue' AND window_s = 900 AND {SITES} AND {QUEUES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# Speed of answer and the longest wait per site, every 15 minutes.
LIVE_WAIT_TREND = f"""
SELECT window_start AS time, site_id, {ratios('asa_s')}, max(max_wait_ms) / 1000 AS longest_wait_s
FROM kpi_windows FINAL
WHERE level = 'queue' AND window_s = 900 AND {SITES} AND {QUEUES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# Calls waiting at the end of the range: queued, not yet answered, abandoned or ended.
LIVE_WAITING = f"""
SELECT site_id, queue_id, count() AS waiting, max(waited_s) AS longest_wait_s
FROM (
    SELECT site_id, call_id, argMax(event_type, event_time) AS last,
           anyIf(JSONExtractString(payload, 'queue_id'), event_type = 'call.queued') AS queue_id,
           dateDiff('second', minIf(event_time, event_type = 'call.queued'), $__toTime) AS waited_s
    FROM raw_events
    WHERE event_type IN ('call.queued', 'call.answered', 'call.abandoned', 'call.ended')
      AND {SITES} AND $__timeFilter(event_time)
    GROUP BY site_id, call_id
)
WHERE last = 'call.queued' AND queue_id IN (${{queue:singlequote}})
GROUP BY site_id, queue_id ORDER BY site_id, queue_id
"""

# Each agent's latest state in the range (agent.state_changed events).
AGENT_STATES = f"""
SELECT agent_id, argMax(JSONExtractString(payload, 'state'), event_time) AS state,
       argMax(JSONExtractString(payload, 'reason'), event_time) AS reason, max(event_time) AS since
FROM raw_events
WHERE event_type = 'agent.state_changed' AND {SITES} AND {AGENTS} AND $__timeFilter(event_time)
GROUP BY agent_id ORDER BY agent_id
"""

AGENT_STATE_COUNTS = f"SELECT state, count() AS agents FROM ({AGENT_STATES}) GROUP BY state ORDER BY state"

# (2) Agent quality --------------------------------------------------------------------------------
# Human and automatic QA score (%) per day over the chosen agents.
QA_TREND = f"""
SELECT toDateTime(day) AS time, {ratios('qa_human_pct', 'qa_auto_pct')}
FROM kpi_daily FINAL
WHERE level = 'agent' AND {SITES} AND entity_id IN (${{agent:singlequote}}) AND $__dateFilter(day)
GROUP BY time ORDER BY time
"""

# Section scores (%) of human evaluations.
QA_SECTIONS = f"""
SELECT section, round(100 * sum(score / inclusion_probability) / sum(max / inclusion_probability), 1) AS pct,
       count() AS evaluations
FROM evaluations FINAL ARRAY JOIN section_ids AS section, section_scores AS score, section_max AS max
WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY section ORDER BY section
"""

# Per agent: human evaluations, score and the three categories (%).
QA_AGENTS = f"""
SELECT agent_id, count() AS evaluations,
       round(100 * sum(total / inclusion_probability) / sum(max / inclusion_probability), 1) AS qa_pct,
       round(avgWeighted(etiquette_pct, 1 / inclusion_probability), 1) AS etiquette_pct,
       round(avgWeighted(knowledge_pct, 1 / inclusion_probability), 1) AS knowledge_pct,
       round(avgWeighted(procedure_pct, 1 / inclusion_probability), 1) AS procedure_pct,
       countIf(has(coaching_tags, 'poor')) AS poor
FROM evaluations FINAL
WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY agent_id ORDER BY qa_pct
"""

# Automatic QA: how often each checked item passed.
AUTO_QA_ITEMS = f"""
SELECT item, count() AS checked, round(countIf(score >= max) / count(), 3) AS pass_rate
FROM evaluations FINAL ARRAY JOIN item_ids AS item, item_scores AS score, item_max AS max
WHERE kind = 'auto' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY item ORDER BY pass_rate
"""

# Calls tagged for coaching (outstanding, poor, failed items), newest first.
COACHING = f"""
SELECT evaluated_at AS time, agent_id, call_id, kind, pct, grade, arrayStringConcat(coaching_tags, ' ') AS tags
FROM evaluations FINAL
WHERE notEmpty(coaching_tags) AND kind != 'calibration' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
ORDER BY time DESC LIMIT 200
"""

# (3) Drift and monitoring plan ---------------------------------------------------------------------
# Control chart (X-bar) of the chosen agents' human QA scores per day: the centre line and sigma of
# single evaluations come from the first three days shown (the baseline); limits centre ± 3 sigma / sqrt(n).
QA_CONTROL_CHART = f"""
SELECT time, qa_pct, evaluations, round(centre, 1) AS centre,
       round(centre + 3 * sigma / sqrt(evaluations), 1) AS upper_limit,
       round(centre - 3 * sigma / sqrt(evaluations), 1) AS lower_limit
FROM (
    SELECT time, qa_pct, evaluations,
           sumIf(total, day_no <= 3) OVER () / sumIf(weight, day_no <= 3) OVER () AS centre,
           sqrt(sumIf(squares, day_no <= 3) OVER () / sumIf(weight, day_no <= 3) OVER () - centre * centre) AS sigma
    FROM (
        SELECT toDateTime(toDate(evaluated_at)) AS time, round(avgWeighted(pct, 1 / inclusion_probability), 1) AS qa_pct,
               count() AS evaluations, sum(pct / inclusion_probability) AS total, sum(1 / inclusion_probability) AS weight,
               sum(pct * pct / inclusion_probability) AS squares, dense_rank() OVER (ORDER BY time) AS day_no
        FROM evaluations FINAL
        WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
        GROUP BY time
    )
)
ORDER BY time
"""

# Each drift alert in the range: its latest status and the latest evidence it carried.
DRIFT_ALERTS = f"""
SELECT min(opened_at) AS opened_at, argMax(status, at) AS status, any(level) AS level, any(entity_id) AS entity_id,
       any(metric) AS metric, argMaxIf(evidence, at, evidence != '') AS latest_evidence,
       JSONExtractString(latest_evidence, 'chart') AS chart,
       round(JSONExtractFloat(latest_evidence, 'value'), 2) AS value,
       round(JSONExtractFloat(latest_evidence, 'baseline_mean'), 2) AS baseline,
       round(JSONExtractFloat(latest_evidence, 'statistic'), 2) AS statistic,
       round(JSONExtractFloat(latest_evidence, 'limit'), 2) AS limit, alert_id
FROM alerts FINAL
WHERE kind = 'drift' AND {SITES} AND $__timeFilter(at)
GROUP BY alert_id ORDER BY opened_at DESC
"""

# Moments drift was detected (dashboard annotations).
DRIFT_ANNOTATIONS = f"""
SELECT opened_at AS time, concat(level, ' ', entity_id, ': ', metric, ' drifted') AS text
FROM alerts FINAL
WHERE kind = 'drift' AND status = 'open' AND {SITES} AND $__timeFilter(opened_at)
ORDER BY time
"""

# Each agent's review rate at the end of the range, and why (the latest change).
SAMPLING_RATES_NOW = f"""
SELECT agent_id, any(team_id) AS team_id, argMax(new_rate, at) AS rate, argMax(cause, at) AS cause,
       argMax(factors, at) AS factors_changed, argMax(signal_kind, at) AS signal, argMax(reason, at) AS because,
       max(at) AS since
FROM (
    SELECT agent_id, team_id, new_rate, cause, at, signal_kind, arrayStringConcat(factors_changed, ', ') AS factors,
           splitByChar('|', JSONExtractString(evidence, 'series')) AS series,  -- level|site|entity|metric
           multiIf(length(series) = 4,
                   series[1] || ' ' || series[3] || ': ' || series[4] || ' drift (' || JSONExtractString(evidence, 'chart') || ')',
                   JSONHas(evidence, 'description'), JSONExtractString(evidence, 'description'), '') AS reason
    FROM sampling_rates FINAL
    WHERE {SITES} AND {AGENTS} AND at <= $__toTime
)
GROUP BY agent_id ORDER BY rate DESC, agent_id
"""

# Review-rate changes over the range, per agent.
SAMPLING_RATE_TREND = f"""
SELECT at AS time, agent_id, new_rate AS rate
FROM sampling_rates FINAL
WHERE {SITES} AND {AGENTS} AND $__timeFilter(at)
ORDER BY time
"""

# Calls queued for review per day, by recommended method.
REVIEW_QUEUE_DAILY = f"""
SELECT toDateTime(day) AS time, method, count() AS queued
FROM review_queue FINAL
WHERE status = 'queued' AND {SITES} AND {AGENTS} AND $__dateFilter(day)
GROUP BY time, method ORDER BY time, method
"""

# Coverage against the targets: the share of recorded calls selected (base rate) and human
# evaluations (the monthly minimum, pro rata for the range).
COVERAGE = f"""
SELECT d.agent_id AS agent_id, recorded, selected, round(selected / recorded, 4) AS selected_share,
       {PolicyConfig.base_rate} AS target_share, coalesce(e.evaluated, 0) AS evaluated,
       round({PolicyConfig.min_per_month} * dateDiff('second', $__fromTime, $__toTime) / (30 * 86400), 1) AS target_evaluations
FROM (
    SELECT agent_id, count() AS recorded, countIf(selected) AS selected
    FROM sampling_decisions FINAL
    WHERE {SITES} AND {AGENTS} AND $__timeFilter(at)
    GROUP BY agent_id
) AS d
LEFT JOIN (
    SELECT agent_id, count() AS evaluated
    FROM evaluations FINAL
    WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
    GROUP BY agent_id
) AS e ON d.agent_id = e.agent_id
ORDER BY selected_share, agent_id
"""

# (4) Calibration ----------------------------------------------------------------------------------
# Calibration scores against each call's mean (the reference when no expert is named).
_CALIBRATED = f"""
    SELECT evaluator_id, call_id, evaluated_at, pct, pct - avg(pct) OVER (PARTITION BY call_id) AS deviation
    FROM evaluations FINAL
    WHERE kind = 'calibration' AND {SITES} AND $__timeFilter(evaluated_at)
"""

CALIBRATION_EVALUATORS = f"""
SELECT evaluator_id, count() AS calls, round(avg(deviation), 1) AS mean_deviation,
       round(avg(abs(deviation)), 1) AS mean_abs_deviation, countIf(abs(deviation) > {DEFAULT_THRESHOLD_PCT}) AS flagged
FROM ({_CALIBRATED})
GROUP BY evaluator_id ORDER BY mean_abs_deviation DESC, evaluator_id
"""

CALIBRATION_TREND = f"""
SELECT toDateTime(toStartOfWeek(evaluated_at, 1)) AS time, evaluator_id, round(avg(deviation), 1) AS mean_deviation
FROM ({_CALIBRATED})
GROUP BY time, evaluator_id ORDER BY time, evaluator_id
"""

# Per form item: how often all evaluators of a calibration call gave the same score.
CALIBRATION_ITEMS = f"""
SELECT item, count() AS calls, round(countIf(spread = 0) / count(), 2) AS full_agreement,
       round(avg(spread), 2) AS mean_spread
FROM (
    SELECT call_id, item, max(score) - min(score) AS spread
    FROM evaluations FINAL ARRAY JOIN item_ids AS item, item_scores AS score
    WHERE kind = 'calibration' AND {SITES} AND $__timeFilter(evaluated_at)
    GROUP BY call_id, item
)
GROUP BY item ORDER BY full_agreement, item
"""

# (5) Site comparison -------------------------------------------------------------------------------
SITE_COMPARISON = f"""
SELECT site_id, sum(offered) AS calls_offered, sum(handled) AS calls_handled,
       {ratios('service_level', 'asa_s', 'abandon_rate', 'aht_s', 'transfer_rate', 'fcr_rate', 'occupancy',
               'qa_human_pct', 'qa_auto_pct')}
FROM kpi_daily FINAL
WHERE level = 'site' AND {SITES} AND $__dateFilter(day)
GROUP BY site_id ORDER BY site_id
"""


def site_daily(metric: str) -> str:
    """One KPI per site and day (a time series per site)."""
    return f"""
SELECT toDateTime(day) AS time, site_id, {RATIOS[metric]} AS {metric}
FROM kpi_daily FINAL
WHERE level = 'site' AND {SITES} AND $__dateFilter(day)
GROUP BY time, site_id ORDER BY time, site_id
"""


# Months the range touches, from the month rollup.
SITE_MONTHLY = f"""
SELECT toString(day) AS month, site_id, sum(offered) AS calls_offered,
       {ratios('service_level', 'aht_s', 'qa_human_pct', 'qa_auto_pct')}
FROM kpi_monthly FINAL
WHERE level = 'site' AND {SITES} AND day >= toStartOfMonth(toDate($__fromTime)) AND day <= toDate($__toTime)
GROUP BY month, site_id ORDER BY month, site_id
"""

# Alert rules (Grafana alerting; labels from the string columns, the value from the number).
# A service KPI per site and queue in the latest complete 15-minute window of the range.


def kpi_alert(metric: str) -> str:
    rule = next(r for r in RULES if r.metric == metric)
    return f"""
SELECT level, site_id, entity_id, argMax({metric}, window_start) AS {metric}
FROM kpi_windows FINAL
WHERE level IN ('site', 'queue') AND window_s = {rule.window_s} AND offered >= {rule.min_offered}
  AND $__timeFilter(window_end) AND window_end <= $__toTime
GROUP BY level, site_id, entity_id
"""


# Quality incidents still open (not closed or merged): what the alert rule notifies on. Labelled by the
# incident and the scope it opened on, so a change of scope does not notify again (Grafana keys an alert
# instance by its labels).
OPEN_INCIDENTS = """
SELECT level, site_id, entity_id, metric, alert_id, toFloat64(1) AS open_incidents
FROM (
    SELECT alert_id, argMax(status, at) AS status, argMin(level, at) AS level, any(site_id) AS site_id,
           argMin(entity_id, at) AS entity_id, argMin(metric, at) AS metric
    FROM alerts FINAL
    WHERE kind = 'incident' AND at <= $__toTime
    GROUP BY alert_id
)
WHERE status NOT IN ('closed', 'merged')
ORDER BY alert_id
"""

# Report (callqa report / demo) ----------------------------------------------------------------------
# Service level and speed of answer per site and hour.
SITE_HOURLY_TREND = f"""
SELECT window_start AS time, site_id, {ratios('service_level', 'asa_s')}
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 3600 AND {SITES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# Alerts opened in the range, by kind and metric.
ALERTS_OPENED = f"""
SELECT kind, metric, count() AS opened
FROM alerts FINAL
WHERE status = 'open' AND {SITES} AND $__timeFilter(at)
GROUP BY kind, metric ORDER BY kind, opened DESC, metric
"""

# Drift alarms and incidents as they opened or changed scope, with their evidence (matched against
# injected drifts by the demo).
DRIFTS_OPENED = f"""
SELECT alert_id, kind, status, level, entity_id, metric, concat(replaceOne(toString(at), ' ', 'T'), 'Z') AS opened,
       evidence
FROM alerts FINAL
WHERE kind IN ('drift', 'incident') AND status IN ('open', 'widened', 'narrowed') AND {SITES} AND $__timeFilter(at)
ORDER BY at
"""

# (6) Pipeline health: what the store itself says of the pipeline (the dashboard works without Prometheus).
# The tables the sink writes, each with ``ingested_at`` (when the row was stored).
PIPELINE_TABLES = ("raw_events", "call_records", "kpi_windows", "evaluations", "alerts", "sampling_rates",
                   "sampling_decisions", "review_queue", "dead_letters")

# A dead letter's kind of reason, as ``callqa.metrics.reason_kind`` labels ``callqa_dead_letters_total``.
DEAD_LETTER_KIND = """multiIf(
    startsWith(reason, 'late event'), 'late event', startsWith(reason, 'not valid JSON'), 'not valid JSON',
    startsWith(reason, 'unknown event_type'), 'unknown event_type',
    startsWith(reason, 'event must be a JSON object'), 'event must be a JSON object',
    startsWith(reason, 'event of ') AND position(reason, 'CALLQA_MAX_EVENT_BYTES') > 0, 'too large',
    countSubstrings(splitByChar(':', reason)[1], '.') = 1 AND position(splitByChar(':', reason)[1], ' ') = 0, 'schema',
    startsWith(reason, 'embedded ClickHouse') OR startsWith(reason, 'ClickHouse server'), 'store',
    'source')"""

_UNION = "\n    UNION ALL "

# Dead letters per interval by kind of reason, when callqa received them.
DEAD_LETTERS_BY_REASON = f"""
SELECT $__timeInterval(received_at) AS time, {DEAD_LETTER_KIND} AS reason_kind, count() AS dead_letters
FROM dead_letters FINAL
WHERE $__timeFilter(received_at)
GROUP BY time, reason_kind ORDER BY time, reason_kind
"""

# Rows stored per table and interval (every stored version of a row: what the sink wrote).
ROWS_STORED = f"""
SELECT time, table, rows
FROM ({_UNION.join(f"SELECT $__timeInterval(ingested_at) AS time, '{t}' AS table, count() AS rows "
                          f"FROM {t} WHERE $__timeFilter(ingested_at) GROUP BY time" for t in PIPELINE_TABLES)})
ORDER BY time, table
"""

# Per table: rows stored in the range, the last time a row was stored by the range's end, and how long
# before the range's end that was (empty when the table has none).
TABLE_FRESHNESS = f"""
SELECT table, rows_in_range, last_stored, dateDiff('second', last_stored, $__toTime) AS seconds_since_last
FROM ({_UNION.join(f"SELECT '{t}' AS table, countIf($__timeFilter(ingested_at)) AS rows_in_range, "
                          f"nullIf(maxIf(ingested_at, ingested_at <= $__toTime), toDateTime(0)) AS last_stored "
                          f"FROM {t}" for t in PIPELINE_TABLES)})
ORDER BY table
"""

# Calls queued for review in the week to the range's end (queue days), neither dropped since nor
# evaluated by a person: what the worker's ``callqa_review_queue`` gauge counts, from the store.
REVIEW_BACKLOG = f"""
SELECT count() AS review_backlog
FROM review_queue FINAL
WHERE status = 'queued' AND day > toDate($__toTime) - {REVIEW_DAYS} AND day <= toDate($__toTime)
  AND call_id NOT IN (SELECT call_id FROM evaluations WHERE kind != 'auto' AND call_id != '')
"""

# Quality incidents open at the range's end (not closed or merged), per the scope level they are at now
# (their latest row's): what the workers' ``callqa_open_incidents`` gauge counts, from the store.
OPEN_INCIDENTS_BY_LEVEL = """
SELECT level, count() AS open_incidents
FROM (
    SELECT alert_id, argMax(status, at) AS status, argMax(level, at) AS level
    FROM alerts FINAL
    WHERE kind = 'incident' AND at <= $__toTime
    GROUP BY alert_id
)
WHERE status NOT IN ('closed', 'merged')
GROUP BY level ORDER BY level
"""
