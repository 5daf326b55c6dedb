"""Asterisk queue_log → canonical events.

Two readers feed one verb mapping: the standard pipe-separated file
(``epoch|callid|queue|agent|verb|p1|p2|...``, Asterisk's "Queue Logs") and the PBXware-flavoured
table export (``uid,date_time,callid,queue_name,type,event,param1..3,entpos,expos,htime,ttime,time``)
whose caller id sits in param1 and whose ring time (ms) sits in htime.

Mapped: ENTERQUEUE, CONNECT, RINGNOANSWER, COMPLETEAGENT/COMPLETECALLER, ABANDON, EXITWITHTIMEOUT,
EXITEMPTY, EXITWITHKEY, BLINDTRANSFER/ATTENDEDTRANSFER/TRANSFER, AGENTLOGIN/AGENTLOGOFF,
AGENTCALLBACKLOGIN/AGENTCALLBACKLOGOFF, ADDMEMBER/REMOVEMEMBER, PAUSE/UNPAUSE(ALL). Every other verb
(QUEUESTART, CONFIGRELOAD, the PBX's outbound OUT* verbs, ...) is counted as skipped.
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .base import Converted, envelope
from .pii import CallerHasher

SOURCE = "asterisk-queue-log"


@dataclass
class Entry:
    epoch: int
    callid: str
    queue: str
    agent: str
    verb: str
    params: list[str]
    caller: str | None  # caller id where the verb carries one
    ring_ms: int | None


def agent_id(channel: str) -> str | None:
    """``Agent/1127``, ``Local/1127@callback-agent``, ``SIP/1127-0000ab`` → ``1127``."""
    if not channel or channel.upper() == "NONE":
        return None
    name = channel.split("/", 1)[-1].split("@", 1)[0]
    return name.split("-", 1)[0] if channel.upper().startswith(("SIP/", "PJSIP/")) else name


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


class QueueLogMapper:
    """One queue_log entry → canonical events (state-free: each line maps on its own)."""

    def __init__(self, site_id: str, hasher: CallerHasher):
        self.site_id = site_id
        self.hash = hasher

    def map(self, e: Entry, event_id: str) -> tuple[list[dict], str | None]:
        """(events, skipped verb or None)."""
        t = e.epoch * 1000
        call = f"{self.site_id}:{e.callid}"
        queue = e.queue if e.queue and e.queue.upper() != "NONE" else None
        agent = agent_id(e.agent)
        ev = lambda suffix, kind, **f: envelope(f"{event_id}:{suffix}", kind, t, self.site_id, SOURCE, **f)
        v = e.verb
        if v == "ENTERQUEUE":
            return [ev("offered", "call.offered", call_id=call, queue_id=queue, caller_hash=self.hash(e.caller)),
                    ev("queued", "call.queued", call_id=call, queue_id=queue or "default")], None
        if v == "CONNECT" and agent:
            return [ev("ring", "call.agent_offered", call_id=call, queue_id=queue, agent_id=agent, answered=True,
                       ring_ms=e.ring_ms),
                    ev("answered", "call.answered", call_id=call, queue_id=queue, agent_id=agent)], None
        if v == "RINGNOANSWER" and agent:
            return [ev("ring", "call.agent_offered", call_id=call, queue_id=queue, agent_id=agent, answered=False,
                       ring_ms=e.ring_ms)], None
        if v in ("COMPLETEAGENT", "COMPLETECALLER"):
            return [ev("ended", "call.ended", call_id=call, agent_id=agent,
                       ended_by="agent" if v == "COMPLETEAGENT" else "caller")], None
        exits = {"ABANDON": "caller_hangup", "EXITWITHTIMEOUT": "timeout", "EXITEMPTY": "empty_queue",
                 "EXITWITHKEY": "key_pressed"}
        if v in exits:
            position = _int(e.params[1] if v == "EXITWITHKEY" and len(e.params) > 1 else (e.params or [None])[0])
            return [ev("left", "call.abandoned", call_id=call, queue_id=queue, stage="queue", reason=exits[v],
                       position=position)], None
        if v in ("BLINDTRANSFER", "ATTENDEDTRANSFER", "TRANSFER") and agent:
            target = next((p for p in e.params if p), None)
            return [ev("transfer", "call.transferred", call_id=call, from_agent_id=agent, to_external=target,
                       transfer_type="attended" if v == "ATTENDEDTRANSFER" else "blind"),
                    ev("ended", "call.ended", call_id=call, agent_id=agent, ended_by="agent")], None
        states = {"AGENTLOGIN": "logged_in", "AGENTCALLBACKLOGIN": "logged_in", "ADDMEMBER": "logged_in",
                  "AGENTLOGOFF": "logged_out", "AGENTCALLBACKLOGOFF": "logged_out", "REMOVEMEMBER": "logged_out",
                  "PAUSE": "not_ready", "PAUSEALL": "not_ready", "UNPAUSE": "available", "UNPAUSEALL": "available"}
        if v in states and agent:
            reason = (e.params[0] or None) if v.startswith("PAUSE") and e.params else None
            return [ev("state", "agent.state_changed", agent_id=agent, state=states[v], reason=reason,
                       queue_ids=[queue] if queue else None)], None
        return [], v


def _event_id(site_id: str, raw: str, seen: Counter) -> str:
    """Stable across replays: the line's content hash, plus its repeat count within the file."""
    digest = hashlib.sha1(raw.encode()).hexdigest()[:16]
    seen[digest] += 1
    return f"{site_id}:aql:{digest}:{seen[digest]}"


def read_pipe(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    """The standard pipe-separated queue_log."""
    mapper, seen = QueueLogMapper(site_id, hasher), Counter()
    for number, line in enumerate(lines, 1):
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        unit = Converted(f"{name}:{number}", raw)
        fields = raw.split("|")
        if len(fields) < 5 or not fields[0].isdigit() or not fields[4]:
            unit.error = "not a queue_log line (expected epoch|callid|queue|agent|event|params...)"
        else:
            params = fields[5:]
            verb = fields[4]
            entry = Entry(int(fields[0]), fields[1], fields[2], fields[3], verb, params,
                          caller=params[1] if verb == "ENTERQUEUE" and len(params) > 1 else None,
                          ring_ms=_int(params[0]) if verb == "RINGNOANSWER" and params else
                          (_int(params[2]) * 1000 if verb == "CONNECT" and len(params) > 2 and _int(params[2]) is not None else None))
            unit.events, unit.skipped = mapper.map(entry, _event_id(site_id, raw, seen))
        yield unit


TABLE_COLUMNS = ["uid", "date_time", "callid", "queue_name", "type", "event", "param1", "param2", "param3",
                 "entpos", "expos", "htime", "ttime", "time"]


def read_table(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    """The PBXware table export (CSV with a header row)."""
    mapper = QueueLogMapper(site_id, hasher)
    rows = csv.reader(lines)
    header = next(rows, None)
    if header != TABLE_COLUMNS:
        yield Converted(f"{name}:1", ",".join(header or []),
                        error=f"unexpected header; expected {','.join(TABLE_COLUMNS)}")
        return
    for row in rows:
        raw = _csv_line(row)
        unit = Converted(f"{name}:{rows.line_num}", raw)
        if len(row) != len(TABLE_COLUMNS) or not row[1].isdigit() or not row[0]:
            unit.error = f"expected {len(TABLE_COLUMNS)} columns with a numeric uid and date_time"
        else:
            r = dict(zip(TABLE_COLUMNS, row))
            verb = r["event"]
            ring = _int(r["htime"]) if verb == "RINGNOANSWER" else (
                _int(r["param3"]) * 1000 if verb == "CONNECT" and _int(r["param3"]) is not None else None)
            entry = Entry(int(r["date_time"]), r["callid"], r["queue_name"], r["type"], verb,
                          [r["param1"], r["param2"], r["param3"]],
                          caller=(r["param2"] or r["param1"]) if verb == "ENTERQUEUE" else None, ring_ms=ring)
            unit.events, unit.skipped = mapper.map(entry, f"{site_id}:aqlt:{r['uid']}")
        yield unit


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()
