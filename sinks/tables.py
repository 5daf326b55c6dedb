"""Names of the tables the pipeline writes (created by the migrations), and the raw-event row."""
from __future__ import annotations

CALL_RECORDS = "call_records"
KPI_WINDOWS = "kpi_windows"
DEAD_LETTERS = "dead_letters"
EVALUATIONS = "evaluations"
ALERTS = "alerts"
SAMPLING_RATES = "sampling_rates"
SAMPLING_DECISIONS = "sampling_decisions"
REVIEW_QUEUE = "review_queue"
RAW_EVENTS = "raw_events"


def raw_event(event: dict, payload: bytes | str) -> dict:
    """The ``raw_events`` row of a valid event: its envelope, call and agent, and the payload as received."""
    return {"event_id": event["event_id"], "event_type": event["event_type"], "site_id": event["site_id"],
            "source": event["source"], "event_time": event["event_time"], "call_id": event.get("call_id") or "",
            "agent_id": event.get("agent_id") or "",
            "payload": payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload}
