"""The pure core, with no Kafka and no ClickHouse."""
import json
import random

import pytest

from callqa.core.kpi import KpiAggregator
from callqa.core.pipeline import Processor
from tests.conftest import FIXTURES
from tests.events import expected_site_windows, valid_events

DAY = FIXTURES / "day.jsonl"


def run(events, sizes=(900,)):
    states, windows = {}, {}
    proc, agg = Processor(states, sizes), KpiAggregator(windows)
    records, rows = {}, {}
    for e in events:
        update = proc.process(e)
        if update is None:
            continue
        if update.record:
            records[update.record["call_id"]] = update.record
        for key, delta in update.deltas:
            rows[key] = agg.apply(key, delta)
    return records, rows


def test_site_windows_match_an_independent_tally():
    _, rows = run(valid_events(DAY))
    got = {(r["site_id"], r["window_start"].replace("T", " ").rstrip("Z")): r
           for r in rows.values() if r["level"] == "site"}
    expected = expected_site_windows(DAY, 900)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {k: got[key][k] for k in want} == want, key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_order_does_not_change_the_result(seed):
    events = valid_events(DAY)
    records, rows = run(events)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    records2, rows2 = run(shuffled)
    strip = lambda rs: {k: {f: v for f, v in r.items() if f != "version"} for k, r in rs.items()}
    assert strip(records2) == strip(records)
    assert strip(rows2) == strip(rows)


def test_duplicates_are_ignored():
    events = valid_events(DAY)
    records, rows = run(events)
    records2, rows2 = run(events + events[::-1])
    assert records2 == records and rows2 == rows
    proc = Processor({}, (900,))
    assert proc.process(events[0]) is not None
    assert proc.process(dict(events[0])) is None


def test_call_record_fields():
    records, _ = run(valid_events(DAY))
    c3 = records["c3"]  # queued at +10 s, answered after 45 s, on hold 60 s, ended 200 s after queue+wait
    assert (c3["outcome"], c3["wait_ms"], c3["hold_ms"], c3["hold_count"]) == ("answered", 45_000, 60_000, 1)
    assert c3["talk_ms"] == 200_000 - 10_000 - 60_000
    assert c3["resolved"] is True and c3["disposition"] == "info"
    assert records["c5"]["transfer_count"] == 1
    assert records["c4"]["outcome"] == "abandoned" and records["c4"]["wait_ms"] == 20_000
    d3 = records["d3"]
    assert d3["outcome"] == "abandoned" and d3["abandon_stage"] == "ivr"


def test_ivr_abandon_is_not_offered_and_incomplete_calls_emit_no_record():
    events = [e for e in valid_events(DAY) if e.get("call_id") in ("d3", "c1")]
    c1_until_answer = [e for e in events if e.get("call_id") == "c1" and e["event_type"] in ("call.offered", "call.queued", "call.answered")]
    records, rows = run([e for e in events if e.get("call_id") == "d3"])
    assert records["d3"]["outcome"] == "abandoned" and rows == {}
    records, rows = run(c1_until_answer)
    assert records == {}
    site = [r for r in rows.values() if r["level"] == "site"]
    assert [(r["offered"], r["answered"]) for r in site] == [(1, 1)]


def test_multiple_window_sizes():
    _, rows = run(valid_events(DAY), sizes=(900, 3600))
    hourly = [r for r in rows.values() if r["level"] == "site" and r["window_s"] == 3600]
    quarter = [r for r in rows.values() if r["level"] == "site" and r["window_s"] == 900]
    for site in ("A", "B"):
        assert sum(r["offered"] for r in hourly if r["site_id"] == site) == \
            sum(r["offered"] for r in quarter if r["site_id"] == site)


def test_state_is_json_serializable():
    states = {}
    proc = Processor(states, (900,))
    for e in valid_events(DAY):
        proc.process(e)
    assert json.loads(json.dumps(states)) == states
