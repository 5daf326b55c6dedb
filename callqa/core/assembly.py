"""Fold call events into per-call state and assemble call records.

A call's state is a plain JSON-able dict (it travels through faust changelogs). Events are kept as
marks (answers, transfers, holds, wrap-ups) and everything is derived from them in time order, so
any arrival order gives the same result. A record is emitted once the call is complete (answered
and ended, or left unanswered) and again whenever a later event changes it; ``version`` (events
applied) makes the newest record win downstream. A transfer closes the agent's segment; the next
answer opens the next agent's.

State leaves when the watermark (the latest event time seen) passes: a complete call is *settled*
``allowed_lateness`` after its last event (its contribution is dropped, its events are kept) and
forgotten ``redelivery`` after it; a call with no end is first closed as ``incomplete``
``call_timeout`` after its last event, and has a dead letter (origin ``expiry``) if it is forgotten so;
the events of a call that never reached the ACD are dropped with one after ``call_timeout``. Sources that deliver at least once (Amazon Connect) re-send a
record: an event already seen is a duplicate, whenever it comes, and an event new to a settled call
(a newer version of its record) reopens and updates it. An event for a call no longer held that is
older than the watermark minus the allowed lateness is late: it is refused (dead letter), never
counted twice.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

import orjson

from schemas import format_ms, time_ms

from . import kpi
from .expiry import Expiry

UNANSWERED = {"caller_hangup": "abandoned"}  # other reasons (timeout, phantom, ...) are outcomes of their own


@dataclass(slots=True)
class Update:
    """What one event (or sweep) changed: call records and evaluations to (re)write, KPI deltas, FCR
    notes, drift observations, sampling candidates, analyses and signals, expired calls, or why it was
    refused. One is made per event: slotted."""

    records: list[dict] = field(default_factory=list)
    deltas: list[tuple[str, dict]] = field(default_factory=list)
    fcr: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    observations: list[tuple] = field(default_factory=list)  # (series key, value, at ms[, weight[, stratum]])
    candidates: list[dict] = field(default_factory=list)  # recorded calls for the sampling stage
    analyses: list[tuple] = field(default_factory=list)  # (agent, call, at ms, {"shortfall": %, "negative": 0..1})
    signals: list[tuple[str, str, dict, int]] = field(default_factory=list)  # (agent, signal id, signal, at ms)
    refused: str | None = None
    expired: list[tuple[str, str, dict]] = field(default_factory=list)  # (call id, reason, what it held): dead letters

    def extend(self, other: "Update") -> None:
        self.expired += other.expired
        self.records += other.records
        self.deltas += other.deltas
        self.fcr += other.fcr
        self.evaluations += other.evaluations
        self.observations += other.observations


def _new_state(call_id: str, site_id: str) -> dict:
    return {
        "call_id": call_id, "site_id": site_id, "queue_id": None, "caller_hash": None, "direction": "inbound",
        "call_type": None, "offered_ms": None, "entries": [], "lefts": [], "ends": [], "answers": [],
        "transfers": [], "holds": [], "wrapups": [], "consultation_of": None,
        "disposition": None, "resolved": None, "last_ms": 0, "incomplete": False, "fcr_noted": [],
        "version": 0, "seen": [], "contrib": {},
    }


def _settle(s: dict) -> dict:
    """A finished call's state as one string (few objects to keep) without its contribution: what a
    re-delivery or a newer version of its record needs."""
    packed = {"settled": orjson.dumps({k: v for k, v in s.items() if k != "contrib"}).decode(), "last_ms": s["last_ms"],
              "site_id": s["site_id"]}
    if s.get("result") == "incomplete":
        packed["held"] = _held(s)  # for its dead letter when it is forgotten still incomplete
    return packed


def _site_of(s: dict) -> str:
    """A call state's site (a settled state saved before it kept its site: from its packed state)."""
    site = s.get("site_id")
    return site if site is not None else orjson.loads(s["settled"])["site_id"]


def _upgraded(s: dict) -> dict:
    """A call state saved by callqa before stints (one queue, one end): the same call as marks."""
    if "entries" in s or "settled" in s:
        return s
    s["entries"] = [[s["queued_ms"], s["queue_id"]]] if s.get("queued_ms") is not None else []
    s["lefts"] = [[s["abandoned_ms"], s["queue_id"], s.get("abandon_stage") or "queue",
                   s.get("abandon_reason") or "caller_hangup"]] if s.get("abandoned_ms") is not None else []
    s["ends"] = [[s["ended_ms"], None]] if s.get("ended_ms") is not None else []
    s["answers"] = [[t, agent, None] for t, agent, *_ in s["answers"]]
    s["consultation_of"] = None
    for old in ("queued_ms", "abandoned_ms", "abandon_stage", "abandon_reason", "ended_ms"):
        s.pop(old, None)
    return s


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
        s["entries"].append([t, e["queue_id"]])
    elif kind == "call.answered":
        s["answers"].append([t, e["agent_id"], e.get("queue_id")])
    elif kind in ("call.held", "call.resumed"):
        s["holds"].append([t, kind == "call.held"])
    elif kind == "call.transferred":
        if e.get("consultation_of"):
            s["consultation_of"] = e["consultation_of"]
        else:
            s["transfers"].append([t, e["from_agent_id"]])
    elif kind == "call.abandoned":
        s["lefts"].append([t, e.get("queue_id"), e["stage"], e.get("reason", "caller_hangup")])
    elif kind == "call.ended":
        s["ends"].append([t, e.get("agent_id")])
    elif kind == "call.wrapup_ended":
        s["wrapups"].append([t, e["agent_id"]])
        s["disposition"] = e.get("disposition") or s["disposition"]
        s["resolved"] = e.get("resolved", s["resolved"])
    # call.agent_offered: ring attempts, for agent KPIs later; nothing to fold yet.


def _first(marks: list) -> int | None:
    return min(marks)[0] if marks else None


def _held(s: dict) -> dict:
    """What an expired call's dead letter keeps: its site, events and last event time."""
    return {"call_id": s["call_id"], "site_id": s["site_id"], "event_ids": s["seen"], "last_event_time": format_ms(s["last_ms"])}


def arrival_ms(s: dict) -> int | None:
    """When the call reached the ACD: its first queue entry, else first contact, else (a source that
    saw only the end of the call) its answer or hang-up."""
    for t in (_first(s["entries"]), s["offered_ms"], _first(s["answers"]), _first(s["lefts"])):
        if t is not None:
            return t
    return None


def call_queue(s: dict) -> str | None:
    """The queue the call first entered (else the one its first event named)."""
    if s["entries"]:
        return min(s["entries"])[1]
    return s["queue_id"] or next((m[2] for m in sorted(s["answers"]) if m[2]), None) \
        or next((m[1] for m in sorted(s["lefts"]) if m[1]), None)


def answered_ms(s: dict) -> int | None:
    return _first(s["answers"])


def stints(s: dict) -> list[dict]:
    """The call's queue stints in time order, as QueueMetrics counts them: each entry into a queue
    until an agent answered it there or it left that queue (caller hang-up, timeout, ...), whichever
    came first. An answer or a leave belongs to the latest entry at or before it into its queue (any
    queue when it names none). A call with no queue entry has one stint in its offered queue from its
    arrival."""
    entries = sorted(s["entries"])
    if not entries:
        queue, arrived = call_queue(s), arrival_ms(s)
        reached = s["answers"] or any(m[2] != "ivr" for m in s["lefts"])  # an IVR hang-up never queued
        entries = [[arrived, queue]] if arrived is not None and reached else []
    out = [{"queue_id": q, "entered_ms": t, "answer": None, "left": None} for t, q in entries]
    marks = sorted([(m[0], 0, m[2], "answer", m) for m in s["answers"]] + [(m[0], 1, m[1], "left", m) for m in s["lefts"]],
                   key=lambda m: m[:2])

    def owner(t: int, queue: str | None) -> dict | None:
        """The latest entry into the mark's queue at or before it; else the latest open stint before it;
        else (a clock skew: the mark precedes every entry) the first stint."""
        if len(out) == 1:  # the usual call: one queue
            return out[0]
        before = [x for x in out if x["entered_ms"] <= t]
        if queue is None:  # names no queue: the latest stint entered before it (a transfer's next stint
            earlier = [x for x in before if x["entered_ms"] < t]  # may start in the same second)
            return (earlier or before or out[:1] or [None])[-1]
        same = [x for x in before if x["queue_id"] in (queue, None)]
        if same:
            return same[-1]
        waiting = [x for x in before or out[:1] if x["answer"] is None and x["left"] is None]
        return waiting[-1] if waiting else None

    for t, _, queue, kind, mark in marks:  # in time order: the first answer or leave closes a stint
        stint = owner(t, queue)
        if stint is not None and stint["answer"] is None and stint["left"] is None:
            stint[kind] = mark
    for x in out:
        end = x["answer"][0] if x["answer"] else x["left"][0] if x["left"] else None
        x["wait_ms"] = None if end is None else max(0, end - x["entered_ms"])
        x["outcome"] = "answered" if x["answer"] else (x["left"][3] if x["left"] else None)
    return out


def segments(s: dict) -> list[dict]:
    """One segment per answer, in time order: it ends at that agent's next transfer, else at the next
    end of the call, and at the latest when the next agent answers."""
    out = []
    answers = sorted(s["answers"])
    transfers = sorted(s["transfers"])
    ends = sorted(s["ends"])
    wrapups = sorted(s["wrapups"])
    holds = sorted(s["holds"])
    for i, (start, agent, _) in enumerate(answers):
        next_start = answers[i + 1][0] if i + 1 < len(answers) else None
        before_next = lambda t: next_start is None or t <= next_start
        xfer = next((t for t, a in transfers if a == agent and t >= start and before_next(t)), None)
        ended = next((t for t, a in ends if t >= start and a in (agent, None) and before_next(t)), None)
        end = xfer if xfer is not None else ended if ended is not None else next_start
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


def outcome(s: dict, parts: list[dict] | None = None, segs: list[dict] | None = None) -> str | None:
    """``answered``, ``abandoned`` (the caller hung up), the reason the last queue let it go
    (``timeout``, ``empty_queue``, ``key_pressed``, ``phantom``, ``callback``), ``incomplete`` (timed
    out), or None while open: a stint waits in a queue, or an agent's segment has not ended."""
    parts = stints(s) if parts is None else parts
    segs = segments(s) if segs is None else segs
    waiting = any(x["outcome"] is None for x in parts)
    if s["answers"]:
        done = not waiting and all(x["ended_ms"] is not None for x in segs)
        return "answered" if done else ("incomplete" if s["incomplete"] else None)
    if parts and not waiting:
        return UNANSWERED.get(parts[-1]["outcome"], parts[-1]["outcome"])
    if not parts and s["lefts"]:
        return UNANSWERED.get(max(s["lefts"])[3], max(s["lefts"])[3])
    return "incomplete" if s["incomplete"] else None


def wait_ms(s: dict, parts: list[dict] | None = None) -> int | None:
    """Time from arrival to the first answer (answered) or to leaving the last queue (unanswered)."""
    parts = stints(s) if parts is None else parts
    start = arrival_ms(s)
    end = answered_ms(s)
    if end is None and parts and parts[-1]["left"]:
        end = parts[-1]["left"][0]
    elif end is None and s["lefts"]:
        end = max(s["lefts"])[0]
    return None if start is None or end is None else max(0, end - start)


HANDLING = ("talk_ms", "hold_ms", "hold_count", "acw_ms")


def _handling(segs: list[dict]) -> dict:
    """A call's talk, holds and after-call work: the sums over its agents' segments."""
    return {name: sum(seg[name] or 0 for seg in segs) for name in HANDLING}


def _work(seg: dict) -> dict:
    """The counters of an agent's segment: handled once it ended, its talk, holds and after-call work."""
    return {"handled": int(seg["ended_ms"] is not None), "talk_ms": seg["talk_ms"] or 0, "hold_ms": seg["hold_ms"],
            "hold_count": seg["hold_count"], "acw_ms": seg["acw_ms"], "transferred": int(seg["transferred"])}


class CallAssembler:
    """Per-call state machine over ``call.*`` events; duplicates (same event id) are ignored."""

    def __init__(self, states: MutableMapping[str, dict], config: kpi.KpiConfig,
                 team_of: Callable[[str], str | None] = lambda agent: None):
        self.states = states
        self.config = config
        self.team_of = team_of
        self.expiry: dict[str, Expiry] = {}  # per site: a site's calls time out on its own event time
        by_site: dict[str, list] = {}
        for k, s in states.items():
            by_site.setdefault(_site_of(s), []).append((k, self._due(_upgraded(s))))
        for site, items in by_site.items():
            self.expiry[site] = Expiry()
            self.expiry[site].rebuild(items)

    def _push(self, key: str, state: dict, due_ms: int) -> None:
        expiry = self.expiry.get(site := _site_of(state))
        if expiry is None:
            expiry = self.expiry[site] = Expiry()
        expiry.push(key, due_ms)

    def _due(self, s: dict, result: str | None = "?") -> int:
        """When the sweep looks at the call next (``result``: its outcome, when already known)."""
        if "settled" in s:
            return s["last_ms"] + self.config.redelivery_s * 1000
        if s["consultation_of"] or not self._open(s, result):
            return s["last_ms"] + self.config.allowed_lateness_s * 1000
        return s["last_ms"] + self.config.call_timeout_s * 1000

    @staticmethod
    def _open(s: dict, result: str | None = "?") -> bool:
        """Whether the call has no outcome yet (``result``: its outcome when known; else the one its
        last commit saved)."""
        if result == "?":
            result = s["result"] if "result" in s else outcome(s)
        return result is None

    def apply(self, event: dict, watermark_ms: int) -> Update | None:
        """Fold one validated ``call.*`` event; None when it was a duplicate."""
        call_id = event["call_id"]
        t = time_ms(event["event_time"])
        state = self.view(call_id)
        if state is None:
            if t < watermark_ms - self.config.allowed_lateness_s * 1000:
                return Update(refused=f"late event: {event['event_time']} is more than the allowed lateness "
                                      f"({self.config.allowed_lateness_s} s) behind the watermark {format_ms(watermark_ms)}")
            state = _new_state(call_id, event["site_id"])
        if event["event_id"] in state["seen"]:
            return None
        if "contrib" not in state:  # a newer version of a settled call: its windows are still open
            state["contrib"] = self._contribution(state, stints(state), segments(state), outcome(state))
        state["seen"].append(event["event_id"])
        _fold(state, event, t)
        return self._commit(state)

    def _commit(self, state: dict) -> Update:
        state["version"] += 1
        result = None
        if state["consultation_of"]:  # an attended transfer's consultation leg: part of another call
            update = Update(deltas=kpi.diff(state["contrib"], {}))
            state["contrib"] = {}
        else:
            parts, segs = stints(state), segments(state)  # once per event: everything below uses them
            result = state["result"] = outcome(state, parts, segs)
            contrib = self._contribution(state, parts, segs, result)
            update = Update(deltas=kpi.diff(state["contrib"], contrib), fcr=self._fcr_notes(state))
            state["contrib"] = contrib
            if result is not None:
                record = self._record(state, result, parts, segs)
                update.records.append(record)
                if not state.get("observed"):  # drift detectors see each finished call once
                    state["observed"] = True
                    update.observations = self._observations(state, record)
        self.states[state["call_id"]] = state  # reassign: a faust Table writes its changelog on set
        self._push(state["call_id"], state, self._due(state, result))
        return update

    def sweep(self, site: str, watermark_ms: int) -> Update:
        """Close the site's calls past their timeout as incomplete; forget its calls past their lateness
        (``watermark_ms``: the site's event time, so a site whose clock runs ahead times out only its own)."""
        update = Update()
        expiry = self.expiry.get(site)
        for key in list(expiry.due(watermark_ms) if expiry else ()):
            state = self.states.get(key)
            if state is None:
                continue
            due = self._due(state)
            if due > watermark_ms:
                self._push(key, state, due)
            elif "settled" in state:  # past the re-delivery time
                if "held" in state:
                    update.expired.append((key, self._no_end, state["held"]))
                del self.states[key]
            elif not state["consultation_of"] and self._open(state) and arrival_ms(state) is not None:
                state["incomplete"] = True  # its record says so; a later event still completes it
                update.extend(self._commit(state))
            elif not state["consultation_of"] and self._open(state):
                update.expired.append((key, "events of a call that never reached the ACD (no offer, queue entry, answer "
                                            f"or hang-up) within {self.config.call_timeout_s} s (CALLQA_CALL_TIMEOUT_S): "
                                            "not counted", _held(state)))
                del self.states[key]
            elif self.config.redelivery_s > self.config.allowed_lateness_s:
                self.states[key] = _settle(state)  # kept, packed, to know a re-delivery
                self._push(key, self.states[key], self._due(self.states[key]))
            else:
                if state.get("result") == "incomplete":
                    update.expired.append((key, self._no_end, _held(state)))
                del self.states[key]
        return update

    @property
    def _no_end(self) -> str:
        """The reason of a forgotten incomplete call's dead letter."""
        return (f"call with no end: closed as incomplete {self.config.call_timeout_s} s (CALLQA_CALL_TIMEOUT_S) after its "
                "last event, and forgotten with no later event")

    def view(self, call_id: str) -> dict | None:
        """The call's state (a settled call's unpacked, without its contribution), or None."""
        state = self.states.get(call_id)
        if state is not None and "settled" in state:
            return orjson.loads(state["settled"])
        return state

    def remember(self, call_id: str, state: dict, event_id: str) -> None:
        """Note an event of a held call (``state``: its ``view``) as seen (a recording), so that its repeat
        is a duplicate."""
        state["seen"].append(event_id)
        self.states[call_id] = _settle(state) if "settled" in self.states[call_id] else state

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
        """The call's site, and the queue it first entered."""
        entities = [("site", s["site_id"], s["site_id"])]
        queue = call_queue(s)
        if queue:
            entities.append(("queue", s["site_id"], queue))
        return entities

    def _agent_keys(self, s: dict, agent: str, t: int) -> list[str]:
        """Windows of an agent's (and their team's) work at time t; plus the call's site/queue windows."""
        return kpi.keys_at(self.config, t, self._agent_levels(s, agent) + self._entities(s))

    def _agent_levels(self, s: dict, agent: str) -> list[tuple[str, str, str]]:
        levels = [("agent", s["site_id"], agent)]
        team = self.team_of(agent)
        if team:
            levels.append(("team", s["site_id"], team))
        return levels

    def _waiting(self, queue: str | None, wait: int | None, answered: bool, reason: str | None) -> dict:
        """Offered-call counters of one wait (a stint, or the whole call) under its queue's rules."""
        rules = self.config.rules(queue)
        left = not answered and reason is not None
        short = left and reason == "caller_hangup" and wait is not None and wait < rules.short_abandon_s * 1000
        abandoned = left and reason == "caller_hangup" and not short
        in_sl = answered and wait is not None and wait <= rules.sl_threshold_s * 1000
        denominator = {"answered_and_abandoned": answered or abandoned,
                       "offered": not short and reason != "callback", "answered": answered}[rules.sl_formula]
        return {
            "offered": 1, "answered": int(answered), "abandoned": int(abandoned), "short_abandoned": int(short),
            "unanswered_other": int(left and reason not in ("caller_hangup", "callback")),
            "callbacks_queued": int(left and reason == "callback"),
            "sl_numerator": int(in_sl), "sl_denominator": int(denominator),
            "wait_answered_ms": wait if answered and wait is not None else 0,
            kpi.HIST: {str((wait or 0) // 1000): 1},
        }

    def _call_counters(self, s: dict, parts: list[dict], result: str | None) -> dict | None:
        """The call-level counters (offered, answered, abandoned, service level, wait) of the whole call
        (every stint: one call, as QueueMetrics' multi-stint reading and Amazon Connect's initial
        contact count it); None while the call has not reached the ACD (or never will: IVR hang-up),
        and for work that was not offered (outbound calls, callbacks)."""
        arrived = arrival_ms(s)
        if arrived is None or s["direction"] != "inbound":
            return None
        answered = bool(s["answers"])
        reached_acd = bool(s["entries"]) or answered or any(m[2] != "ivr" for m in s["lefts"])
        if not reached_acd:
            return None  # still in (or hung up in) the IVR: not offered to the ACD
        reason = None if answered or not parts or parts[-1]["left"] is None else parts[-1]["left"][3]
        if reason is None and not answered and not parts and s["lefts"]:
            reason = max(s["lefts"])[3]
        counters = self._waiting(call_queue(s), wait_ms(s, parts), answered, reason)
        counters["incomplete"] = int(result == "incomplete")
        return counters

    def _contribution(self, s: dict, parts: list[dict], segs: list[dict], result: str | None) -> dict:
        """The counters this call adds to each of its windows (recomputed from the state).

        Site: the whole call, at its arrival. Queues: with ``queue_reading`` "standard" each stint
        counts in its own queue at its entry (QueueMetrics' standard reading: a call transferred or
        overflowing to a second queue is offered there too); with "multi_stint" the call counts once,
        in the queue it first entered, as QueueMetrics' multi-stint mode rebuilds it. Agents and teams:
        each agent's own segment, at the call's arrival, whatever the call's direction (outbound calls
        and callbacks are agent work too), with the wait of the stint they answered."""
        arrived = arrival_ms(s)
        if arrived is None:
            return {}
        call = self._call_counters(s, parts, result)
        done = result == "answered"  # the call's handle time counts with it, as AHT's numerator and denominator
        totals = {"handled": int(done), **(_handling(segs) if done else dict.fromkeys(HANDLING, 0)),
                  "transferred": int(bool(s["transfers"]))}
        out: dict = {}
        stint_of = []  # of each segment, when the call visited several queues
        if len(parts) > 1:
            by_answer = {id(x["answer"]): x for x in parts if x["answer"]}
            stint_of = [by_answer.get(id(a)) for a in sorted(s["answers"])]
        if call is not None:
            if len(parts) <= 1:  # one queue: the call and its stint are the same
                kpi.add(out, kpi.keys_at(self.config, arrived, self._entities(s)), call | totals)
            else:
                kpi.add(out, kpi.keys_at(self.config, arrived, [("site", s["site_id"], s["site_id"])]), call | totals)
                if self.config.queue_reading == "multi_stint":
                    self._add_multi_stint(out, s, parts, segs, stint_of, result)
                else:
                    self._add_stints(out, s, parts, segs, stint_of, result)
        elif s["direction"] == "callback" and s["answers"]:
            kpi.add(out, kpi.keys_at(self.config, arrived, self._entities(s)), totals | {"callbacks_handled": 1})
        for i, seg in enumerate(segs):  # agents and teams count their own segments
            work = _work(seg)
            stint = stint_of[i] if i < len(stint_of) else None
            if call is not None and stint is not None:  # answered out of its own queue
                waited = self._waiting(stint["queue_id"], stint["wait_ms"], True, None)
                work |= {k: waited[k] for k in ("answered", "wait_answered_ms", "sl_numerator", "sl_denominator")}
            elif call is not None and i == 0:  # the first answering agent is the one the caller waited for
                work |= {"answered": 1, "wait_answered_ms": call["wait_answered_ms"],
                         "sl_numerator": call["sl_numerator"], "sl_denominator": call["sl_denominator"]}
            if i > 0 and any(t <= seg["answered_ms"] for t, _ in s["transfers"]):
                work["transferred_in"] = 1
            kpi.add(out, kpi.keys_at(self.config, arrived, self._agent_levels(s, seg["agent_id"])), work)
        return out

    def _add_multi_stint(self, out: dict, s: dict, parts: list[dict], segs: list[dict], stint_of: list,
                         result: str | None) -> None:
        """The whole call once, in the queue it first entered, as QueueMetrics' multi-stint mode rebuilds
        it (user manual, "Multi-stint calls"): answered when its last stint was answered (lost
        otherwise), the wait the sum of its stints' waits, the talk of the last answered stint."""
        last = parts[-1]
        reason = last["left"][3] if last["left"] else None
        counters = self._waiting(parts[0]["queue_id"], sum(x["wait_ms"] or 0 for x in parts),
                                 last["answer"] is not None, reason)
        counters["incomplete"] = int(result == "incomplete")
        taken = next((seg for stint, seg in zip(reversed(stint_of), reversed(segs)) if stint is last), None)
        if taken is not None:
            counters |= _work(taken)
        if parts[0]["queue_id"]:
            kpi.add(out, kpi.keys_at(self.config, parts[0]["entered_ms"], [("queue", s["site_id"], parts[0]["queue_id"])]),
                    counters)

    def _add_stints(self, out: dict, s: dict, parts: list[dict], segs: list[dict], stint_of: list,
                    result: str | None) -> None:
        """Each stint in its own queue at its entry time: its wait, outcome, and the segment it began."""
        seg_of = {id(stint): seg for stint, seg in zip(stint_of, segs) if stint is not None}
        for k, stint in enumerate(parts):
            reason = stint["left"][3] if stint["left"] else None
            counters = self._waiting(stint["queue_id"], stint["wait_ms"], stint["answer"] is not None, reason)
            counters["incomplete"] = int(result == "incomplete" and stint["outcome"] is None)
            seg = seg_of.get(id(stint))
            if seg is not None:
                counters |= _work(seg)
            closed = stint["answer"][0] if stint["answer"] else stint["left"][0] if stint["left"] else None
            if k > 0 and (parts[k - 1]["outcome"] == "transferred" or any(
                    parts[k - 1]["entered_ms"] <= t and (closed is None or t <= closed)
                    for t, _ in s["transfers"])):  # an attended transfer completes after the entry
                counters["transferred_in"] = 1
            if stint["queue_id"]:
                kpi.add(out, kpi.keys_at(self.config, stint["entered_ms"],
                                         [("queue", s["site_id"], stint["queue_id"])]), counters)

    def _observations(self, s: dict, record: dict) -> list[tuple[str, float, int]]:
        """Per answered call: handle, hold and transfer for its agent, team and site (service level and
        abandonment are judged against their targets by ``thresholds``, not charted for drift); durations
        carry the call's queue, their case mix (``QualityMonitor``)."""
        at = max(s["last_ms"], arrival_ms(s) or 0)
        out = []
        if record["outcome"] == "answered" and record["agent_id"]:
            levels = [("agent", record["agent_id"]), ("site", s["site_id"])]
            if record["team_id"]:
                levels.append(("team", record["team_id"]))
            for level, entity in levels:
                key = f"{level}|{s['site_id']}|{entity}|"
                out += [(key + "handle_s", (record["talk_ms"] + record["hold_ms"]) / 1000, at, 1.0, record["queue_id"]),
                        (key + "hold_s", record["hold_ms"] / 1000, at, 1.0, record["queue_id"]),
                        (key + "transferred", float(record["transfer_count"] > 0), at)]
        return out

    def _record(self, s: dict, result: str, parts: list[dict], segs: list[dict]) -> dict:
        start = arrival_ms(s)
        ends = [x["ended_ms"] for x in segs if x["ended_ms"] is not None] + [m[0] for m in s["lefts"]]
        end = max(ends) if ends else s["last_ms"]
        first = answered_ms(s)
        team = self.team_of(segs[0]["agent_id"]) if segs else None
        stage = next((m[2] for m in sorted(s["lefts"], reverse=True)), "") if not s["answers"] else ""
        return {
            "call_id": s["call_id"], "site_id": s["site_id"], "queue_id": call_queue(s) or "",
            "agent_id": segs[0]["agent_id"] if segs else "", "team_id": team or "",
            "caller_hash": s["caller_hash"] or "", "direction": s["direction"], "call_type": s["call_type"] or "",
            "arrived_at": format_ms(start if start is not None else end),
            "answered_at": format_ms(first) if first is not None else None,
            "ended_at": format_ms(end),
            "outcome": result, "abandon_stage": stage,
            "wait_ms": wait_ms(s, parts) or 0,
            **_handling(segs),
            "transfer_count": len(s["transfers"]), "disposition": s["disposition"] or "", "resolved": s["resolved"],
            "segment_agent_ids": [x["agent_id"] for x in segs],
            "segment_answered_ms": [x["answered_ms"] for x in segs],
            "segment_talk_ms": [x["talk_ms"] or 0 for x in segs],
            "segment_hold_ms": [x["hold_ms"] for x in segs],
            "segment_acw_ms": [x["acw_ms"] for x in segs],
            "segment_transferred": [int(x["transferred"]) for x in segs],
            "stint_queue_ids": [x["queue_id"] or "" for x in parts],
            "stint_entered_ms": [x["entered_ms"] for x in parts],
            "stint_wait_ms": [x["wait_ms"] or 0 for x in parts],
            "stint_outcomes": [x["outcome"] or "" for x in parts],
            "version": s["version"],
        }
