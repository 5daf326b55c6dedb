-- Scored evaluations (human, auto, test_call, calibration): one row per evaluation id, newest version wins.
CREATE TABLE IF NOT EXISTS evaluations
(
    evaluation_id  String,
    kind           LowCardinality(String),
    call_id        String,
    agent_id       LowCardinality(String),
    team_id        LowCardinality(String),
    site_id        LowCardinality(String),
    evaluator_id   LowCardinality(String),
    form_id        LowCardinality(String),
    form_version   LowCardinality(String),
    evaluated_at   DateTime64(3, 'UTC'),
    total          Float64,
    max            Float64,
    pct            Float64,
    grade          LowCardinality(String),
    etiquette_pct  Nullable(Float64),
    knowledge_pct  Nullable(Float64),
    procedure_pct  Nullable(Float64),
    section_ids    Array(String),
    section_scores Array(Float64),
    section_max    Array(Float64),
    item_ids       Array(String),
    item_scores    Array(Float64),
    item_max       Array(Float64),
    coaching_tags  Array(String),
    comment        String,
    interruptions  Nullable(UInt16),
    silence_ratio  Nullable(Float64),
    agent_talk_ratio Nullable(Float64),
    version        UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (site_id, evaluation_id);

-- QA counters per window: kinds kept apart, never mixed.
ALTER TABLE kpi_windows
    ADD COLUMN IF NOT EXISTS qa_human_n Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_human_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_human_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_auto_n Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_auto_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_auto_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_test_call_n Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_test_call_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_test_call_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_etiquette_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_etiquette_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_knowledge_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_knowledge_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_procedure_score Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_procedure_max Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qa_human_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS qa_auto_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS qa_test_call_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS qa_etiquette_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS qa_knowledge_pct Nullable(Float64),
    ADD COLUMN IF NOT EXISTS qa_procedure_pct Nullable(Float64);
