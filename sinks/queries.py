"""Named read queries: the one place each query lives (CLI, tests and later dashboards use these)."""

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
