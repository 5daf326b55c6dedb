"""Asterisk queue_log → canonical events.

Follows Asterisk's "Queue Logs" documentation (the queue_log verbs of app_queue, Asterisk 1.4 to 20)
and, for transfers, the lines app_queue writes in each version. Three readers feed one verb mapping:

- the standard pipe-separated file (``epoch|callid|queue|agent|verb|p1|p2|...``);
- the PBXware-flavoured table export (``uid,date_time,callid,queue_name,type,event,param1..3,entpos,
  expos,htime,ttime,time``) whose caller id sits in param1 and whose ring time (ms) sits in htime;
- Asterisk's realtime ``queue_log`` table (``time, callid, queuename, agent, event`` and ``data`` or
  ``data1..data5``; ``time`` in the PBX's local time).

Mapped: ENTERQUEUE (offered and queued; caller id in the 2nd parameter, hashed), CONNECT (answered; ring
time in the 3rd), RINGNOANSWER, COMPLETEAGENT/COMPLETECALLER (ended), ABANDON (caller_hangup),
EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY (the queue let it go), TRANSFER (1.4–11: exten|context|holdtime|
calltime), BLINDTRANSFER (12+: exten|context|holdtime|calltime|origpos), ATTENDEDTRANSFER (12+: BRIDGE|id,
APP|app, LINK|chan|chan or THREEWAY|..., then holdtime|calltime|origpos), AGENTLOGIN/AGENTLOGOFF,
AGENTCALLBACKLOGIN/AGENTCALLBACKLOGOFF, ADDMEMBER/REMOVEMEMBER and PAUSE/UNPAUSE (per queue),
PAUSEALL/UNPAUSEALL (every queue), and PBXware's outbound OUT* verbs (outbound calls: agent work, see
``QueueLogMapper._outbound``). Every other verb (DID, QUEUESTART, CONFIGRELOAD, OUTTRANSFER, ...) is
counted as skipped.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from schemas import plausible_ms

from .base import BoundedLines, Converted, envelope, invalid, too_large
from .lines import Oversized, bounded_lines
from .pii import CallerHasher

SOURCE = "asterisk-queue-log"


@dataclass
class Entry:
    at_ms: int
    callid: str
    queue: str
    agent: str
    verb: str
    params: list[str]
    caller: str | None  # caller id where the verb carries one
    ring_ms: int | None
    talk_ms: int | None = None  # PBXware's OUTANSWER: the outbound call's talk time (its ttime)
    position: int | None = None  # the queue position a call left from, where the layout has a column for it


def agent_id(channel: str) -> str | None:
    """``Agent/1127``, ``Local/1127@callback-agent``, ``SIP/1127-0000ab`` → ``1127``."""
    if not channel or channel.upper() == "NONE":
        return None
    name = channel.split("/", 1)[-1].split("@", 1)[0]
    return name.split("-", 1)[0] if channel.upper().startswith(("SIP/", "PJSIP/")) else name


def _int(text: str | None) -> int | None:
    """A number the adapter reads (seconds, milliseconds, a position), None when empty; a line whose
    number is not one (``abc``, ``-4``, ``inf``, other scripts' digits) is refused, not read as absent."""
    if text in (None, ""):
        return None
    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?", text):
        raise ValueError(f"{text[:40]!r} is not a number")
    return int(text.split(".")[0])


class QueueLogMapper:
    """queue_log entries → canonical events, in file order.

    A call keeps its call id across the queues it visits, and a transfer ends the transferring
    agent's segment, not the call: the same call id entering another queue (after BLINDTRANSFER, or
    after EXITWITHTIMEOUT to an overflow queue) is the call's next stint.

    An attended transfer into a queue has a consultation leg of its own call id: the agent's call into
    the target queue, whose caller id is the agent's extension. A call entering a queue from the
    extension of an agent who is on a call is such an internal call: agent work, never an offered
    customer call. When the agent's ATTENDEDTRANSFER follows — logged under the customer's call id, or
    (Asterisk 12+ after the legs are swapped) under the leg's — the leg is linked to the customer's
    call: the customer takes the leg's place in its queue (with the leg's own queue wait), and the
    agent who answered the leg talks to the customer from the transfer on; the leg is marked as a
    consultation, and its later lines (its end, a hang-up) belong to the customer's call. The
    customer's call is the agent's call whose connect time matches the line's calltime."""

    KEEP_S = 86_400  # calls waiting or connected longer than this are forgotten

    def __init__(self, site_id: str, hasher: CallerHasher):
        self.site_id = site_id
        self.hash = hasher
        self.calls_of: dict[str, list[tuple[int, str]]] = {}  # agent → [(connected epoch, call id)], on a call
        self.entered: dict[str, tuple[int, str | None]] = {}  # call id → (entered epoch, queue)
        self.answered: dict[str, tuple[int, str]] = {}  # call id → (connected epoch, agent)
        self.consults: dict[str, tuple[int, str]] = {}  # agent → (epoch, their latest internal call's id)
        self.alias: dict[str, tuple[int, str]] = {}  # a consultation leg's call id → (epoch, the customer's)

    def map(self, e: Entry, event_id: str) -> tuple[list[dict], str | None]:
        """(events, skipped verb or None)."""
        t, epoch = e.at_ms, e.at_ms // 1000
        callid = self.alias.get(e.callid, (0, e.callid))[1]
        call = f"{self.site_id}:{callid}"
        queue = e.queue if e.queue and e.queue.upper() != "NONE" else None
        agent = agent_id(e.agent)
        if agent and re.fullmatch(r"\+?\d{7,}", agent):  # a member reached at a phone number (Local/<mobile>)
            agent = f"phone-{self.hash(agent)[:12]}"
        ev = lambda suffix, kind, at=t, **f: envelope(f"{event_id}:{suffix}", kind, at, self.site_id, SOURCE, **f)
        v = e.verb
        if v == "ENTERQUEUE":
            self._remember(self.entered, e.callid, (epoch, queue), epoch)
            internal = bool(e.caller) and bool(self.calls_of.get(e.caller))  # an agent on a call calls a queue
            if internal:
                self._remember(self.consults, e.caller, (epoch, e.callid), epoch)
            return [ev("offered", "call.offered", call_id=call, queue_id=queue,
                       direction="internal" if internal else None, caller_hash=None if internal else self.hash(e.caller)),
                    ev("queued", "call.queued", call_id=call, queue_id=queue or "default")], None
        if v == "CONNECT" and agent:
            self.calls_of.setdefault(agent, []).append((epoch, callid))
            del self.calls_of[agent][:-4]
            self._remember(self.answered, e.callid, (epoch, agent), epoch)
            return [ev("ring", "call.agent_offered", call_id=call, queue_id=queue, agent_id=agent, answered=True,
                       ring_ms=e.ring_ms),
                    ev("answered", "call.answered", call_id=call, queue_id=queue, agent_id=agent)], None
        if v == "RINGNOANSWER" and agent:
            return [ev("ring", "call.agent_offered", call_id=call, queue_id=queue, agent_id=agent, answered=False,
                       ring_ms=e.ring_ms)], None
        if v in ("COMPLETEAGENT", "COMPLETECALLER"):
            if agent:
                self._hang_up(agent, callid)
            self._forget(e.callid)
            return [ev("ended", "call.ended", call_id=call, agent_id=agent,
                       ended_by="agent" if v == "COMPLETEAGENT" else "caller")], None
        exits = {"ABANDON": "caller_hangup", "EXITWITHTIMEOUT": "timeout", "EXITEMPTY": "empty_queue",
                 "EXITWITHKEY": "key_pressed"}
        if v in exits:
            self._forget(e.callid)
            position = e.position if e.position is not None else \
                _int(e.params[1] if v == "EXITWITHKEY" and len(e.params) > 1 else (e.params or [None])[0])
            return [ev("left", "call.abandoned", call_id=call, queue_id=queue, stage="queue", reason=exits[v],
                       position=position)], None
        if v in ("BLINDTRANSFER", "ATTENDEDTRANSFER", "TRANSFER") and agent:
            return self._transfer(e, callid, agent, ev), None
        if v.startswith("OUT") and agent and v != "OUTTRANSFER":
            return self._outbound(e, agent, ev), None
        states = {"AGENTLOGIN": "logged_in", "AGENTCALLBACKLOGIN": "logged_in", "ADDMEMBER": "logged_in",
                  "AGENTLOGOFF": "logged_out", "AGENTCALLBACKLOGOFF": "logged_out", "REMOVEMEMBER": "logged_out",
                  "PAUSE": "not_ready", "PAUSEALL": "not_ready", "UNPAUSE": "available", "UNPAUSEALL": "available"}
        if v in states and agent:
            reason = self.hash.scrub(e.params[0]) or None if v.startswith("PAUSE") and e.params else None
            every_queue = v in ("PAUSEALL", "UNPAUSEALL") or not queue
            return [ev("state", "agent.state_changed", agent_id=agent, state=states[v], reason=reason,
                       queue_ids=None if every_queue else [queue])], None
        return [], v

    def _transfer(self, e: Entry, callid: str, agent: str, ev) -> list[dict]:
        """TRANSFER (Asterisk ≤ 11: exten|context|holdtime|calltime), BLINDTRANSFER (12+: exten|context|
        holdtime|calltime|origpos) and ATTENDEDTRANSFER (12+: BRIDGE|bridge, APP|app, LINK|chan1|chan2 or
        THREEWAY|..., then holdtime|calltime|origpos). The agent's segment ends; the call goes on if its
        call id enters another queue, or in the attended transfer's consultation leg."""
        kind = "attended" if e.verb == "ATTENDEDTRANSFER" else "blind"
        target = None if kind == "attended" else next((p for p in e.params if p), None)
        customer = self._customer(agent, e)
        leg = None
        if customer is not None and customer != callid:  # logged under another call id: the consultation leg
            leg = e.callid
        elif kind == "attended" and agent in self.consults:  # under the customer's: the agent's latest internal call
            candidate = self.consults[agent][1]
            if candidate in self.entered or candidate in self.answered:
                leg = candidate
        customer = customer or callid
        self._hang_up(agent, customer)
        if leg is None:
            return [ev("transfer", "call.transferred", call_id=f"{self.site_id}:{customer}", from_agent_id=agent,
                       to_external=self.hash(target), transfer_type=kind)]
        return self._link(leg, customer, agent, kind, e.at_ms, ev)

    def _link(self, leg: str, customer_id: str, agent: str, kind: str, t: int, ev) -> list[dict]:
        """The consultation leg ``leg`` joins the customer's call at the transfer (time ``t``)."""
        self.consults.pop(agent, None)
        customer = f"{self.site_id}:{customer_id}"
        entered, answered = self.entered.pop(leg, None), self.answered.pop(leg, None)
        queue = entered[1] if entered else None
        out = [ev("transfer", "call.transferred", call_id=customer, from_agent_id=agent, transfer_type=kind,
                  to_queue_id=queue)]
        if entered is not None and queue:
            waited = (answered[0] - entered[0]) * 1000 if answered else None  # the leg's own wait in the queue
            out.append(ev("requeued", "call.queued", at=entered[0] * 1000 if waited is None else t - waited,
                          call_id=customer, queue_id=queue))
        if answered is not None and answered[1] != agent:  # that agent talks to the customer from now on
            out.append(ev("taken", "call.answered", call_id=customer, agent_id=answered[1], queue_id=queue))
            self.calls_of[answered[1]] = [(s, customer_id if c == leg else c) for s, c in self.calls_of.get(answered[1], [])]
        out.append(ev("consultation", "call.transferred", call_id=f"{self.site_id}:{leg}", from_agent_id=agent,
                      transfer_type=kind, consultation_of=customer))
        self._remember(self.alias, leg, (t // 1000, customer_id), t // 1000)
        return out

    def _customer(self, agent: str, e: Entry) -> str | None:
        """The call the agent transfers: of the calls they are on, the one whose connect time matches
        the line's calltime (its second-to-last parameter; the last for TRANSFER), else the latest."""
        calls = self.calls_of.get(agent) or []
        if not calls:
            return None
        try:
            calltime = _int(e.params[3] if e.verb == "TRANSFER" and len(e.params) > 3 else
                            e.params[-2] if len(e.params) >= 2 else None)
        except ValueError:  # a layout without it (an attended transfer's short forms): the latest call
            calltime = None
        if calltime is None:
            return calls[-1][1]
        connected = e.at_ms // 1000 - calltime
        return min(reversed(calls), key=lambda c: abs(c[0] - connected))[1]

    def _hang_up(self, agent: str, callid: str) -> None:
        calls = [c for c in self.calls_of.get(agent, []) if c[1] != callid]
        if calls:
            self.calls_of[agent] = calls
        else:
            self.calls_of.pop(agent, None)

    def _forget(self, callid: str) -> None:
        """A call id that ended or left: nothing of it is looked up again (its alias stays: a leg's
        last lines may follow)."""
        self.entered.pop(callid, None)
        self.answered.pop(callid, None)

    def _outbound(self, e: Entry, agent: str, ev) -> list[dict]:
        """PBXware's outbound verbs (agent work, not offered calls): OUTDIAL (the agent dials param1),
        OUTANSWER (written when the answered call ends, how in param2: COMPLETEAGENT, COMPLETECALLER or
        TRANSFER; its talk time in ``ttime``), OUTCANCEL, OUTCHANUNAVAIL, OUTCONGESTION, OUTBUSY,
        OUTNOANSWER (not reached). OUTTRANSFER (the transferred leg, after OUTANSWER|TRANSFER) is skipped."""
        call = f"{self.site_id}:{e.callid}"
        if e.verb == "OUTDIAL":
            number = e.params[0] if e.params else None
            return [ev("offered", "call.offered", call_id=call, direction="outbound", caller_hash=self.hash(number))]
        if e.verb == "OUTANSWER" and e.talk_ms is not None:
            how = e.params[1] if len(e.params) > 1 else ""
            end = (ev("transfer", "call.transferred", call_id=call, from_agent_id=agent, transfer_type="blind")
                   if how == "TRANSFER" else
                   ev("ended", "call.ended", call_id=call, agent_id=agent, ended_by="caller" if how == "COMPLETECALLER" else "agent"))
            return [ev("answered", "call.answered", at=e.at_ms - e.talk_ms, call_id=call, agent_id=agent), end]
        return [ev("left", "call.abandoned", call_id=call, stage="ringing", reason="caller_hangup")]

    def _remember(self, table: dict, key: str, value: tuple, epoch: int) -> None:
        table[key] = value
        if len(table) > 10_000:  # forget what a broken log never closed
            for stale in [k for k, v in table.items() if v[0] < epoch - self.KEEP_S]:
                del table[stale]


# The most parameters of the verbs whose parameters are read by position (Asterisk 1.4-20): a line with
# more had a '|' inside a field, and its positions cannot be trusted.
MAX_PARAMS = {"ENTERQUEUE": 3, "CONNECT": 3, "RINGNOANSWER": 1, "ABANDON": 3, "EXITWITHTIMEOUT": 3, "EXITEMPTY": 3,
              "EXITWITHKEY": 4, "TRANSFER": 5, "BLINDTRANSFER": 5, "ATTENDEDTRANSFER": 6}


def _entry(at_ms: int, callid: str, queue: str, agent: str, verb: str, params: list[str]) -> Entry:
    """An entry of the standard layout: ENTERQUEUE's caller id in its second parameter, CONNECT's ring
    time (s) in its third, RINGNOANSWER's ring time (ms) in its first, the position a call left from in
    the first (EXITWITHKEY: the second)."""
    given = len(params) - next((i for i, p in enumerate(reversed(params)) if p), len(params))  # without trailing empties
    if given > MAX_PARAMS.get(verb, given):
        raise ValueError(f"{verb} with {given} parameters (at most {MAX_PARAMS[verb]}): a field holds a '|'")
    connect_ring = _int(params[2]) if verb == "CONNECT" and len(params) > 2 else None
    left = params[1:2] if verb == "EXITWITHKEY" else params[:1] if verb in ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY") else []
    return Entry(at_ms, callid, queue, agent, verb, params,
                 caller=params[1] if verb == "ENTERQUEUE" and len(params) > 1 else None,
                 ring_ms=_int(params[0]) if verb == "RINGNOANSWER" and params else
                 (connect_ring * 1000 if connect_ring is not None else None),
                 position=_int(left[0]) if left else None)


def _map(unit: Converted, mapper: QueueLogMapper, entry: Callable[[], Entry], event_id: str) -> None:
    """The entry's events into ``unit``, or why they cannot be made: a number that is not one, a time out
    of range, an id with '|' or over 128 characters, an event the contract refuses. The line is refused
    whole, and before it is mapped, so a refused line leaves the mapper as it was."""
    try:
        e = entry()
        if not plausible_ms(e.at_ms):
            raise ValueError(f"time {e.at_ms // 1000} is implausible (before 2000, or in the future)")
        for name, value in (("callid", e.callid), ("queue", e.queue), ("agent", e.agent)):
            if "|" in value or len(value) > 128:
                raise ValueError(f"{name} {value[:40]!r} holds a '|' or is over 128 characters")
        events, skipped = mapper.map(e, event_id)
    except (ValueError, OverflowError) as exc:
        unit.error = f"unreadable queue_log entry: {exc}"
        return
    unit.error = invalid(events)
    if not unit.error:
        unit.events, unit.skipped = events, skipped


def _event_id(site_id: str, raw: str, seen: Counter) -> str:
    """Stable across replays: the line's content hash, plus its repeat count within the file."""
    digest = hashlib.sha1(raw.encode()).hexdigest()[:16]
    seen[digest] += 1
    return f"{site_id}:aql:{digest}:{seen[digest]}"


def read_pipe(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    """The standard pipe-separated queue_log (a line over CALLQA_MAX_EVENT_BYTES is a dead letter, not read)."""
    mapper, seen = QueueLogMapper(site_id, hasher), Counter()
    for number, line in enumerate(bounded_lines(lines, universal=True), 1):
        if isinstance(line, Oversized):
            yield too_large(f"{name}:{number}", line)
            continue
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        unit = Converted(f"{name}:{number}", raw)
        fields = raw.split("|")
        if len(fields) < 5 or not (fields[0].isascii() and fields[0].isdigit()) or not fields[4]:
            unit.error = "not a queue_log line (expected epoch|callid|queue|agent|event|params...)"
        else:
            entry = partial(_entry, int(fields[0]) * 1000, fields[1], fields[2], fields[3], fields[4], fields[5:])
            _map(unit, mapper, entry, _event_id(site_id, raw, seen))
        yield unit


TABLE_COLUMNS = ["uid", "date_time", "callid", "queue_name", "type", "event", "param1", "param2", "param3",
                 "entpos", "expos", "htime", "ttime", "time"]


def read_table(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    """The PBXware table export (CSV with a header row)."""
    mapper = QueueLogMapper(site_id, hasher)
    source = BoundedLines(lines, name)
    rows = csv.reader(source)
    header = next(rows, None)
    if header != TABLE_COLUMNS:
        yield from source.aside() or [Converted(f"{name}:1", ",".join(header or []),
                                                error=f"unexpected header; expected {','.join(TABLE_COLUMNS)}")]
        return
    for row in rows:
        if aside := source.aside():  # lines over the limit (read as empty: a row of its own, or inside a quoted field)
            yield from aside
            if not row:
                continue
        raw = _csv_line(row)
        unit = Converted(f"{name}:{rows.line_num}", raw)
        if len(row) != len(TABLE_COLUMNS) or not (row[1].isascii() and row[1].isdigit()) or not row[0]:
            unit.error = f"expected {len(TABLE_COLUMNS)} columns with a numeric uid and date_time"
        else:
            _map(unit, mapper, partial(_table_entry, dict(zip(TABLE_COLUMNS, row))), f"{site_id}:aqlt:{row[0]}")
        yield unit


def _table_entry(r: dict[str, str]) -> Entry:
    verb = r["event"]
    ring = _int(r["htime"]) if verb == "RINGNOANSWER" else (
        _int(r["param3"]) * 1000 if verb == "CONNECT" and _int(r["param3"]) is not None else None)
    talk = _int(r["ttime"]) if verb == "OUTANSWER" else None
    return Entry(int(r["date_time"]) * 1000, r["callid"], r["queue_name"], r["type"], verb,
                 [r["param1"], r["param2"], r["param3"]],
                 caller=(r["param2"] or r["param1"]) if verb == "ENTERQUEUE" else None, ring_ms=ring,
                 talk_ms=talk * 1000 if talk is not None else None,
                 position=_int(r["expos"]) or 0)  # param1 holds the caller id on every line here


REALTIME_COLUMNS = ("time", "callid", "queuename", "agent", "event")


def read_realtime(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher,
                  timezone: str = "UTC") -> Iterator[Converted]:
    """Asterisk's realtime queue_log table (``queue_log`` in a database through res_config_odbc/pgsql/
    mysql; Asterisk 1.8+, "Queue Logs" realtime), exported with a header row: ``time, callid,
    queuename, agent, event`` and either ``data`` (the parameters joined by ``|``) or ``data1`` ..
    ``data5`` (``queue_log_realtime_use_gmt`` off: ``time`` is the PBX's local time, ``YYYY-MM-DD
    HH:MM:SS[.ffffff]``, read in ``timezone``; an epoch second is read as it is). Other columns (an
    ``id``) are ignored; comma, tab or semicolon separated."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    source = BoundedLines(lines, name)
    first = next(source, "")
    delimiter = max((",", "\t", ";"), key=first.count)
    header = [h.strip().strip('"').lower() for h in next(csv.reader([first], delimiter=delimiter), [])]
    data = ["data"] if "data" in header else [f"data{i}" for i in range(1, 6) if f"data{i}" in header]
    if not all(c in header for c in REALTIME_COLUMNS) or not data:
        yield from source.aside() or [Converted(f"{name}:1", first.rstrip("\r\n"), error=(
            "unexpected header; expected time,callid,queuename,agent,event and data or data1..data5"))]
        return
    mapper, seen = QueueLogMapper(site_id, hasher), Counter()
    at = {c: header.index(c) for c in (*REALTIME_COLUMNS, *data)}
    rows = csv.reader(source, delimiter=delimiter)
    for row in rows:
        yield from source.aside()  # lines over the limit (read as empty lines)
        if not any(cell.strip() for cell in row):
            continue
        raw = delimiter.join(row)
        unit = Converted(f"{name}:{rows.line_num + 1}", raw)
        row = row + [""] * (len(header) - len(row))  # trailing empty data columns may be left off
        try:
            value = lambda c: row[at[c]].strip()
            text = value("time")
            if text.isascii() and text.isdigit():
                at_ms = int(text) * 1000
            else:
                stamp = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S")
                at_ms = int(stamp.replace(tzinfo=zone).timestamp() * 1000)
            params = value("data").split("|") if data == ["data"] else [value(c) for c in data]
            verb = value("event")
            if not verb:
                raise ValueError("no event")
        except (IndexError, ValueError) as exc:
            unit.error = f"not a queue_log row ({exc})"
        else:
            while params and not params[-1]:
                params.pop()
            entry = partial(_entry, at_ms, value("callid"), value("queuename"), value("agent"), verb, params)
            _map(unit, mapper, entry, _event_id(site_id, raw, seen))
        yield unit


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()
