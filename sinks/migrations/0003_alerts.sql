-- Alert events: each alert's lifecycle (open, update, cleared) with its evidence; replays land on the same rows.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id  String,
    status    LowCardinality(String),
    at        DateTime64(3, 'UTC'),
    opened_at DateTime64(3, 'UTC'),
    level     LowCardinality(String),
    site_id   LowCardinality(String),
    entity_id LowCardinality(String),
    metric    LowCardinality(String),
    severity  Nullable(String),
    signals   UInt32,
    evidence  String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, alert_id, at, status);
