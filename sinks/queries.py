"""Named read queries: the one place each query lives (CLI, tests and later dashboards use these)."""

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

DEAD_LETTER_COUNT = "SELECT count() AS dead_letters FROM dead_letters FINAL"
