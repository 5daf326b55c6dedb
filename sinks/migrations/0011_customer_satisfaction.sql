-- Customer satisfaction (post-call surveys, callqa.core.surveys): CSAT, NPS and customer-reported
-- resolution counters per KPI window and in the day and month rollups, and the surveys themselves, one row
-- per survey, so that evaluations and surveys can be joined per call (sinks/queries.py: CSAT_ITEMS).
ALTER TABLE kpi_windows
    ADD COLUMN IF NOT EXISTS csat_responses UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_sum UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_satisfied UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_responses UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_promoters UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_detractors UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved_responses UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved UInt32 DEFAULT 0;
ALTER TABLE kpi_windows
    ADD COLUMN IF NOT EXISTS csat_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS csat_avg Nullable(Float64),
    ADD COLUMN IF NOT EXISTS nps Nullable(Float64),
    ADD COLUMN IF NOT EXISTS survey_resolved_rate Nullable(Float64);
ALTER TABLE kpi_daily
    ADD COLUMN IF NOT EXISTS csat_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_sum UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_satisfied UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_promoters UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_detractors UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved UInt64 DEFAULT 0;
ALTER TABLE kpi_monthly
    ADD COLUMN IF NOT EXISTS csat_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_sum UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS csat_satisfied UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_promoters UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS nps_detractors UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved_responses UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS survey_resolved UInt64 DEFAULT 0;

-- The rollups with the survey counters: 0009's views (by local day) and the eight sums (a refreshable
-- view's query cannot be altered: dropped and made anew; the rollup tables keep their rows).
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
       sum(csat_responses) AS csat_responses, sum(csat_sum) AS csat_sum, sum(csat_satisfied) AS csat_satisfied,
       sum(nps_responses) AS nps_responses, sum(nps_promoters) AS nps_promoters, sum(nps_detractors) AS nps_detractors,
       sum(survey_resolved_responses) AS survey_resolved_responses, sum(survey_resolved) AS survey_resolved,
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
       sum(csat_responses) AS csat_responses, sum(csat_sum) AS csat_sum, sum(csat_satisfied) AS csat_satisfied,
       sum(nps_responses) AS nps_responses, sum(nps_promoters) AS nps_promoters, sum(nps_detractors) AS nps_detractors,
       sum(survey_resolved_responses) AS survey_resolved_responses, sum(survey_resolved) AS survey_resolved,
       now64(6) AS refreshed_at, now() AS ingested_at
FROM kpi_daily FINAL
WHERE (level, site_id, entity_id, toStartOfMonth(day)) IN (
      SELECT level, site_id, entity_id, toStartOfMonth(day) FROM kpi_daily
      WHERE ingested_at >= now() - INTERVAL 1 DAY)
GROUP BY level, site_id, entity_id, day;

-- Every survey as received (from raw_events, which holds every valid input event on both runners): the
-- newest answer of a survey id wins.
CREATE TABLE IF NOT EXISTS surveys
(
    survey_id   String,
    call_id     String,
    site_id     LowCardinality(String),
    agent_id    LowCardinality(String),
    queue_id    LowCardinality(String),
    answered_at DateTime64(3, 'UTC'),
    csat        UInt8,
    nps         Nullable(UInt8),
    resolved    Nullable(Bool),
    channel     LowCardinality(String),
    source      LowCardinality(String),
    event_id    String,
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(answered_at)
PARTITION BY toYYYYMM(answered_at)
ORDER BY (site_id, survey_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS surveys_from_events TO surveys AS
SELECT JSONExtractString(payload, 'survey_id') AS survey_id, call_id, site_id, agent_id,
       JSONExtractString(payload, 'queue_id') AS queue_id, event_time AS answered_at,
       toUInt8(JSONExtractFloat(payload, 'csat')) AS csat,
       if(JSONType(payload, 'nps') IN ('Int64', 'UInt64', 'Double'), toNullable(toUInt8(JSONExtractFloat(payload, 'nps'))), NULL) AS nps,
       if(JSONType(payload, 'resolved') = 'Bool', toNullable(JSONExtractBool(payload, 'resolved') = 1), NULL) AS resolved,
       JSONExtractString(payload, 'channel') AS channel, source, event_id
FROM raw_events
WHERE event_type = 'survey.completed';
