-- Call records: one row per call; a later version (more events applied) replaces an earlier one.
-- segment_* arrays: one element per answering agent (a transfer closes a segment), in time order.
CREATE TABLE IF NOT EXISTS call_records
(
    call_id             String,
    site_id             LowCardinality(String),
    queue_id            LowCardinality(String),
    agent_id            LowCardinality(String),
    team_id             LowCardinality(String),
    caller_hash         String,
    direction           LowCardinality(String),
    call_type           LowCardinality(String),
    arrived_at          DateTime64(3, 'UTC'),
    answered_at         Nullable(DateTime64(3, 'UTC')),
    ended_at            DateTime64(3, 'UTC'),
    outcome             LowCardinality(String),
    abandon_stage       LowCardinality(String),
    wait_ms             UInt32,
    talk_ms             UInt32,
    hold_ms             UInt32,
    hold_count          UInt16,
    acw_ms              UInt32,
    transfer_count      UInt16,
    disposition         String,
    resolved            Nullable(Bool),
    segment_agent_ids   Array(String),
    segment_answered_ms Array(Int64),
    segment_talk_ms     Array(UInt32),
    segment_hold_ms     Array(UInt32),
    segment_acw_ms      Array(UInt32),
    segment_transferred Array(UInt8),
    version             UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(arrived_at)
ORDER BY (site_id, call_id);

-- KPI windows per level (site, queue, team, agent) and window size: sums, and the ratios derived
-- from them (formulas in README.md). The highest version of a window wins.
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
    short_abandoned  UInt32,
    unanswered_other UInt32,
    incomplete       UInt32,
    sl_numerator     UInt32,
    sl_denominator   UInt32,
    wait_answered_ms UInt64,
    max_wait_ms      UInt64,
    handled          UInt32,
    talk_ms          UInt64,
    hold_ms          UInt64,
    hold_count       UInt32,
    acw_ms           UInt64,
    transferred      UInt32,
    fcr_eligible     UInt32,
    fcr_resolved     UInt32,
    logged_in_ms     UInt64,
    not_ready_ms     UInt64,
    service_level    Nullable(Float64),
    asa_s            Nullable(Float64),
    abandon_rate     Nullable(Float64),
    aht_s            Nullable(Float64),
    avg_talk_s       Nullable(Float64),
    avg_hold_s       Nullable(Float64),
    avg_acw_s        Nullable(Float64),
    transfer_rate    Nullable(Float64),
    fcr_rate         Nullable(Float64),
    occupancy        Nullable(Float64),
    not_ready_ratio  Nullable(Float64),
    longest_wait_s   Float64,
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
