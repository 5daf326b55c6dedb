"""Anonymous Bank call log (Technion SEE center) → canonical events.

Follows the data's own description (Guedj and Mandelbaum, "Anonymous Bank" call-center data, the
AnonymousBank.pdf field documentation of the Technion SEE center, as summarised in
``../shared/data/README.md``). One row per call: IVR entry/exit, queue start/exit, service
start/exit as clock times of ``date`` (a time more than 12 hours earlier than the IVR entry belongs
to the next day; 19 rows have a queue start a minute or two before their IVR entry, a clock skew
kept as it is). The documentation writes an empty time as ``00:00:00`` (or ``0:00:00``) with a
zero duration: such times are never read as midnight; only the durations place what follows.

- Outcomes: AGENT = served; HANG with queue time = abandoned from the queue; HANG without = hung up
  in the IVR (not offered); PHANTOM = a call the documentation says to ignore (no events, counted
  as skipped).
- Offered at ``vru_entry``; queued at ``q_start``, or at the IVR exit when it reached an agent
  without waiting (``q_time`` 0).
- Wait is the documented ``q_time`` (queue entry to queue exit): answered at ``q_start + q_time``,
  ended ``ser_time`` later (talk = ``ser_time``); ``ser_start`` is not used (it can be a second
  before ``q_exit``, or an empty ``00:00:00``).
- ``type`` is both the call type and the queue; ``customer_id`` (0 = unknown) is hashed like a
  caller number.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from .base import BoundedLines, Converted, envelope, invalid
from .pii import CallerHasher

SOURCE = "anonymous-bank"
COLUMNS = ["vru+line", "call_id", "customer_id", "priority", "type", "date", "vru_entry", "vru_exit", "vru_time",
           "q_start", "q_exit", "q_time", "outcome", "ser_start", "ser_exit", "ser_time", "server"]
OUTCOMES = ("AGENT", "HANG", "PHANTOM")


def _clock(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise ValueError(f"bad clock time {text!r}")
    return (h * 3600 + m * 60 + s) * 1000


def _seconds(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name} {text[:40]!r} is not a whole number of seconds")
    return int(text)


def convert_row(r: dict, site_id: str, hasher: CallerHasher) -> list[dict]:
    """The events of one call row; raises ValueError (with the reason) on a malformed row."""
    if r["outcome"] not in OUTCOMES:
        raise ValueError(f"unknown outcome {r['outcome']!r}")
    if r["outcome"] == "PHANTOM":
        return []  # the documentation's "phantom" calls: calls to ignore
    day = int(datetime.strptime(r["date"], "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
    entry = _clock(r["vru_entry"])

    def at(text: str) -> int:  # clock time → epoch ms, rolling past midnight
        t = _clock(text)
        return day + t + (86_400_000 if t < entry - 43_200_000 else 0)

    q_time, ser_time = _seconds(r["q_time"], "q_time"), _seconds(r["ser_time"], "ser_time")
    call = f"ab:{r['vru+line']}:{r['call_id']}"
    queue = r["type"]
    ev = lambda kind, t, **f: envelope(f"{call}:{kind}", kind, t, site_id, SOURCE, call_id=call, **f)
    customer = r["customer_id"] if r["customer_id"] not in ("", "0") else None
    events = [ev("call.offered", day + entry, queue_id=queue, call_type=r["type"], caller_hash=hasher(customer))]
    if r["outcome"] == "HANG" and q_time == 0:
        return events + [ev("call.abandoned", at(r["vru_exit"]), queue_id=queue, stage="ivr")]
    queued = at(r["q_start"]) if q_time > 0 else at(r["vru_exit"])
    events.append(ev("call.queued", queued, queue_id=queue, priority=int(r["priority"])))
    if r["outcome"] == "HANG":
        return events + [ev("call.abandoned", at(r["q_exit"]), queue_id=queue, stage="queue")]
    agent = r["server"] if r["server"] not in ("", "NO_SERVER") else "unknown"
    answered = queued + q_time * 1000  # the documented wait is q_time: queue entry to queue exit
    return events + [ev("call.answered", answered, queue_id=queue, agent_id=agent),
                     ev("call.ended", answered + ser_time * 1000, agent_id=agent)]


def read(lines: Iterable[str], name: str, site_id: str, hasher: CallerHasher) -> Iterator[Converted]:
    source = BoundedLines(lines, name)
    rows = csv.reader(source)
    header = next(rows, None)
    if header != COLUMNS:
        yield from source.aside() or [Converted(f"{name}:1", ",".join(header or []),
                                                error=f"unexpected header; expected {','.join(COLUMNS)}")]
        return
    for row in rows:
        if aside := source.aside():  # lines over the limit (read as empty: a row of its own, or inside a quoted field)
            yield from aside
            if not row:
                continue
        unit = Converted(f"{name}:{rows.line_num}", ",".join(row))
        if len(row) != len(COLUMNS):
            unit.error = f"expected {len(COLUMNS)} columns, got {len(row)}"
        else:
            try:
                unit.events = convert_row(dict(zip(COLUMNS, row)), site_id, hasher)
                unit.skipped = None if unit.events else "PHANTOM"
                unit.error = invalid(unit.events)
                if unit.error:
                    unit.events = []
            except (ValueError, OverflowError) as exc:
                unit.error = str(exc)
        yield unit
