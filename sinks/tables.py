"""Names of the tables the pipeline writes (created by the migrations)."""
from __future__ import annotations

CALL_RECORDS = "call_records"
KPI_WINDOWS = "kpi_windows"
DEAD_LETTERS = "dead_letters"
EVALUATIONS = "evaluations"
ALERTS = "alerts"
SAMPLING_RATES = "sampling_rates"
SAMPLING_DECISIONS = "sampling_decisions"
REVIEW_QUEUE = "review_queue"
DETECTOR_STATE = "detector_state"
RAW_EVENTS = "raw_events"
