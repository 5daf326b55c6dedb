"""An independent reading of canonical events for tests: expected results straight from the raw lines."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)


def valid_events(path: Path) -> list[dict]:
    """Lines that parse and carry the fields the tally needs (the fixture's invalid lines are known)."""
    events, seen = [], set()
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if e.get("stage") == "nowhere" or e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        events.append(e)
    return events


def expected_site_windows(path: Path, window_s: int) -> dict[tuple[str, str], dict]:
    """(site, window start 'YYYY-MM-DD HH:MM:SS.000') → offered, answered, abandoned, answered wait ms."""
    calls: dict[str, dict] = defaultdict(dict)
    for e in valid_events(path):
        if not e["event_type"].startswith("call."):
            continue
        c = calls[e["call_id"]]
        c["site"] = e["site_id"]
        c.setdefault(e["event_type"], _ms(e["event_time"]))
        if e["event_type"] == "call.abandoned":
            c["stage"] = e["stage"]
    out: dict = defaultdict(lambda: {"offered": 0, "answered": 0, "abandoned": 0, "wait_answered_ms": 0})
    for c in calls.values():
        arrived = c.get("call.queued", c.get("call.offered"))
        if "call.queued" not in c and "call.answered" not in c and c.get("stage") in (None, "ivr"):
            continue
        start = arrived - arrived % (window_s * 1000)
        key = (c["site"], datetime.utcfromtimestamp(start / 1000).strftime("%Y-%m-%d %H:%M:%S.000"))
        w = out[key]
        w["offered"] += 1
        if "call.answered" in c:
            w["answered"] += 1
            w["wait_answered_ms"] += c["call.answered"] - arrived
        elif "call.abandoned" in c:
            w["abandoned"] += 1
    return dict(out)
