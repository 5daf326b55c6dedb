-- Call records: one row per call; a later version (more events applied) replaces an earlier one.
CREATE TABLE IF NOT EXISTS call_records
(
    call_id        String,
    site_id        LowCardinality(String),
    queue_id       LowCardinality(String),
    agent_id       LowCardinality(String),
    caller_hash    String,
    direction      LowCardinality(String),
    call_type      LowCardinality(String),
    arrived_at     DateTime64(3, 'UTC'),
    answered_at    Nullable(DateTime64(3, 'UTC')),
    ended_at       DateTime64(3, 'UTC'),
    wrapup_ended_at Nullable(DateTime64(3, 'UTC')),
    outcome        LowCardinality(String),
    abandon_stage  LowCardinality(String),
    wait_ms        UInt32,
    talk_ms        UInt32,
    hold_ms        UInt32,
    hold_count     UInt16,
    transfer_count UInt16,
    disposition    String,
    resolved       Nullable(Bool),
    version        UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(arrived_at)
ORDER BY (site_id, call_id);

-- KPI windows per level (site, queue, ...) and window size; the highest version of a window wins.
CREATE TABLE IF NOT EXISTS kpi_windows
(
    level            LowCardinality(String),
    site_id          LowCardinality(String),
    entity_id        LowCardinality(String),
    window_s         UInt32,
    window_start     DateTime64(3, 'UTC'),
    window_end       DateTime64(3, 'UTC'),
    offered          UInt32,
    answered         UInt32,
    abandoned        UInt32,
    wait_answered_ms UInt64,
    asa_s            Nullable(Float64),
    abandon_rate     Nullable(Float64),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (level, site_id, entity_id, window_s, window_start);

-- Rejected input, with the reason and the raw payload; one row per origin position.
CREATE TABLE IF NOT EXISTS dead_letters
(
    received_at DateTime64(3, 'UTC'),
    origin      String,
    position    String,
    reason      String,
    payload     String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (origin, position);
