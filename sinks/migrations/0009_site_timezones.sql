-- Local time per site (CALLQA_SITE_TIMEZONES). The store keeps UTC instants; each KPI window also
-- carries its site's local date (of the window's start), and the day rollup groups by it, so a site's
-- day (and month) is its local one. Windows stored before this have their UTC date.
ALTER TABLE kpi_windows ADD COLUMN IF NOT EXISTS local_day Date DEFAULT toDate(window_start) AFTER window_end;

-- The rollups again, by local day (a refreshable view's query cannot be altered: dropped and made anew;
-- the rollup tables keep their rows).
DROP VIEW IF EXISTS kpi_monthly_refresh;
DROP VIEW IF EXISTS kpi_daily_refresh;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_daily_refresh
REFRESH EVERY 10 MINUTE APPEND TO kpi_daily AS
SELECT level, site_id, entity_id, local_day AS day, toUInt16(count()) AS hours,
       sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned,
       sum(short_abandoned) AS short_abandoned, sum(sl_numerator) AS sl_numerator,
       sum(sl_denominator) AS sl_denominator, sum(wait_answered_ms) AS wait_answered_ms,
       max(max_wait_ms) AS max_wait_ms, sum(handled) AS handled, sum(talk_ms) AS talk_ms,
       sum(hold_ms) AS hold_ms, sum(hold_count) AS hold_count, sum(acw_ms) AS acw_ms,
       sum(transferred) AS transferred, sum(fcr_eligible) AS fcr_eligible, sum(fcr_resolved) AS fcr_resolved,
       sum(logged_in_ms) AS logged_in_ms, sum(not_ready_ms) AS not_ready_ms,
       sum(qa_human_n) AS qa_human_n, sum(qa_human_score) AS qa_human_score, sum(qa_human_max) AS qa_human_max,
       sum(qa_auto_n) AS qa_auto_n, sum(qa_auto_score) AS qa_auto_score, sum(qa_auto_max) AS qa_auto_max,
       sum(qa_test_call_n) AS qa_test_call_n, sum(qa_test_call_score) AS qa_test_call_score,
       sum(qa_test_call_max) AS qa_test_call_max,
       sum(qa_etiquette_score) AS qa_etiquette_score, sum(qa_etiquette_max) AS qa_etiquette_max,
       sum(qa_knowledge_score) AS qa_knowledge_score, sum(qa_knowledge_max) AS qa_knowledge_max,
       sum(qa_procedure_score) AS qa_procedure_score, sum(qa_procedure_max) AS qa_procedure_max,
       now64(6) AS refreshed_at, now() AS ingested_at
FROM kpi_windows FINAL
WHERE window_s = 3600
  AND (level, site_id, entity_id, local_day) IN (
      SELECT level, site_id, entity_id, local_day FROM kpi_windows
      WHERE window_s = 3600 AND ingested_at >= now() - INTERVAL 1 DAY)
GROUP BY level, site_id, entity_id, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_monthly_refresh
REFRESH EVERY 10 MINUTE DEPENDS ON kpi_daily_refresh APPEND TO kpi_monthly AS
SELECT level, site_id, entity_id, toStartOfMonth(day) AS day, sum(hours) AS hours,
       sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned,
       sum(short_abandoned) AS short_abandoned, sum(sl_numerator) AS sl_numerator,
       sum(sl_denominator) AS sl_denominator, sum(wait_answered_ms) AS wait_answered_ms,
       max(max_wait_ms) AS max_wait_ms, sum(handled) AS handled, sum(talk_ms) AS talk_ms,
       sum(hold_ms) AS hold_ms, sum(hold_count) AS hold_count, sum(acw_ms) AS acw_ms,
       sum(transferred) AS transferred, sum(fcr_eligible) AS fcr_eligible, sum(fcr_resolved) AS fcr_resolved,
       sum(logged_in_ms) AS logged_in_ms, sum(not_ready_ms) AS not_ready_ms,
       sum(qa_human_n) AS qa_human_n, sum(qa_human_score) AS qa_human_score, sum(qa_human_max) AS qa_human_max,
       sum(qa_auto_n) AS qa_auto_n, sum(qa_auto_score) AS qa_auto_score, sum(qa_auto_max) AS qa_auto_max,
       sum(qa_test_call_n) AS qa_test_call_n, sum(qa_test_call_score) AS qa_test_call_score,
       sum(qa_test_call_max) AS qa_test_call_max,
       sum(qa_etiquette_score) AS qa_etiquette_score, sum(qa_etiquette_max) AS qa_etiquette_max,
       sum(qa_knowledge_score) AS qa_knowledge_score, sum(qa_knowledge_max) AS qa_knowledge_max,
       sum(qa_procedure_score) AS qa_procedure_score, sum(qa_procedure_max) AS qa_procedure_max,
       now64(6) AS refreshed_at, now() AS ingested_at
FROM kpi_daily FINAL
WHERE (level, site_id, entity_id, toStartOfMonth(day)) IN (
      SELECT level, site_id, entity_id, toStartOfMonth(day) FROM kpi_daily
      WHERE ingested_at >= now() - INTERVAL 1 DAY)
GROUP BY level, site_id, entity_id, day;
