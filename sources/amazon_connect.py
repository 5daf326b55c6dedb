"""Amazon Connect → canonical events: contact trace records (CTR) and agent event stream records.

CTRs arrive at least once: records are de-duplicated on ContactId, keeping the newest
LastUpdateTimestamp. Contacts are chained into calls as Connect's metrics count them (see
``call_id``): a transfer's contact continues the customer's call (transferred out on the first
agent, transferred in on the next), and a queued callback is not an abandon (callbacks queued) nor a
new incoming contact (callbacks handled). A CTR carries the hold total and count but not each hold's time: the holds are
laid end to end from the agent's connection, which keeps hold count and time exact.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime

import schemas
from schemas import plausible_ms

from .base import Converted, envelope, invalid, too_large
from .lines import Oversized, bounded_lines, json_values
from .pii import CallerHasher

CTR_SOURCE = "amazon-connect-ctr"
AGENT_SOURCE = "amazon-connect-agent-events"


def _ms(text: str | None) -> int | None:
    """Epoch ms of a record's time (ISO 8601 with its zone, e.g. ``2019-01-30T15:11:35Z``), None when
    absent; a time of another type, without a zone (read in no known clock) or implausible (before 2000,
    or in the future) refuses its record, whether or not an event is made at that time."""
    if text is None or text == "":
        return None
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"time {text[:40]!r} has no zone")
    ms = int(t.timestamp() * 1000)
    if not plausible_ms(ms):
        raise ValueError(f"time {text[:40]!r} is implausible (before 2000, or in the future): record refused whole")
    return ms


_CONTENT = re.compile(r"\S")


def records(lines: Iterable[str], name: str) -> Iterator[tuple[str, str | Oversized, dict | None, str | None]]:
    """(position, raw, record or None, error) for a JSON array, a single object, or JSON Lines, read with
    bounded memory (``sources.lines``): one record is held at a time, and one over CALLQA_MAX_EVENT_BYTES
    comes as an ``Oversized`` (its start and size; not parsed).

    The layout is told from the file's first line that is not blank: JSON by itself, it is the first
    record of JSON Lines — unless nothing follows it: then it is the file's one document (an array: its
    elements are the records, ``record N``). Not JSON by itself, it opens a pretty-printed document when it
    is ``{`` alone or starts with ``[`` (so does a first line over the limit that starts with ``[`` or
    ``{``: a one-line array is read record by record); else it is a broken line of JSON Lines."""
    limit = schemas.MAX_EVENT_BYTES
    pieces = iter(lines)
    head, exhausted = "", False

    def more() -> bool:
        nonlocal head, exhausted
        piece = next(pieces, None)
        exhausted = piece is None
        head += piece or ""
        return not exhausted

    while not (content := _CONTENT.search(head)) and more():
        pass
    if content is None:
        return  # nothing but blank lines
    start = content.start()
    while (end := head.find("\n", start)) < 0 and len(head) - start <= limit and more():
        pass
    if end < 0 and not exhausted:  # a first line over the limit
        document = head[start] in "[{"
    else:
        first = head[start:] if end < 0 else head[start:end]
        try:
            json.loads(first)
        except json.JSONDecodeError:
            document = first.strip() == "{" or first.lstrip().startswith("[")
        else:  # one record of JSON Lines, or the whole file
            while end >= 0 and not _CONTENT.search(head, end) and len(head) - end <= limit and more():
                pass
            document = end < 0 or (exhausted and not _CONTENT.search(head, end))
    rest = itertools.chain([head], pieces)
    if document:
        for n, (text, complete) in enumerate(json_values(rest), 1):
            position = f"{name}:record {n}"
            if isinstance(text, Oversized):
                yield position, text, None, text.reason
            elif not complete:
                yield position, text, None, "not valid JSON: the file ends inside this record"
            else:
                try:
                    yield position, text, json.loads(text), None
                except json.JSONDecodeError as exc:
                    yield position, text, None, f"not valid JSON: {exc.msg}"
        return
    # not splitlines(): U+2028 may be raw inside a JSON string
    for number, line in enumerate(bounded_lines(rest), 1):
        if isinstance(line, Oversized):
            yield f"{name}:{number}", line, None, line.reason
        elif line.strip():
            line = line.rstrip("\r\n")
            try:
                yield f"{name}:{number}", line, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield f"{name}:{number}", line, None, f"not valid JSON: {exc.msg}"


def _name(arn_or_obj) -> str | None:
    if isinstance(arn_or_obj, dict):
        return arn_or_obj.get("Name") or _name(arn_or_obj.get("ARN"))
    return arn_or_obj.rsplit("/", 1)[-1] if isinstance(arn_or_obj, str) and arn_or_obj else None


CONTINUES = ("TRANSFER", "QUEUE_TRANSFER")  # contacts that carry on the customer's call of the previous one
LEFT_FOR = {"TRANSFER": "transferred", "QUEUE_TRANSFER": "transferred", "CALLBACK": "callback"}  # the previous one left its queue for it
AGENT_DIALLED = ("OUTBOUND", "API", "EXTERNAL_OUTBOUND")


def call_id(r: dict, calls: dict[str, str] | None = None) -> str:
    """The call a contact belongs to. A TRANSFER or QUEUE_TRANSFER contact carries on the customer's
    call of its PreviousContactId (as Connect's own metrics count one customer contact, with
    transferred out/in): it gets that contact's call (``calls``, when seen), else InitialContactId,
    else PreviousContactId. Every other contact (INBOUND, OUTBOUND, CALLBACK, API, ...) is a call of
    its own."""
    if r.get("InitiationMethod") in CONTINUES and (r.get("PreviousContactId") or r.get("InitialContactId")):
        previous = r.get("PreviousContactId")
        return (calls or {}).get(previous) or r.get("InitialContactId") or previous
    return r["ContactId"]


def convert_ctr(r: dict, site_id: str, hasher: CallerHasher, call: str | None = None,
                following: dict | None = None, previous_call: str | None = None) -> list[dict]:
    """One contact record → canonical events of its call (``call``: see ``call_id``).

    A contact that left its queue unanswered with a NextContactId did not abandon: it left for a
    callback (the next contact is a CALLBACK) or was moved on (TRANSFER, QUEUE_TRANSFER). The
    next contact says which, so that leave is written by whichever of the two records is read: by the
    next contact (for ``previous_call``), or by this one when ``following`` (the next record) is known;
    both write the same event, at the next contact's initiation."""
    contact = r["ContactId"]
    call = call or call_id(r)
    ev = lambda kind, t, suffix=None, **f: envelope(f"connect:{contact}:{suffix or kind}", kind, t, site_id,
                                                    CTR_SOURCE, call_id=call, **f)
    queue = r.get("Queue") or None
    agent = r.get("Agent") or None
    queue_id = _name(queue) if queue else None
    started, ended = _ms(r["InitiationTimestamp"]), _ms(r.get("DisconnectTimestamp"))
    method = r.get("InitiationMethod")
    caller = (r.get("CustomerEndpoint") or {}).get("Address")
    events = []
    if method in LEFT_FOR and r.get("PreviousContactId"):  # the previous contact left its queue for this one
        events.append(_left_for(r, site_id, previous_call or call))
    if method not in CONTINUES or call == contact:  # the customer's call starts here
        direction = "outbound" if method in AGENT_DIALLED else "callback" if method == "CALLBACK" else "inbound"
        events.append(ev("call.offered", started, queue_id=queue_id, direction=direction, caller_hash=hasher(caller)))
    if queue and queue.get("EnqueueTimestamp") is not None:
        events.append(ev("call.queued", _ms(queue["EnqueueTimestamp"]), queue_id=queue_id))
    connected = _ms(agent.get("ConnectedToAgentTimestamp")) if agent else None
    if connected is None:
        if r.get("NextContactId") and queue:
            if following is not None and following.get("InitiationMethod") in LEFT_FOR:
                events.append(_left_for(following, site_id, call))
            return events  # else the next contact's record writes the leave when it comes
        left = _ms((queue or {}).get("DequeueTimestamp")) or ended or started
        return events + [ev("call.abandoned", left, queue_id=queue_id, stage="queue" if queue else "ivr")]
    agent_id = agent.get("Username") or _name(agent.get("ARN")) or "unknown"
    events.append(ev("call.answered", connected, queue_id=queue_id, agent_id=agent_id))
    holds, hold_s = agent.get("NumberOfHolds") or 0, agent.get("CustomerHoldDuration") or agent.get("HoldDuration") or 0
    if type(holds) is not int or not 0 <= holds <= 1000:
        raise ValueError(f"NumberOfHolds {str(holds)[:40]!r} is not a count of holds")
    t = connected
    for i in range(holds):
        share = round(hold_s * 1000 / holds)
        events += [ev("call.held", t, f"hold{i}", agent_id=agent_id),
                   ev("call.resumed", t + share, f"resume{i}", agent_id=agent_id)]
        t += share
    if r.get("TransferCompletedTimestamp"):
        target = (r.get("TransferredToEndpoint") or {}).get("Address")
        events.append(ev("call.transferred", _ms(r["TransferCompletedTimestamp"]), from_agent_id=agent_id,
                         to_external=hasher(target), transfer_type="blind"))
    acw_start, acw_end = _ms(agent.get("AfterContactWorkStartTimestamp")), _ms(agent.get("AfterContactWorkEndTimestamp"))
    events.append(ev("call.ended", acw_start or ended or connected, agent_id=agent_id))
    if acw_end:
        events.append(ev("call.wrapup_ended", acw_end, agent_id=agent_id))
    return events


def _left_for(follower: dict, site_id: str, previous_call: str) -> dict:
    """The previous contact's leave of its queue, made by (or for) the contact that followed it."""
    previous = follower["PreviousContactId"]
    return envelope(f"connect:{previous}:call.abandoned", "call.abandoned", _ms(follower["InitiationTimestamp"]),
                    site_id, CTR_SOURCE, call_id=previous_call, stage="queue",
                    reason=LEFT_FOR[follower["InitiationMethod"]])


def _answer(attributes: dict, name: str, low: int, high: int) -> int | None:
    """A survey answer from a contact attribute (Connect keeps attributes as strings): a whole number from
    ``low`` to ``high``, None when the attribute is absent or empty; anything else refuses the record."""
    value = attributes.get(name)
    if value is None or value == "":
        return None
    number = int(str(value).strip())
    if not low <= number <= high:
        raise ValueError(f"contact attribute {name} {str(value)[:20]!r} is not a whole number from {low} to {high}")
    return number


YES_NO = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}


def survey(r: dict, site_id: str, call: str) -> list[dict]:
    """The post-call survey a contact carries, as ``survey.completed``. Connect's contact records have no
    survey field: a post-contact survey flow (after the agent leaves, "Get customer input" with DTMF or Lex)
    stores the answers as user-defined contact attributes ("Set contact attributes"), and Connect delivers
    the record again with them. Read from the attributes ``csat`` (1-5; without it there is no survey),
    ``nps`` (0-10) and ``survey_resolved`` (true/false, yes/no, 1/0); an answer that cannot be read leaves
    the survey out (the record is also kept as a dead letter, with the reason) and the call in. Its time: the contact's disconnect (the survey flow ends the contact), else its last update;
    its agent, the contact's (when one connected); its queue, the contact's."""
    attributes = r.get("Attributes") or {}
    csat = _answer(attributes, "csat", 1, 5)
    if csat is None:
        return []
    resolved = attributes.get("survey_resolved")
    if resolved not in (None, ""):
        if str(resolved).strip().lower() not in YES_NO:
            raise ValueError(f"contact attribute survey_resolved {str(resolved)[:20]!r} is not yes or no")
        resolved = YES_NO[str(resolved).strip().lower()]
    else:
        resolved = None
    agent, queue = r.get("Agent") or {}, r.get("Queue") or None
    agent_id = (agent.get("Username") or _name(agent.get("ARN"))) if agent.get("ConnectedToAgentTimestamp") else None
    at = _ms(r.get("DisconnectTimestamp")) or _ms(r.get("LastUpdateTimestamp")) or _ms(r["InitiationTimestamp"])
    contact = r["ContactId"]
    return [envelope(f"connect:{contact}:survey.completed", "survey.completed", at, site_id, CTR_SOURCE,
                     survey_id=f"connect:{contact}", call_id=call, agent_id=agent_id,
                     queue_id=_name(queue) if queue else None, csat=csat, nps=_answer(attributes, "nps", 0, 10),
                     resolved=resolved)]


def read_ctr(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    """Contact records of a file: the newest version of each contact (LastUpdateTimestamp), in the
    order the contacts were initiated, so that a transfer's contact finds its customer's call."""
    newest: dict[str, tuple[str, str, dict]] = {}
    for position, raw, record, error in records(lines, name):
        if isinstance(raw, Oversized):
            yield too_large(position, raw)
            continue
        if error or not isinstance(record, dict) or not isinstance(record.get("ContactId"), str) \
                or "InitiationTimestamp" not in record:
            yield Converted(position, raw, error=error or "not a contact trace record (no ContactId/InitiationTimestamp)")
            continue
        kept = newest.get(record["ContactId"])
        if kept and str(kept[2].get("LastUpdateTimestamp") or "") >= str(record.get("LastUpdateTimestamp") or ""):
            yield Converted(position, raw, skipped="superseded CTR")
            continue
        if kept:
            yield Converted(kept[0], kept[1], skipped="superseded CTR")
        newest[record["ContactId"]] = (position, raw, record)
    calls: dict[str, str] = {}
    for position, raw, record in sorted(newest.values(), key=lambda k: str(k[2].get("InitiationTimestamp"))):
        unit = Converted(position, raw)
        try:
            calls[record["ContactId"]] = call = call_id(record, calls)
            following = newest.get(record.get("NextContactId") or "")
            previous = record.get("PreviousContactId")
            unit.events = convert_ctr(record, site_id, hasher, call, following[2] if following else None,
                                      call if record.get("InitiationMethod") in CONTINUES else calls.get(previous, previous))
            try:
                unit.events += survey(record, site_id, call)
                left_out = None
            except ValueError as exc:  # the customer's answer, not the contact: keep the call
                left_out = f"post-call survey left out, the contact kept: {exc}"
            unit.error = invalid(unit.events)
            if unit.error:
                unit.events = []
            elif left_out:
                unit.error = left_out  # the record goes to the dead letters too, with its events sent
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            unit.error = f"unreadable contact trace record: {exc!r}"
        yield unit


AGENT_STATES = {"available": "available", "offline": "logged_out"}


def convert_agent_event(r: dict, site_id: str) -> tuple[list[dict], str | None]:
    kind = r["EventType"]
    if kind == "HEART_BEAT":
        return [], "HEART_BEAT"
    if kind not in ("LOGIN", "LOGOUT", "STATE_CHANGE"):
        raise ValueError(f"unknown EventType {str(kind)[:40]!r}")
    configuration = (r.get("CurrentAgentSnapshot") or r.get("PreviousAgentSnapshot") or {}).get("Configuration") or {}
    agent = configuration.get("Username") or _name(r["AgentARN"])  # as contact records name agents
    t = _ms(r["EventTimestamp"])
    ev = lambda state, reason=None: [envelope(f"connect-agent:{r['EventId']}", "agent.state_changed", t, site_id,
                                              AGENT_SOURCE, agent_id=agent, state=state, reason=reason)]
    if kind == "LOGIN":
        return ev("logged_in"), None
    if kind == "LOGOUT":
        return ev("logged_out"), None
    snapshot = r.get("CurrentAgentSnapshot") or {}
    contacts = snapshot.get("Contacts") or []
    if any(c.get("State") == "CONNECTED" for c in contacts):
        return ev("on_call"), None
    if any(c.get("State") in ("ENDED", "MISSED", "ERROR") for c in contacts):
        return ev("after_call_work"), None
    status = ((snapshot.get("AgentStatus") or {}).get("Name") or "").strip()
    state = AGENT_STATES.get(status.lower(), "not_ready")
    return ev(state, status if state == "not_ready" else None), None


def read_agent_events(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    for position, raw, record, error in records(lines, name):
        if isinstance(raw, Oversized):
            yield too_large(position, raw)
            continue
        unit = Converted(position, raw, error=error)
        if not error:
            try:
                unit.events, unit.skipped = convert_agent_event(record, site_id)
                unit.error = invalid(unit.events)
                if unit.error:
                    unit.events = []
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
                unit.error = f"unreadable agent event record: {exc!r}"
        yield unit
