"""Names of the tables the pipeline writes (created by the migrations), and the raw-event row."""
from __future__ import annotations

from callqa.core.dead_letters import raw_event  # noqa: F401  (the row shape lives in the core)

CALL_RECORDS = "call_records"
KPI_WINDOWS = "kpi_windows"
DEAD_LETTERS = "dead_letters"
EVALUATIONS = "evaluations"
ALERTS = "alerts"
SAMPLING_RATES = "sampling_rates"
SAMPLING_DECISIONS = "sampling_decisions"
REVIEW_QUEUE = "review_queue"
RAW_EVENTS = "raw_events"


