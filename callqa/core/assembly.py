"""Fold call events into per-call state and assemble call records.

A call's state is a plain JSON-able dict (it travels through faust changelogs). A record is
emitted when the call is complete (answered and ended, or abandoned) and again whenever a later
event changes it; ``version`` (events applied) makes the newest record win downstream.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field

from schemas import format_ms, time_ms

from . import kpi


@dataclass
class Update:
    """What one event changed: the record to (re)write, if complete, and the KPI deltas."""

    record: dict | None = None
    deltas: list[tuple[str, dict]] = field(default_factory=list)


def _new_state(call_id: str, site_id: str) -> dict:
    return {
        "call_id": call_id, "site_id": site_id, "queue_id": None, "agent_id": None, "caller_hash": None,
        "direction": "inbound", "call_type": None,
        "offered_ms": None, "queued_ms": None, "answered_ms": None, "ended_ms": None, "abandoned_ms": None,
        "abandon_stage": None, "abandon_reason": None, "holds": [], "transfer_count": 0,
        "wrapup_ms": None, "disposition": None, "resolved": None, "version": 0, "seen": [], "contrib": {},
    }


def _earliest(current: int | None, t: int) -> int:
    return t if current is None or t < current else current


def _fold(s: dict, e: dict, t: int) -> None:
    kind = e["event_type"]
    if kind == "call.offered":
        s["offered_ms"] = _earliest(s["offered_ms"], t)
        s["queue_id"] = s["queue_id"] or e.get("queue_id")
        s["caller_hash"] = e.get("caller_hash") or s["caller_hash"]
        s["direction"] = e.get("direction", s["direction"])
        s["call_type"] = e.get("call_type") or s["call_type"]
    elif kind == "call.queued":
        s["queued_ms"] = _earliest(s["queued_ms"], t)
        s["queue_id"] = s["queue_id"] or e["queue_id"]
    elif kind == "call.answered":
        s["answered_ms"] = _earliest(s["answered_ms"], t)
        s["agent_id"] = s["agent_id"] or e["agent_id"]
        s["queue_id"] = s["queue_id"] or e.get("queue_id")
    elif kind in ("call.held", "call.resumed"):
        s["holds"].append([t, kind == "call.held"])
    elif kind == "call.transferred":
        s["transfer_count"] += 1
    elif kind == "call.abandoned":
        s["abandoned_ms"] = _earliest(s["abandoned_ms"], t)
        s["abandon_stage"] = e["stage"]
        s["abandon_reason"] = e.get("reason", "caller_hangup")
        s["queue_id"] = s["queue_id"] or e.get("queue_id")
    elif kind == "call.ended":
        s["ended_ms"] = _earliest(s["ended_ms"], t)
    elif kind == "call.wrapup_ended":
        s["wrapup_ms"] = t
        s["disposition"] = e.get("disposition") or s["disposition"]
        s["resolved"] = e.get("resolved", s["resolved"])
    # call.agent_offered: ring attempts matter for agent KPIs (later); nothing to fold here yet.


def holds(s: dict) -> tuple[int, int]:
    """(hold count, total hold ms) from the hold marks in time order, whatever order they arrived in.

    A hold still open when the call ends lasts until the end.
    """
    count = total = 0
    start = None
    for t, held in sorted(s["holds"]):
        if held and start is None:
            start, count = t, count + 1
        elif not held and start is not None:
            total, start = total + t - start, None
    if start is not None and s["ended_ms"] is not None:
        total += max(0, s["ended_ms"] - start)
    return count, total


def arrival_ms(s: dict) -> int | None:
    """When the call reached the ACD: queue entry, else first contact, else (a source that saw only
    the end of the call) its answer or hang-up."""
    for field in ("queued_ms", "offered_ms", "answered_ms", "abandoned_ms"):
        if s[field] is not None:
            return s[field]
    return None


def outcome(s: dict) -> str | None:
    """Once the call is complete: ``answered``, ``abandoned`` (the caller hung up) or the reason the
    queue let it go (``timeout``, ``empty_queue``, ``key_pressed``, ``phantom``); else None."""
    if s["answered_ms"] is not None:
        return "answered" if s["ended_ms"] is not None else None
    if s["abandoned_ms"] is None:
        return None
    return "abandoned" if s["abandon_reason"] == "caller_hangup" else s["abandon_reason"]


def wait_ms(s: dict) -> int | None:
    """Time from arrival to answer (answered) or to hang-up (abandoned)."""
    start = arrival_ms(s)
    end = s["answered_ms"] if s["answered_ms"] is not None else s["abandoned_ms"]
    return None if start is None or end is None else max(0, end - start)


def _record(s: dict, result: str) -> dict:
    hold_count, hold_ms = holds(s)
    talk = None
    if result == "answered":
        talk = max(0, s["ended_ms"] - s["answered_ms"] - hold_ms)
    start = arrival_ms(s)
    return {
        "call_id": s["call_id"], "site_id": s["site_id"], "queue_id": s["queue_id"] or "",
        "agent_id": s["agent_id"] or "", "caller_hash": s["caller_hash"] or "",
        "direction": s["direction"], "call_type": s["call_type"] or "",
        "arrived_at": format_ms(start) if start is not None else None,
        "answered_at": format_ms(s["answered_ms"]) if s["answered_ms"] is not None else None,
        "ended_at": format_ms(s["ended_ms"] if result == "answered" else s["abandoned_ms"]),
        "wrapup_ended_at": format_ms(s["wrapup_ms"]) if s["wrapup_ms"] is not None else None,
        "outcome": result, "abandon_stage": s["abandon_stage"] or "",
        "wait_ms": wait_ms(s) or 0, "talk_ms": talk or 0, "hold_ms": hold_ms, "hold_count": hold_count,
        "transfer_count": s["transfer_count"], "disposition": s["disposition"] or "",
        "resolved": s["resolved"], "version": s["version"],
    }


class CallAssembler:
    """Per-call state machine over ``call.*`` events; duplicates (same event id) are ignored."""

    def __init__(self, states: MutableMapping[str, dict], window_sizes_s: tuple[int, ...]):
        self.states = states
        self.window_sizes_s = window_sizes_s

    def apply(self, event: dict) -> Update | None:
        """Fold one validated ``call.*`` event; None when it was a duplicate."""
        call_id = event["call_id"]
        state = self.states.get(call_id) or _new_state(call_id, event["site_id"])
        if event["event_id"] in state["seen"]:
            return None
        state["seen"].append(event["event_id"])
        state["version"] += 1
        _fold(state, event, time_ms(event["event_time"]))
        contrib = kpi.contribution(state, arrival_ms(state), wait_ms(state), self.window_sizes_s)
        update = Update(deltas=kpi.diff(state["contrib"], contrib))
        state["contrib"] = contrib
        result = outcome(state)
        if result is not None:
            update.record = _record(state, result)
        self.states[call_id] = state  # reassign: a faust Table writes its changelog on set
        return update
