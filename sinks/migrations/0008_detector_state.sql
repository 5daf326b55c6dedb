-- The drift charts' state (callqa.core.monitor.state_row): per series and hour with steps, the steps' mean
-- value and mean expected value on the metric's scale, the CUSUM's highest statistic in the hour and its
-- decision limit, and the hour's value that would have reached the limit. Charts of an incident read
-- these rows instead of recomputing limits. One row per series and hour: the latest (most steps) wins,
-- so replays land on the same rows.
CREATE TABLE IF NOT EXISTS detector_state
(
    series          String,
    level           LowCardinality(String),
    site_id         LowCardinality(String),
    entity_id       LowCardinality(String),
    metric          LowCardinality(String),
    time            DateTime64(3, 'UTC'),
    last_at         DateTime64(3, 'UTC'),
    steps           UInt32,
    observations    UInt32,
    value           Float64,
    expected        Float64,
    alarm_value     Nullable(Float64),
    start_statistic Float64,
    statistic       Float64,
    decision_limit  Float64,
    ready           Bool,
    in_alarm        Bool,
    version         UInt32,
    ingested_at     DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(time)
ORDER BY (site_id, series, time);
