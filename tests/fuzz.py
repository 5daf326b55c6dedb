"""A seeded corpus of invalid input: lines that must each become one dead letter and change nothing else.

``invalid_lines(valid, n, seed)`` mutates valid canonical events into ``n`` lines of the kinds that have
broken runs before: truncated JSON, wrong types, huge strings, unknown types, control characters in
enumerations, far-future and far-past times, key separators inside ids, dates that match the pattern
but are not dates, paths as identifiers, missing fields, non-objects.

For each ingest format, ``valid_source(fmt, size, seed)`` makes a valid file and
``invalid_source_lines(source, n, seed)`` mutates its lines into ``n`` lines its adapter must refuse;
``conflicting_versions`` makes older contact records with other content (superseded, not stored).

Used by ``tests/test_fuzz.py`` (a slice in CI) and ``bench/fuzz.py`` (10,000 lines per format).
"""
from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sources.asterisk import MAX_PARAMS

ID_FIELDS = ("site_id", "queue_id", "agent_id")


def _mutations(rng: random.Random, event: dict) -> list:
    e = dict(event)
    time = e["event_time"]
    missing = rng.choice(["event_id", "site_id", "event_time", "event_type"])
    out = [
        lambda: json.dumps(e)[: rng.randrange(1, len(json.dumps(e)) - 1)],  # truncated
        lambda: json.dumps(e | {"event_time": rng.choice([0, 1.5, None, True, [], {}])}),  # wrong type
        lambda: json.dumps(e | {"schema_version": rng.choice(["1", 2, -1, None])}),
        lambda: json.dumps(e | {"event_id": "x" * rng.choice([300, 5_000, 100_000])}),  # huge string
        lambda: json.dumps(e | {"event_type": rng.choice(["call.exploded", "", "CALL.OFFERED", "call.offered\x00"])}),
        lambda: json.dumps(e | {"event_time": rng.choice(["2100-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                                                          "1970-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z"])}),
        lambda: json.dumps(e | {"event_time": time[:5] + rng.choice(["02-30", "13-01", "00-10", "04-31"]) + time[10:]}),
        lambda: json.dumps(e | {"event_time": time.replace("T", " ").rstrip("Z")}),  # not the contract's form
        lambda: json.dumps(e | {"site_id": rng.choice(["a|b", "|", "S|x|y"])}),  # the key separator
        lambda: json.dumps({k: v for k, v in e.items() if k != missing}),
        lambda: json.dumps(e | {"unexpected": "field"}),
        lambda: json.dumps(rng.choice([[], "text", 42, None, [e]])),  # not an object
        lambda: "\ufeff{" + "é" * rng.randrange(1, 50),
    ]
    if "queue_id" in e:
        out.append(lambda: json.dumps(e | {"queue_id": rng.choice(["q|1", "", "x" * 300])}))
    if "agent_id" in e:
        out.append(lambda: json.dumps(e | {"agent_id": rng.choice(["a|1", "", 7, ["a1"]])}))
    return out


def evaluation_paths(rng: random.Random) -> str:
    """An evaluation naming its form by a path."""
    return json.dumps({"event_id": f"fuzz-eval-{rng.random()}", "event_type": "evaluation.submitted", "schema_version": 1,
                       "event_time": "2024-03-04T12:00:00.000Z", "site_id": "A", "source": "fuzz",
                       "evaluation_id": "ev-fuzz", "call_id": "c1", "agent_id": "a1", "evaluator_id": "qa-1",
                       "kind": "human", "form_id": rng.choice(["../../etc", "hotline-100/../x", "/tmp"]),
                       "form_version": rng.choice(["../1", "1/../../x", "..", "1.0"]), "answers": {}})


def invalid_lines(valid: list[dict], n: int, seed: int) -> list[str]:
    """``n`` invalid lines made from ``valid`` events (seeded: the same corpus every run)."""
    rng = random.Random(seed)
    lines = []
    while len(lines) < n:
        if rng.random() < 0.03:
            lines.append(evaluation_paths(rng))
            continue
        event = rng.choice(valid)
        lines.append(rng.choice(_mutations(rng, event))())
    return [line.replace("\n", " ") for line in lines]


def spread(lines: list[str], bad: list[str]) -> tuple[list[str], set[str]]:
    """``bad`` spread evenly through ``lines``; also the 1-based positions of the bad lines."""
    mixed, positions = [], set()
    for i, line in enumerate(lines):
        mixed.append(line)
        for _ in range(len(bad) * (i + 1) // len(lines) - len(bad) * i // len(lines)):
            mixed.append(bad[len(positions)])
            positions.add(str(len(mixed)))
    return mixed, positions


# ---- the ingest formats ---------------------------------------------------------------------------
# For each `callqa ingest --format`: a seeded valid file (``valid_source``) and a seeded mutator of its
# lines into lines the adapter must refuse (``invalid_source_lines``): each one dead letter at its file
# and line, nothing else changed. Only what an adapter documents it refuses is made: e.g. a column an
# adapter does not read (the table export's ``time``, a PHANTOM row's times) is never the broken one.

DAY0 = 1_709_539_200  # 2024-03-04 08:00:00 UTC


@dataclass
class Source:
    """A valid input file of one format: ``head`` (header lines, kept first) then ``lines`` (one unit each)."""

    fmt: str
    head: list[str]
    lines: list[str]
    args: tuple[str, ...] = ()  # more `callqa ingest` options

    def text(self, lines: list[str] | None = None) -> str:
        return "\n".join([*self.head, *(self.lines if lines is None else lines)]) + "\n"


def _queue_log_script(rng: random.Random, calls: int) -> list[tuple]:
    """(epoch, callid, queue, agent channel, verb, params (pipe layout), extra for the table export)
    in time order: members joining and pausing, calls answered, abandoned, timed out, left with a key or
    an empty queue, blind-transferred to a second queue, outbound calls (PBXware), skipped verbs."""
    agents = [f"{rng.choice(['PJSIP', 'SIP', 'Agent'])}/{2001 + i}" for i in range(6)]
    queues = ["support", "sales", "billing"]
    out = [(DAY0 - 600, "NONE", "NONE", "NONE", "QUEUESTART", [""], {})]
    for a in agents:
        for q in queues:
            out.append((DAY0 - 300, "NONE", q, a, "ADDMEMBER", [""], {}))
    t = DAY0
    for n in range(1, calls + 1):
        t += rng.randrange(20, 120)
        callid, caller, queue = f"{t}.{n}", f"555{rng.randrange(10**7):07d}", rng.choice(queues)
        ext = {"caller": caller}
        out.append((t, callid, queue, "NONE", "ENTERQUEUE", ["", caller, "1"], ext | {"entpos": 1}))
        kind = rng.choices(["answered", "abandon", "timeout", "key", "empty", "transfer", "outbound"],
                           [50, 12, 5, 3, 2, 8, 6])[0]
        wait = rng.randrange(2, 90)
        if kind == "outbound":
            out.pop()
            a = rng.choice(agents)
            talk = rng.randrange(20, 400)
            out.append((t, callid, "NONE", a, "OUTDIAL", [caller, "", ""], ext))
            out.append((t + talk + 5, callid, "NONE", a, "OUTANSWER", [caller, "COMPLETEAGENT", ""],
                        ext | {"htime": 5, "ttime": talk}))
        elif kind in ("abandon", "timeout", "key", "empty"):
            verb = {"abandon": "ABANDON", "timeout": "EXITWITHTIMEOUT", "key": "EXITWITHKEY", "empty": "EXITEMPTY"}[kind]
            params = ["5", "1", "1", str(wait)] if verb == "EXITWITHKEY" else ["1", "1", str(wait)]
            out.append((t + wait, callid, queue, "NONE", verb, params, ext | {"expos": 1, "htime": wait}))
        else:
            a, b = rng.sample(agents, 2)
            if rng.random() < 0.3:
                out.append((t + wait - 1, callid, queue, b, "RINGNOANSWER", [str(rng.randrange(1, 15) * 1000)],
                            ext | {"htime": 15000}))
            ring, talk = rng.randrange(1, 12), rng.randrange(30, 600)
            out.append((t + wait, callid, queue, a, "CONNECT", [str(wait), f"{t + wait}.{n}9", str(ring)],
                        ext | {"htime": wait}))
            end = t + wait + talk
            if kind == "transfer":
                second = rng.choice([q for q in queues if q != queue])
                out.append((end, callid, queue, a, "BLINDTRANSFER", ["600", "from-internal", str(wait), str(talk), "1"],
                            ext | {"htime": wait, "ttime": talk}))
                out.append((end + 1, callid, second, "NONE", "ENTERQUEUE", ["", caller, "1"], ext | {"entpos": 1}))
                wait2, talk = rng.randrange(2, 60), rng.randrange(30, 600)
                out.append((end + 1 + wait2, callid, second, b, "CONNECT", [str(wait2), f"{end}.{n}8", "3"],
                            ext | {"htime": wait2}))
                end += 1 + wait2 + talk
                a, queue = b, second
            verb = rng.choice(["COMPLETEAGENT", "COMPLETECALLER"])
            out.append((end, callid, queue, a, verb, [str(wait), str(talk), "1"], ext | {"htime": wait, "ttime": talk}))
        if n % 40 == 20:
            a = rng.choice(agents)
            out.append((t + 7, "NONE", rng.choice(queues), a, "PAUSE", [rng.choice(["lunch", "coaching", "break"])], {}))
            out.append((t + 7 + rng.randrange(300, 1800), "NONE", rng.choice(queues), a, "UNPAUSE", [""], {}))
        if n % 150 == 75:
            out.append((t + 3, "NONE", "NONE", "NONE", "CONFIGRELOAD", [""], {}))
    end = max(line[0] for line in out) + 60
    for a in agents:
        for q in queues:
            out.append((end, "NONE", q, a, "REMOVEMEMBER", [""], {}))
    return sorted(out, key=lambda line: line[0])


def _local(epoch: int, zone: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


TABLE_HEAD = "uid,date_time,callid,queue_name,type,event,param1,param2,param3,entpos,expos,htime,ttime,time"


def _table_row(uid: int, line: tuple) -> list[str]:
    """A line of the script as PBXware exports it: the caller id in param1, ring and talk in htime and ttime."""
    t, callid, queue, agent, verb, params, ext = line
    if verb in ("ENTERQUEUE", "ABANDON", "EXITWITHTIMEOUT", "EXITWITHKEY", "EXITEMPTY", "COMPLETEAGENT",
                "COMPLETECALLER", "RINGNOANSWER"):
        params = [ext["caller"], "", ""]
    elif verb == "PAUSE":
        params = [params[0], "", ""]
    elif verb not in ("CONNECT", "OUTDIAL", "OUTANSWER", "BLINDTRANSFER"):
        params = ["", "", ""]
    params = (params + ["", "", ""])[:3]
    return [str(uid), str(t), callid, queue, agent, verb, *params, str(ext.get("entpos", 0)), str(ext.get("expos", 0)),
            str(ext.get("htime", 0)), str(ext.get("ttime", 0)), _local(t, "UTC")]


REALTIME_ZONE = "Europe/Berlin"


def valid_source(fmt: str, size: int = 300, seed: int = 1) -> Source:
    """A valid file of ``fmt`` with about ``size`` lines (records, rows), the same for a seed."""
    rng = random.Random(seed)
    if fmt.startswith("asterisk"):
        script = _queue_log_script(rng, size // 4)
        if fmt == "asterisk-queue-log-table":
            return Source(fmt, [TABLE_HEAD], [",".join(_table_row(uid, line)) for uid, line in enumerate(script, 1)])
        script = [line for line in script if not line[4].startswith("OUT")]  # PBXware's outbound verbs: its table only
        if fmt == "asterisk-queue-log":
            return Source(fmt, [], [f"{t}|{c}|{q}|{a}|{v}|{'|'.join(p)}" for t, c, q, a, v, p, _ in script])
        # the realtime table: local time, the parameters in one `data` column joined by |
        return Source(fmt, ["id,time,callid,queuename,agent,event,data"],
                      [f"{i},{_local(t, REALTIME_ZONE)},{c},{q},{a},{v},{'|'.join(p).rstrip('|')}"
                       for i, (t, c, q, a, v, p, _) in enumerate(script, 1)], ("--timezone", REALTIME_ZONE))
    if fmt == "amazon-connect-ctr":
        return Source(fmt, [], [json.dumps(r) for r in _contact_records(rng, size)])
    if fmt == "amazon-connect-agent-events":
        return Source(fmt, [], [json.dumps(r) for r in _agent_events(rng, size)])
    if fmt == "anonymous-bank":
        return Source(fmt, [BANK_HEAD], _bank_rows(rng, size))
    raise ValueError(fmt)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _contact(contact: str, method: str, start: int, end: int, queue=None, agent=None, previous=None, following=None,
             transfer=None, holds=(0, 0), acw=0, updated=60) -> dict:
    """A contact record (format 2017-03-10) as Connect writes it."""
    record = {"AWSAccountId": "000000000000", "AWSContactTraceRecordFormatVersion": "2017-03-10", "Channel": "VOICE",
              "ContactId": contact, "InitialContactId": previous, "PreviousContactId": previous,
              "NextContactId": following, "InitiationMethod": method, "InitiationTimestamp": _iso(start),
              "ConnectedToSystemTimestamp": _iso(start), "DisconnectTimestamp": _iso(end),
              "LastUpdateTimestamp": _iso(end + acw + updated), "Attributes": {},
              "CustomerEndpoint": {"Address": f"+44555{zlib.crc32(contact.encode()) % 10**7:07d}", "Type": "TELEPHONE_NUMBER"},
              "SystemEndpoint": {"Address": "+441462413867", "Type": "TELEPHONE_NUMBER"},
              "Queue": None, "Agent": None, "TransferCompletedTimestamp": _iso(transfer), "TransferredToEndpoint": None}
    if queue:
        record["Queue"] = {"ARN": f"arn:aws:connect:eu-west-2:0:instance/i/queue/{queue[0].lower()}-id", "Name": queue[0],
                           "EnqueueTimestamp": _iso(queue[1]), "DequeueTimestamp": _iso(queue[2]), "Duration": queue[2] - queue[1]}
    if agent:
        record["Agent"] = {"ARN": f"arn:aws:connect:eu-west-2:0:instance/i/agent/{agent[0]}-id", "Username": agent[0],
                           "ConnectedToAgentTimestamp": _iso(agent[1]), "NumberOfHolds": holds[0],
                           "CustomerHoldDuration": holds[1], "AfterContactWorkStartTimestamp": _iso(end),
                           "AfterContactWorkEndTimestamp": _iso(end + acw) if acw else None, "AfterContactWorkDuration": acw}
    return record


def _contact_records(rng: random.Random, size: int) -> list[dict]:
    """Inbound calls answered (some held) or abandoned in the queue or the IVR, transfers to an agent and
    to a queue, queued callbacks, outbound calls; some records delivered twice, or first in an older version."""
    out, t, n = [], DAY0, 0
    agents, queues = [f"agent-{i:02d}" for i in range(1, 7)], ["Sales", "Billing", "Tech"]
    while len(out) < size:
        t += rng.randrange(20, 150)
        n += 1
        c, q, a = f"c{n:05d}-{rng.randrange(16**8):08x}", rng.choice(queues), rng.choice(agents)
        wait, talk = rng.randrange(2, 90), rng.randrange(30, 600)
        kind = rng.choices(["answered", "abandoned", "ivr", "transfer", "queue_transfer", "callback", "outbound"],
                           [50, 12, 4, 6, 5, 4, 5])[0]
        if kind == "answered":
            holds = rng.choice([(0, 0), (0, 0), (1, rng.randrange(5, 90)), (2, rng.randrange(10, 120))])
            out.append(_contact(c, "INBOUND", t, t + 5 + wait + talk, (q, t + 5, t + 5 + wait), (a, t + 6 + wait),
                                holds=holds, acw=rng.randrange(0, 60)))
        elif kind == "abandoned":
            out.append(_contact(c, "INBOUND", t, t + 5 + wait, (q, t + 5, t + 5 + wait)))
        elif kind == "ivr":
            out.append(_contact(c, "INBOUND", t, t + rng.randrange(5, 60)))
        elif kind == "transfer":
            b, end = rng.choice([x for x in agents if x != a]), t + 5 + wait + talk
            out.append(_contact(c, "INBOUND", t, end, (q, t + 5, t + 5 + wait), (a, t + 6 + wait), following=f"{c}-t",
                                transfer=end, acw=10))
            out.append(_contact(f"{c}-t", "TRANSFER", end, end + 4 + talk, agent=(b, end + 4), previous=c, acw=20))
        elif kind == "queue_transfer":
            q2 = rng.choice([x for x in queues if x != q])
            out.append(_contact(c, "INBOUND", t, t + 5 + wait, (q, t + 5, t + 5 + wait), following=f"{c}-q"))
            s = t + 5 + wait
            out.append(_contact(f"{c}-q", "QUEUE_TRANSFER", s, s + 20 + talk, (q2, s, s + 19), (a, s + 20), previous=c))
        elif kind == "callback":
            out.append(_contact(c, "INBOUND", t, t + 5 + wait, (q, t + 5, t + 5 + wait), following=f"{c}-b"))
            s = t + 5 + wait
            out.append(_contact(f"{c}-b", "CALLBACK", s, s + 300 + talk, ("Callbacks", s + 100, s + 290), (a, s + 300),
                                previous=c, acw=15))
        else:
            out.append(_contact(c, "OUTBOUND", t, t + 20 + talk, agent=(a, t + 20), acw=rng.randrange(0, 60)))
        if rng.random() < 0.05:  # at least once: the same record again, or an older version before it
            again = dict(out[-1])
            if rng.random() < 0.5:
                again["LastUpdateTimestamp"] = _iso(t + 1)
                again["Agent"] = None
                out.insert(len(out) - 1, again)
            else:
                out.append(again)
    return out


def _agent_events(rng: random.Random, size: int) -> list[dict]:
    """Agent event stream records (2017-10-01): log-in, status changes, contacts connected and ended
    (after-call work), heart beats, log-out."""
    out, names = [], [f"agent-{i:02d}" for i in range(1, 7)]
    per_agent = max(4, size // len(names))
    for i, name in enumerate(names):
        arn = f"arn:aws:connect:eu-west-2:0:instance/i/agent/{i:04d}-{rng.randrange(16**8):08x}"
        t = DAY0 - 300 + i * 7
        for k in range(per_agent):
            if k == 0:
                kind, status, contacts = "LOGIN", "Offline", []
            elif k == per_agent - 1:
                kind, status, contacts = "LOGOUT", "Offline", []
            else:
                kind = rng.choices(["STATE_CHANGE", "HEART_BEAT"], [5, 1])[0]
                status = rng.choices(["Available", "Lunch", "Break", "Training"], [6, 1, 1, 1])[0]
                contacts = rng.choice([[], [], [{"State": "CONNECTED"}], [{"State": "ENDED"}], [{"State": "MISSED"}]])
                contacts = [dict(c, ContactId=f"ct-{i}-{k}", Channel="VOICE", InitiationMethod="INBOUND") for c in contacts]
            t += rng.randrange(30, 600)
            stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rng.randrange(1000):03d}Z"
            snapshot = {"AgentStatus": {"Name": status, "StartTimestamp": stamp},
                        "Configuration": {"Username": name, "FirstName": "A", "LastName": name[-2:]}, "Contacts": contacts}
            out.append({"AWSAccountId": "000000000000", "AgentARN": arn, "EventId": f"ev-{i}-{k}-{rng.randrange(16**6):06x}",
                        "EventTimestamp": stamp, "EventType": kind, "InstanceARN": "arn:aws:connect:eu-west-2:0:instance/i",
                        "Version": "2017-10-01", **({} if kind == "HEART_BEAT" else {"CurrentAgentSnapshot": snapshot})})
    return sorted(out, key=lambda r: r["EventTimestamp"])


BANK_HEAD = ("vru+line,call_id,customer_id,priority,type,date,vru_entry,vru_exit,vru_time,q_start,q_exit,q_time,outcome,"
             "ser_start,ser_exit,ser_time,server")


def _clock(s: int) -> str:
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _bank_rows(rng: random.Random, size: int) -> list[str]:
    """Anonymous Bank rows: served, hung up in the queue or in the IVR, phantom; some with documented empty times."""
    out = []
    for n in range(size):
        day = f"2010-08-{1 + n * 3 // size:02d}"
        entry = rng.randrange(7 * 3600, 22 * 3600)
        vru = rng.randrange(3, 40)
        outcome = rng.choices(["AGENT", "HANG", "IVR", "PHANTOM"], [70, 15, 10, 5])[0]
        q_time = 0 if outcome in ("IVR", "PHANTOM") or rng.random() < 0.2 else rng.randrange(1, 300)
        ser = rng.randrange(10, 900) if outcome == "AGENT" else 0
        exit_ = entry + vru
        q_start, q_exit = (_clock(exit_), _clock(exit_ + q_time)) if q_time else ("0:00:00", "0:00:00")
        s_start, s_exit = (_clock(exit_ + q_time), _clock(exit_ + q_time + ser)) if ser else ("0:00:00", "0:00:00")
        server = f"AGENT-{rng.randrange(1, 12):02d}" if outcome == "AGENT" else "NO_SERVER"
        out.append(",".join([f"AA01{rng.randrange(1, 30):02d}", str(30000 + n), str(rng.choice([0, rng.randrange(10**7, 10**8)])),
                             str(rng.randrange(3)), rng.choice(["PS", "NE", "IN", "PE"]), day, _clock(entry), _clock(exit_),
                             str(vru), q_start, q_exit, str(q_time), "HANG" if outcome == "IVR" else outcome, s_start,
                             s_exit, str(ser), server]))
    return out


# ---- what each adapter refuses ----------------------------------------------------------------------

FAR_EPOCHS = (4_102_444_800, 9_999_999_999, 253_402_300_799,  # 2100, 2286, 9999: beyond CALLQA_MAX_FUTURE_S
              0, 86_400, 631_152_000, 946_684_799)  # 1970, 1990, a second before 2000
FAR_DATES = ("2100-01-01", "2286-11-20", "9999-12-31", "0001-01-01", "1970-01-01", "1999-12-31")
NOT_DATES = ("02-30", "02-31", "04-31", "13-01", "00-10", "06-00", "12-32")  # the pattern, not a date
NOT_NUMBERS = ("abc", "12abc", "1e3", "inf", "nan", "-4", "0x10", "1;5", "\uff14", "\u0664", "4 s")
BAD_CHARS = ("\udcff", "\udcc3(", "\x00", "\x1b", "\x7f", "\u200b", "\ufffd")  # \udcXX: that byte, not UTF-8


def _digits(text: str, rng: random.Random) -> str:
    """ASCII digits as another script's (fullwidth, Arabic-Indic, Devanagari): isdigit() but not a number here."""
    zero = rng.choice([0xFF10, 0x0660, 0x0966])
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


def _insert(text: str, piece: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + piece + text[at:]


def _not_epoch(rng: random.Random, epoch: str) -> str:
    return rng.choice([
        lambda: rng.choice(["", "abc", f"{epoch}x", f"-{epoch}", f"{epoch}.5", f" {epoch}", hex(int(epoch)), "1e9"]),
        lambda: _digits(epoch, rng),  # non-ASCII digits
        lambda: epoch + "000",  # milliseconds: 13 digits
        lambda: str(rng.choice(FAR_EPOCHS)),
        lambda: _insert(epoch, rng.choice(BAD_CHARS), rng),  # an invalid UTF-8 byte or a control character
    ])()


def _id_field(rng: random.Random, value: str, separator: bool = True) -> str:
    """An id a key cannot hold: with the key separator, or longer than the contract's 128 characters (in a
    queue_log line a '|' is a field boundary: only too long)."""
    if separator and rng.random() < 0.5:
        return _insert(value or "x", "|", rng)
    return rng.choice("xé") * rng.choice([129, 300, 5_000, 200_000])  # 200,000: over the csv module's field limit


# the numbers the queue_log adapter reads, by verb: the parameter's index (the standard layout)
NUMBERS = {"CONNECT": 2, "RINGNOANSWER": 0, "ABANDON": 0, "EXITWITHTIMEOUT": 0, "EXITEMPTY": 0, "EXITWITHKEY": 1}


def _params_mutations(rng: random.Random, verb: str, params: list[str]) -> list:
    """A read number that is not one; a '|' inside a parameter (one parameter too many for the verb)."""
    out = []
    if verb in NUMBERS:
        i = NUMBERS[verb]
        out.append(lambda: params[:i] + [rng.choice(NOT_NUMBERS)] + params[i + 1:])
    if verb in MAX_PARAMS:  # verbs read by position: a '|' inside a parameter makes one too many
        def split() -> list[str]:
            p = (params + [""] * MAX_PARAMS[verb])[:MAX_PARAMS[verb]]
            i = rng.randrange(len(p))
            return p[:i] + [p[i][:1] or "x", p[i][1:] or "y"] + p[i + 1:]
        out.append(split)
    return out


def _queue_log_mutations(rng: random.Random, line: str) -> list:
    f = line.split("|")
    epoch, verb, params = f[0], f[4], f[5:]
    join = lambda fields: "|".join(fields)
    field = lambda i, v: join(f[:i] + [v] + f[i + 1:])
    bad_id = lambda i: field(i, _id_field(rng, f[i], separator=False))
    out = [
        lambda: field(0, _not_epoch(rng, epoch)),
        lambda: join(f[: rng.randrange(1, 5)]),  # too few fields
        lambda: field(4, ""),  # no event
        lambda: field(0, _insert(epoch[:6], "|", rng) + epoch[6:]),  # '|' inside the epoch: a time in 1970
        lambda: bad_id(rng.choice([1, 2, 3])),  # callid, queue, agent
    ]
    out += [lambda m=m: join(f[:5] + m()) for m in _params_mutations(rng, verb, params)]
    return out


def _table_mutations(rng: random.Random, line: str) -> list:
    r = line.split(",")
    verb = r[5]
    row = lambda i, v: ",".join(r[:i] + [v] + r[i + 1:])
    bad_id = lambda i: row(i, _id_field(rng, r[i]))
    out = [
        lambda: ",".join(r[:-1] if rng.random() < 0.5 else r + [""]),  # a column too few or too many
        lambda: row(1, _not_epoch(rng, r[1])),
        lambda: row(0, ""),  # no uid
        lambda: bad_id(rng.choice([2, 3, 4])),  # callid, queue, agent
        lambda: row(10, rng.choice(NOT_NUMBERS)),  # expos: the position a call left from
    ]
    number = {"CONNECT": 8, "RINGNOANSWER": 11, "OUTANSWER": 12}.get(verb)  # ring s, ring ms, talk s
    if number:
        out.append(lambda: row(number, rng.choice(NOT_NUMBERS)))
    return out


def _realtime_mutations(rng: random.Random, line: str) -> list:
    r = line.split(",")
    date, clock = r[1].split(" ")
    row = lambda i, v: ",".join(r[:i] + [v] + r[i + 1:])
    bad_id = lambda i: row(i, _id_field(rng, r[i]))
    out = [
        lambda: row(1, date[:5] + rng.choice(NOT_DATES) + " " + clock),  # the pattern, not a date
        lambda: row(1, date + " " + rng.choice(["24:00:00", "10:60:00", "10:00:60", "10:00", "10:00:00.", "1:2:3:4"])),
        lambda: row(1, rng.choice([f"{date}T{clock}", f"{date[8:]}/{date[5:7]}/{date[:4]} {clock}", date, "", "now",
                                   f"{r[1]}Z"])),
        lambda: row(1, f"{rng.choice(FAR_DATES)} {clock}"),
        lambda: row(1, str(rng.choice(FAR_EPOCHS))),
        lambda: row(1, _insert(r[1], rng.choice(BAD_CHARS), rng)),
        lambda: ",".join(r[: rng.randrange(1, 6)]),  # too few columns: no event
        lambda: row(5, ""),
        lambda: bad_id(rng.choice([2, 3, 4])),  # callid, queue, agent
    ]
    out += [lambda m=m: row(6, "|".join(m())) for m in _params_mutations(rng, r[5], r[6].split("|") if r[6] else [])]
    return out


def _ctr_mutations(rng: random.Random, line: str) -> list:
    """Of a contact record given a ContactId of its own (a record sharing one is a version of it, kept or
    superseded by LastUpdateTimestamp: see ``conflicting_versions``)."""
    r = json.loads(line)
    r["ContactId"] = f"fuzz-{rng.randrange(16**10):010x}"
    dump = lambda record: json.dumps(record)
    without = lambda key: dump({k: v for k, v in r.items() if k != key})
    times = ["InitiationTimestamp", "DisconnectTimestamp"] + ([("Queue", "EnqueueTimestamp")] if r["Queue"] else []) \
        + ([("Agent", "ConnectedToAgentTimestamp")] if r["Agent"] else [])

    def with_time(value) -> str:
        record = json.loads(json.dumps(r))
        key = rng.choice(times)
        if isinstance(key, tuple):
            record[key[0]][key[1]] = value
        else:
            record[key] = value
        return dump(record)

    start = r["InitiationTimestamp"]
    out = [
        lambda: dump(r)[: rng.randrange(1, len(dump(r)) - 1)],  # truncated
        lambda: with_time(rng.choice([0, 1_709_539_200, 1.5, True, False, [], [start], {}, {"t": start}])),  # wrong type
        lambda: with_time(start[:5] + rng.choice(NOT_DATES) + start[10:]),  # the pattern, not a date
        lambda: with_time(rng.choice([start.rstrip("Z"), start[:10], "yesterday", start.replace("T", " at ")])),  # no zone
        lambda: with_time(f"{rng.choice(FAR_DATES)}{start[10:]}"),
        lambda: without(rng.choice(["ContactId", "InitiationTimestamp"])),
        lambda: dump(r | {"ContactId": rng.choice([{"id": "x"}, ["x"], 7, None, r["ContactId"] + "x" * 300])}),
        lambda: dump(r | {rng.choice(["Queue", "Agent", "CustomerEndpoint"]): rng.choice(["Sales", 5, ["Sales"], True])}),
        lambda: rng.choice(["[]", "42", '"text"', "null", "true", "[" + dump(r) + "]", "\ufeff" + dump(r)]),
        lambda: dump(r).replace("{", rng.choice(BAD_CHARS[:2]), 1),  # an invalid UTF-8 byte for the brace
        # a raw line or paragraph separator or form feed inside the line (JSON lets U+2028 be raw)
        lambda: json.dumps(r | {"Attributes": {"note": "a\u2028b"}, "ContactId": 7}, ensure_ascii=False),
        lambda: dump(r)[:-1] + ', "Attributes": {"note": "a' + rng.choice(["\x0c", "\x1c", "\u2029", "\x85"]) + 'b"}',
    ]
    if r["Queue"]:
        out.append(lambda: dump(r | {"Queue": r["Queue"] | {"Name": rng.choice([_id_field(rng, "Sales"), {"n": 1}, 5])}}))
    if r["Agent"]:
        out.append(lambda: dump(r | {"Agent": r["Agent"] | {"Username": rng.choice([_id_field(rng, "agent"), ["a"], 5])}}))
        out.append(lambda: dump(r | {"Agent": r["Agent"] | {"NumberOfHolds": rng.choice(["2", 1.5, 10**9, -1, [1]]),
                                                            "CustomerHoldDuration": 30}}))
    return out


def conflicting_versions(lines: list[str], n: int, seed: int) -> list[str]:
    """Contact records delivered again with other content and an older LastUpdateTimestamp: superseded (counted
    as skipped), whichever comes first in the file."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = json.loads(rng.choice(lines))
        updated = datetime.fromisoformat(r["LastUpdateTimestamp"]).timestamp() - rng.randrange(1, 3600)
        r |= {"LastUpdateTimestamp": _iso(updated), "DisconnectTimestamp": r["InitiationTimestamp"], "Agent": None,
              "Queue": {"Name": "Elsewhere", "EnqueueTimestamp": r["InitiationTimestamp"]}}
        out.append(json.dumps(r))
    return out


def _agent_event_mutations(rng: random.Random, line: str) -> list:
    r = json.loads(line)
    r["EventId"] = f"fuzz-{rng.randrange(16**10):010x}"
    dump = lambda record: json.dumps(record)
    without = lambda key: dump({k: v for k, v in r.items() if k != key})
    out = [
        lambda: dump(r)[: rng.randrange(1, len(dump(r)) - 1)],
        lambda: rng.choice(["[]", "42", '"text"', "null", "true", "[" + dump(r) + "]"]),
        lambda: dump(r | {"EventType": rng.choice(["EXPLODE", "", "login", "HEARTBEAT", 5, None, ["LOGIN"]])}),
        lambda: without("EventType"),
    ]
    if r["EventType"] == "HEART_BEAT":  # nothing else of a heart beat is read
        return out
    stamp = r["EventTimestamp"]
    snapshot = r["CurrentAgentSnapshot"]
    out += [
        lambda: without(rng.choice(["EventTimestamp", "EventId"])),
        lambda: dump(r | {"EventTimestamp": rng.choice([0, 1_709_539_200, 1.5, True, [], {}, [stamp]])}),
        lambda: dump(r | {"EventTimestamp": stamp[:5] + rng.choice(NOT_DATES) + stamp[10:]}),
        lambda: dump(r | {"EventTimestamp": rng.choice([stamp.rstrip("Z"), stamp[:10], "now"])}),  # no zone
        lambda: dump(r | {"EventTimestamp": f"{rng.choice(FAR_DATES)}{stamp[10:]}"}),
        lambda: dump(r | {"CurrentAgentSnapshot": snapshot | {"Configuration": {"Username": rng.choice(
            [_id_field(rng, "agent"), 7, ["agent-01"]])}}}),
        lambda: dump(r | {"EventId": "x" * rng.choice([129, 5_000])}),
        lambda: dump(r | {"CurrentAgentSnapshot": rng.choice(["Available", 5, [snapshot]])}),
        lambda: dump(r | {"CurrentAgentSnapshot": snapshot | {"Configuration": "agent-01"}}),
    ]
    if r["EventType"] == "STATE_CHANGE":  # its contacts are read, and its status when no contact is on
        out.append(lambda: dump(r | {"CurrentAgentSnapshot": snapshot | {"Contacts": rng.choice([[5], "CONNECTED"])}}))
        if not snapshot["Contacts"]:
            out.append(lambda: dump(r | {"CurrentAgentSnapshot": snapshot | {"AgentStatus": rng.choice(["Lunch", ["Lunch"]])}}))
    return out


def _bank_mutations(rng: random.Random, line: str) -> list:
    r = line.split(",")
    c = {name: i for i, name in enumerate(BANK_HEAD.split(","))}
    row = lambda name, v: ",".join(r[: c[name]] + [v] + r[c[name] + 1:])
    out = [
        lambda: ",".join(r[: rng.randrange(1, len(r))] if rng.random() < 0.5 else r + [rng.choice(["", "x"])]),
        lambda: row("outcome", rng.choice(["LOST", "agent", "", "AGENT ", "HANG\x00", "SERVED"])),
    ]
    if r[c["outcome"]] == "PHANTOM":  # nothing else of a phantom call is read
        return out
    day = r[c["date"]]
    out += [
        lambda: row("date", day[:5] + rng.choice(NOT_DATES)),
        lambda: row("date", rng.choice(["20100801", "01/08/2010", "", "2010-08", f"{day} 00:00", _digits(day, rng)[:4] + "x"])),
        lambda: row("date", rng.choice(FAR_DATES)),
        lambda: row("date", _insert(day, rng.choice(BAD_CHARS), rng)),
        lambda: row("vru_entry", rng.choice(["25:00:00", "12:60:00", "12:00:60", "12:00", "a:b:c", "", "-1:00:00",
                                             "12:00:00:00", "12:00:00 PM"])),
        lambda: row("q_time", rng.choice(NOT_NUMBERS)),
        lambda: row("type", _id_field(rng, r[c["type"]])),
        lambda: row("call_id", "9" * rng.choice([129, 300, 5_000])),
    ]
    if int(r[c["q_time"]]) > 0 or r[c["outcome"]] == "AGENT":
        out.append(lambda: row("priority", rng.choice(["x", "1.5", "", "high"])))
    if r[c["outcome"]] == "AGENT":
        out.append(lambda: row("ser_time", rng.choice(NOT_NUMBERS)))
        out.append(lambda: row("server", _id_field(rng, r[c["server"]])))
    return out


MUTATIONS = {"asterisk-queue-log": _queue_log_mutations, "asterisk-queue-log-table": _table_mutations,
             "asterisk-queue-log-realtime": _realtime_mutations, "amazon-connect-ctr": _ctr_mutations,
             "amazon-connect-agent-events": _agent_event_mutations, "anonymous-bank": _bank_mutations}


def invalid_source_lines(source: Source, n: int, seed: int) -> list[str]:
    """``n`` lines made from ``source``'s valid lines that its adapter must refuse, one dead letter each
    (seeded: the same corpus every run). A line never holds a line break."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        line = rng.choice(MUTATIONS[source.fmt](rng, rng.choice(source.lines)))()
        out.append(line.replace("\n", " ").replace("\r", " "))
    return out
