"""Rows of input as received: dead letters (rejected input with the reason and the raw payload,
nothing lost) and raw events (every valid event as it came)."""
from __future__ import annotations

import time

from schemas import format_ms

EXPIRY = "expiry"  # the origin of a call's dead letter when it expired (no end, or never reached the ACD); position: its id


def dead_letter(reason: str, payload: bytes | str, origin: str, position: str) -> dict:
    """One dead-letter row; ``origin``/``position`` say where the input came from (topic/partition, offset or file, line)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="backslashreplace")
    return {"received_at": format_ms(int(time.time() * 1000)), "origin": origin, "position": position,
            "reason": reason, "payload": payload}


def raw_event(event: dict, payload: bytes | str) -> dict:
    """The ``raw_events`` row of a valid event: its envelope, call and agent, and the payload as received."""
    return {"event_id": event["event_id"], "event_type": event["event_type"], "site_id": event["site_id"],
            "source": event["source"], "event_time": event["event_time"], "call_id": event.get("call_id") or "",
            "agent_id": event.get("agent_id") or "",
            "payload": payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload}
