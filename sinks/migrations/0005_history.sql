-- History: raw events, the agents dimension, day and month rollups, and the ingestion time that
-- retention counts from (TTLs are set by sinks/retention.py from CALLQA_RETENTION_*_DAYS).

-- Every valid input event as it arrived (callers already hashed at the edge); a replay lands on the same row.
CREATE TABLE IF NOT EXISTS raw_events
(
    event_id    String,
    event_type  LowCardinality(String),
    site_id     LowCardinality(String),
    source      LowCardinality(String),
    event_time  DateTime64(3, 'UTC'),
    call_id     String,
    agent_id    LowCardinality(String),
    payload     String CODEC(ZSTD(3)),
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (site_id, event_type, event_id);

ALTER TABLE call_records ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE kpi_windows ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE sampling_rates ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE sampling_decisions ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();
ALTER TABLE review_queue ADD COLUMN IF NOT EXISTS ingested_at DateTime DEFAULT now();

-- Who works where: each agent's site and team as of their latest call (dashboard variables).
CREATE TABLE IF NOT EXISTS agents
(
    agent_id     String,
    site_id      LowCardinality(String),
    team_id      LowCardinality(String),
    last_call_at DateTime64(3, 'UTC'),
    ingested_at  DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(last_call_at)
ORDER BY agent_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS agents_from_calls TO agents AS
SELECT agent_id, site_id, team_id, ended_at AS last_call_at
FROM call_records
WHERE agent_id != '';

-- Day rollup of the hourly KPI windows (sums; ratios are derived in queries), kept for years.
CREATE TABLE IF NOT EXISTS kpi_daily
(
    level              LowCardinality(String),
    site_id            LowCardinality(String),
    entity_id          LowCardinality(String),
    day                Date,
    hours              UInt16,
    offered            UInt64,
    answered           UInt64,
    abandoned          UInt64,
    short_abandoned    UInt64,
    sl_numerator       UInt64,
    sl_denominator     UInt64,
    wait_answered_ms   UInt64,
    max_wait_ms        UInt64,
    handled            UInt64,
    talk_ms            UInt64,
    hold_ms            UInt64,
    hold_count         UInt64,
    acw_ms             UInt64,
    transferred        UInt64,
    fcr_eligible       UInt64,
    fcr_resolved       UInt64,
    logged_in_ms       UInt64,
    not_ready_ms       UInt64,
    qa_human_n         Float64,
    qa_human_score     Float64,
    qa_human_max       Float64,
    qa_auto_n          Float64,
    qa_auto_score      Float64,
    qa_auto_max        Float64,
    qa_test_call_n     Float64,
    qa_test_call_score Float64,
    qa_test_call_max   Float64,
    qa_etiquette_score Float64,
    qa_etiquette_max   Float64,
    qa_knowledge_score Float64,
    qa_knowledge_max   Float64,
    qa_procedure_score Float64,
    qa_procedure_max   Float64,
    refreshed_at       DateTime64(6, 'UTC'),
    ingested_at        DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (level, site_id, entity_id, day);

-- Month rollup of the day rollup.
CREATE TABLE IF NOT EXISTS kpi_monthly AS kpi_daily
ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYear(day)
ORDER BY (level, site_id, entity_id, day);

-- The rollups are refreshable views: each run recomputes, from the deduplicated source (FINAL), the
-- days (months) whose rows arrived in the last day, and appends them; the newest refresh wins. So a
-- replayed or corrected window never counts twice, and history outlives the shorter-lived source.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_daily_refresh
REFRESH EVERY 10 MINUTE APPEND TO kpi_daily AS
SELECT level, site_id, entity_id, toDate(window_start) AS day, toUInt16(count()) AS hours,
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
  AND (level, site_id, entity_id, toDate(window_start)) IN (
      SELECT level, site_id, entity_id, toDate(window_start) FROM kpi_windows
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
