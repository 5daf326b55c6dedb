"""Fold call events into per-call state and assemble call records.

A call's state is a plain JSON-able dict (it travels through faust changelogs). Events are kept as
marks (answers, transfers, holds, wrap-ups) and everything is derived from them in time order, so
any arrival order gives the same result. A record is emitted once the call is complete (answered
and ended, or left unanswered) and again whenever a later event changes it; ``version`` (events
applied) makes the newest record win downstream. A transfer closes the agent's segment; the next
answer opens the next agent's.

State leaves when the watermark (the latest event time seen) passes: a complete call
``allowed_lateness`` after its end; a call with no end ``call_timeout`` after its last event, when it
is first closed as ``incomplete``. An event for a call no longer held that is older than the
watermark minus the allowed lateness is late: it is refused (dead letter), never counted twice.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from schemas import format_ms, time_ms

from . import kpi
from .expiry import Expiry
from .sampling import Decisions

UNANSWERED = {"caller_hangup": "abandoned"}  # other reasons (timeout, phantom, ...) are outcomes of their own


@dataclass
class Update:
    """What one event (or sweep) changed: call records and evaluations to (re)write, KPI deltas, FCR
    notes, drift observations and alerts, sampling candidates, signals and decisions, or why it was
    refused."""

    records: list[dict] = field(default_factory=list)
    deltas: list[tuple[str, dict]] = field(default_factory=list)
    fcr: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    observations: list[tuple] = field(default_factory=list)  # (series key, value, at ms[, weight])
    alerts: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)  # recorded calls for the sampling stage
    analyses: list[tuple] = field(default_factory=list)  # (agent, call, at ms, {"shortfall": %, "negative": 0..1})
    signals: list[tuple[str, str, dict, int]] = field(default_factory=list)  # (agent, signal id, signal, at ms)
    sampled: Decisions = field(default_factory=Decisions)
    refused: str | None = None

    def extend(self, other: "Update") -> None:
        self.records += other.records
        self.deltas += other.deltas
        self.fcr += other.fcr
        self.evaluations += other.evaluations
        self.observations += other.observations


def _new_state(call_id: str, site_id: str) -> dict:
    return {
        "call_id": call_id, "site_id": site_id, "queue_id": None, "caller_hash": None, "direction": "inbound",
        "call_type": None, "offered_ms": None, "queued_ms": None, "abandoned_ms": None, "abandon_stage": None,
        "abandon_reason": None, "ended_ms": None, "answers": [], "transfers": [], "holds": [], "wrapups": [],
        "disposition": None, "resolved": None, "last_ms": 0, "incomplete": False, "fcr_noted": [],
        "version": 0, "seen": [], "contrib": {},
    }


def _earliest(current: int | None, t: int) -> int:
    return t if current is None or t < current else current


def _fold(s: dict, e: dict, t: int) -> None:
    kind = e["event_type"]
    s["last_ms"] = max(s["last_ms"], t)
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
        s["answers"].append([t, e["agent_id"]])
        s["queue_id"] = s["queue_id"] or e.get("queue_id")
    elif kind in ("call.held", "call.resumed"):
        s["holds"].append([t, kind == "call.held"])
    elif kind == "call.transferred":
        s["transfers"].append([t, e["from_agent_id"]])
    elif kind == "call.abandoned":
        s["abandoned_ms"] = _earliest(s["abandoned_ms"], t)
        s["abandon_stage"] = e["stage"]
        s["abandon_reason"] = e.get("reason", "caller_hangup")
        s["queue_id"] = s["queue_id"] or e.get("queue_id")
    elif kind == "call.ended":
        s["ended_ms"] = _earliest(s["ended_ms"], t)
    elif kind == "call.wrapup_ended":
        s["wrapups"].append([t, e["agent_id"]])
        s["disposition"] = e.get("disposition") or s["disposition"]
        s["resolved"] = e.get("resolved", s["resolved"])
    # call.agent_offered: ring attempts, for agent KPIs later; nothing to fold yet.


def arrival_ms(s: dict) -> int | None:
    """When the call reached the ACD: queue entry, else first contact, else (a source that saw only
    the end of the call) its answer or hang-up."""
    for t in (s["queued_ms"], s["offered_ms"], min(s["answers"])[0] if s["answers"] else None, s["abandoned_ms"]):
        if t is not None:
            return t
    return None


def answered_ms(s: dict) -> int | None:
    return min(s["answers"])[0] if s["answers"] else None


def outcome(s: dict) -> str | None:
    """``answered``, ``abandoned`` (the caller hung up), the reason the queue let it go (``timeout``,
    ``empty_queue``, ``key_pressed``, ``phantom``), ``incomplete`` (timed out), or None while open."""
    if s["answers"]:
        return "answered" if s["ended_ms"] is not None else ("incomplete" if s["incomplete"] else None)
    if s["abandoned_ms"] is not None:
        return UNANSWERED.get(s["abandon_reason"], s["abandon_reason"])
    return "incomplete" if s["incomplete"] else None


def wait_ms(s: dict) -> int | None:
    """Time from arrival to the first answer (answered) or to leaving (unanswered)."""
    start, end = arrival_ms(s), answered_ms(s) or s["abandoned_ms"]
    return None if start is None or end is None else max(0, end - start)


def segments(s: dict) -> list[dict]:
    """One segment per answer, in time order: it ends at that agent's next transfer, else at the call's end."""
    out = []
    answers = sorted(s["answers"])
    transfers = sorted(s["transfers"])
    wrapups = sorted(s["wrapups"])
    holds = sorted(s["holds"])
    for i, (start, agent) in enumerate(answers):
        next_start = answers[i + 1][0] if i + 1 < len(answers) else None
        xfer = next((t for t, a in transfers if a == agent and t >= start and (next_start is None or t <= next_start)), None)
        end = xfer if xfer is not None else (s["ended_ms"] if next_start is None else next_start)
        hold_count = hold_ms = 0
        open_at = None
        for t, held in holds:
            if t < start or (end is not None and t > end):
                continue
            if held and open_at is None:
                open_at, hold_count = t, hold_count + 1
            elif not held and open_at is not None:
                hold_ms, open_at = hold_ms + t - open_at, None
        if open_at is not None and end is not None:
            hold_ms += max(0, end - open_at)
        wrap = next((t for t, a in wrapups if a == agent and end is not None and t >= end), None)
        talk = max(0, end - start - hold_ms) if end is not None else None
        out.append({"agent_id": agent, "answered_ms": start, "ended_ms": end, "talk_ms": talk, "hold_ms": hold_ms,
                    "hold_count": hold_count, "acw_ms": wrap - end if wrap is not None else 0,
                    "transferred": xfer is not None})
    return out


class CallAssembler:
    """Per-call state machine over ``call.*`` events; duplicates (same event id) are ignored."""

    def __init__(self, states: MutableMapping[str, dict], config: kpi.KpiConfig,
                 team_of: Callable[[str], str | None] = lambda agent: None):
        self.states = states
        self.config = config
        self.team_of = team_of
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(s)) for k, s in states.items())

    def _due(self, s: dict) -> int:
        lateness = self.config.allowed_lateness_s * 1000
        if outcome(s) is not None:
            return max(s["last_ms"], s["ended_ms"] or 0, s["abandoned_ms"] or 0) + lateness
        return s["last_ms"] + self.config.call_timeout_s * 1000

    def apply(self, event: dict, watermark_ms: int) -> Update | None:
        """Fold one validated ``call.*`` event; None when it was a duplicate."""
        call_id = event["call_id"]
        t = time_ms(event["event_time"])
        state = self.states.get(call_id)
        if state is None:
            if t < watermark_ms - self.config.allowed_lateness_s * 1000:
                return Update(refused=f"late event: {event['event_time']} is more than the allowed lateness "
                                      f"({self.config.allowed_lateness_s} s) behind the watermark {format_ms(watermark_ms)}")
            state = _new_state(call_id, event["site_id"])
        if event["event_id"] in state["seen"]:
            return None
        state["seen"].append(event["event_id"])
        _fold(state, event, t)
        return self._commit(state)

    def _commit(self, state: dict) -> Update:
        state["version"] += 1
        segs, call = segments(state), self._call_counters(state)  # once per event: both below use them
        contrib = self._contribution(state, segs, call)
        update = Update(deltas=kpi.diff(state["contrib"], contrib), fcr=self._fcr_notes(state))
        state["contrib"] = contrib
        result = outcome(state)
        if result is not None:
            record = self._record(state, result, segs)
            update.records.append(record)
            if not state.get("observed"):  # drift detectors see each finished call once
                state["observed"] = True
                update.observations = self._observations(state, record)
        self.states[state["call_id"]] = state  # reassign: a faust Table writes its changelog on set
        self.expiry.push(state["call_id"], self._due(state))
        return update

    def sweep(self, watermark_ms: int, owns: Callable[[str], bool] = lambda key: True) -> Update:
        """Close calls past their timeout as incomplete; forget calls past their lateness."""
        update = Update()
        for key in list(self.expiry.due(watermark_ms)):
            state = self.states.get(key)
            if state is None or not owns(key):
                continue
            due = self._due(state)
            if due > watermark_ms:
                self.expiry.push(key, due)
            elif outcome(state) is None and arrival_ms(state) is not None:
                state["incomplete"] = True
                update.extend(self._commit(state))
            else:  # settled, or only stray events of a call already closed: nothing to report
                del self.states[key]
        return update

    def _fcr_notes(self, s: dict) -> list[dict]:
        """Tell the FCR tracker (keyed by caller) about the call's arrival, and once, about its answer."""
        if not s["caller_hash"] or s["direction"] != "inbound":
            return []
        notes = []
        arrived = s["offered_ms"] if s["offered_ms"] is not None else arrival_ms(s)
        if arrived is not None and "arrival" not in s["fcr_noted"]:
            s["fcr_noted"].append("arrival")
            notes.append({"caller": s["caller_hash"], "call_id": s["call_id"], "arrived_ms": arrived,
                          "at_ms": s["last_ms"]})
        if s["answers"] and "answered" not in s["fcr_noted"]:
            s["fcr_noted"].append("answered")
            first = min(s["answers"])[1]
            notes.append({"caller": s["caller_hash"], "call_id": s["call_id"], "arrived_ms": arrived,
                          "at_ms": s["last_ms"], "windows": self._agent_keys(s, first, arrival_ms(s))})
        return notes

    def _entities(self, s: dict) -> list[tuple[str, str, str]]:
        entities = [("site", s["site_id"], s["site_id"])]
        if s["queue_id"]:
            entities.append(("queue", s["site_id"], s["queue_id"]))
        return entities

    def _agent_keys(self, s: dict, agent: str, t: int) -> list[str]:
        """Windows of an agent's (and their team's) work at time t; plus the call's site/queue windows."""
        levels = [("agent", s["site_id"], agent)]
        team = self.team_of(agent)
        if team:
            levels.append(("team", s["site_id"], team))
        return kpi.keys_at(self.config, t, levels + self._entities(s))

    def _call_counters(self, s: dict) -> dict | None:
        """The call-level counters (offered, answered, abandoned, service level, wait); None while the
        call has not reached the ACD (or never will: IVR hang-up, outbound)."""
        arrived = arrival_ms(s)
        if arrived is None or s["direction"] != "inbound":
            return None
        answered = bool(s["answers"])
        reached_acd = s["queued_ms"] is not None or answered or (
            s["abandoned_ms"] is not None and s["abandon_stage"] != "ivr")
        if not reached_acd:
            return None  # still in (or hung up in) the IVR: not offered to the ACD
        rules = self.config.rules(s["queue_id"])
        wait = wait_ms(s)
        left_unanswered = not answered and s["abandoned_ms"] is not None
        short = left_unanswered and s["abandon_reason"] == "caller_hangup" and wait is not None \
            and wait < rules.short_abandon_s * 1000
        abandoned = left_unanswered and s["abandon_reason"] == "caller_hangup" and not short
        in_sl = answered and wait is not None and wait <= rules.sl_threshold_s * 1000
        denominator = {"answered_and_abandoned": answered or abandoned,
                       "offered": not short, "answered": answered}[rules.sl_formula]
        return {
            "offered": 1, "answered": int(answered), "abandoned": int(abandoned), "short_abandoned": int(short),
            "unanswered_other": int(left_unanswered and s["abandon_reason"] != "caller_hangup"),
            "incomplete": int(outcome(s) == "incomplete"),
            "sl_numerator": int(in_sl), "sl_denominator": int(denominator),
            "wait_answered_ms": wait if answered and wait is not None else 0,
            kpi.HIST: {str((wait or 0) // 1000): 1},
        }

    def _contribution(self, s: dict, segs: list[dict], call: dict | None) -> dict:
        """The counters this call adds to each of its windows (recomputed from the state)."""
        if call is None:
            return {}
        arrived, result = arrival_ms(s), outcome(s)
        call = call | {"handled": int(result == "answered"), "talk_ms": sum(x["talk_ms"] or 0 for x in segs),
                       "hold_ms": sum(x["hold_ms"] for x in segs), "hold_count": sum(x["hold_count"] for x in segs),
                       "acw_ms": sum(x["acw_ms"] for x in segs), "transferred": int(bool(s["transfers"]))}
        out: dict = {}
        kpi.add(out, kpi.keys_at(self.config, arrived, self._entities(s)), call)
        for i, seg in enumerate(segs):  # agents and teams count their own segments
            work = {"handled": int(seg["ended_ms"] is not None), "talk_ms": seg["talk_ms"] or 0,
                    "hold_ms": seg["hold_ms"], "hold_count": seg["hold_count"], "acw_ms": seg["acw_ms"],
                    "transferred": int(seg["transferred"])}
            if i == 0:  # the first answering agent is the one the caller waited for
                work |= {"answered": 1, "wait_answered_ms": call["wait_answered_ms"],
                         "sl_numerator": call["sl_numerator"], "sl_denominator": call["sl_denominator"]}
            levels = [("agent", s["site_id"], seg["agent_id"])]
            team = self.team_of(seg["agent_id"])
            if team:
                levels.append(("team", s["site_id"], team))
            kpi.add(out, kpi.keys_at(self.config, arrived, levels), work)
        return out

    def _observations(self, s: dict, record: dict) -> list[tuple[str, float, int]]:
        """Per answered call: handle, hold and transfer for its agent, team and site (service level and
        abandonment are judged against their targets by ``thresholds``, not charted for drift)."""
        at = max(s["last_ms"], arrival_ms(s) or 0)
        out = []
        if record["outcome"] == "answered" and record["agent_id"]:
            levels = [("agent", record["agent_id"]), ("site", s["site_id"])]
            if record["team_id"]:
                levels.append(("team", record["team_id"]))
            for level, entity in levels:
                key = f"{level}|{s['site_id']}|{entity}|"
                out += [(key + "handle_s", (record["talk_ms"] + record["hold_ms"]) / 1000, at),
                        (key + "hold_s", record["hold_ms"] / 1000, at),
                        (key + "transferred", float(record["transfer_count"] > 0), at)]
        return out

    def _record(self, s: dict, result: str, segs: list[dict]) -> dict:
        start = arrival_ms(s)
        end = s["ended_ms"] if s["answers"] else s["abandoned_ms"]
        if end is None:
            end = s["last_ms"]
        first = answered_ms(s)
        team = self.team_of(segs[0]["agent_id"]) if segs else None
        return {
            "call_id": s["call_id"], "site_id": s["site_id"], "queue_id": s["queue_id"] or "",
            "agent_id": segs[0]["agent_id"] if segs else "", "team_id": team or "",
            "caller_hash": s["caller_hash"] or "", "direction": s["direction"], "call_type": s["call_type"] or "",
            "arrived_at": format_ms(start if start is not None else end),
            "answered_at": format_ms(first) if first is not None else None,
            "ended_at": format_ms(end),
            "outcome": result, "abandon_stage": s["abandon_stage"] or "",
            "wait_ms": wait_ms(s) or 0,
            "talk_ms": sum(x["talk_ms"] or 0 for x in segs), "hold_ms": sum(x["hold_ms"] for x in segs),
            "hold_count": sum(x["hold_count"] for x in segs), "acw_ms": sum(x["acw_ms"] for x in segs),
            "transfer_count": len(s["transfers"]), "disposition": s["disposition"] or "", "resolved": s["resolved"],
            "segment_agent_ids": [x["agent_id"] for x in segs],
            "segment_answered_ms": [x["answered_ms"] for x in segs],
            "segment_talk_ms": [x["talk_ms"] or 0 for x in segs],
            "segment_hold_ms": [x["hold_ms"] for x in segs],
            "segment_acw_ms": [x["acw_ms"] for x in segs],
            "segment_transferred": [int(x["transferred"]) for x in segs],
            "version": s["version"],
        }
