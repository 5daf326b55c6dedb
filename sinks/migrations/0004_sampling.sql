-- Alerts of both kinds: quality drift (control charts) and KPI thresholds.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'drift' AFTER alert_id;

-- Every change of an agent's review rate, with what caused it and the signal's evidence (audit trail).
CREATE TABLE IF NOT EXISTS sampling_rates
(
    change_id       String,
    agent_id        LowCardinality(String),
    site_id         LowCardinality(String),
    team_id         LowCardinality(String),
    at              DateTime64(3, 'UTC'),
    old_rate        Float64,
    new_rate        Float64,
    cause           LowCardinality(String),
    factors_changed Array(String),
    signal_id       String,
    signal_kind     LowCardinality(String),
    factors         String,
    evidence        String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, agent_id, change_id);

-- One decision per recorded call (select or skip, with the reason); a displaced selection is revised (version 2),
-- and a kept one whose chance a full day lowered (version 3: probability × the capacity factor).
CREATE TABLE IF NOT EXISTS sampling_decisions
(
    call_id      String,
    recording_id String,
    agent_id     LowCardinality(String),
    site_id      LowCardinality(String),
    team_id      LowCardinality(String),
    queue_id     LowCardinality(String),
    at           DateTime64(3, 'UTC'),
    selected     Bool,
    reason       String,
    probability  Float64,
    agent_rate   Float64,
    risk         Float64,
    cell         LowCardinality(String),
    factors      Map(String, Float64),
    method       LowCardinality(String),
    version      UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, agent_id, call_id);

-- Calls selected for review (status queued, or dropped when a call of lower priority took the capacity).
CREATE TABLE IF NOT EXISTS review_queue
(
    call_id      String,
    recording_id String,
    storage_uri  String,
    agent_id     LowCardinality(String),
    site_id      LowCardinality(String),
    team_id      LowCardinality(String),
    day          Date,
    at           DateTime64(3, 'UTC'),
    method       LowCardinality(String),
    reason       String,
    risk         Float64,
    status       LowCardinality(String),
    version      UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, site_id, call_id);
