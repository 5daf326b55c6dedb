"""The pure core, with no Kafka and no ClickHouse."""
import json
import random

import pytest

from callqa.core.kpi import KpiConfig, QueueRules
from callqa.core.local import LocalGraph
from callqa.core.ordering import CAUGHT_UP, Ordered
from callqa.core.partials import JUDGED, WindowSums
from schemas import format_ms, time_ms
from tests.conftest import FIXTURES
from tests.events import expected_site_windows, valid_events

DAY = FIXTURES / "day.jsonl"
QUARTER = KpiConfig(window_sizes_s=(900,))


def run(events, config=QUARTER, state=None):
    """Records, the newest row of every window emitted (windows leave the state once settled), refused ids."""
    graph = LocalGraph(state if state is not None else {}, config)
    for e in events:
        graph.feed(e, "test", e["event_id"])
    out = graph.flush()
    records = {r["call_id"]: r for r in out.rows.get("call_records", [])}
    rows = {}
    for r in out.rows.get("kpi_windows", []):
        key = (r["level"], r["site_id"], r["entity_id"], r["window_s"], r["window_start"])
        if key not in rows or rows[key]["version"] < r["version"]:
            rows[key] = r
    return records, rows, [d["position"] for d in out.rows.get("dead_letters", [])]


def site_rows(rows, size=900):
    return {(r["site_id"], r["window_start"]): r for r in rows.values() if r["level"] == "site" and r["window_s"] == size}


T0 = time_ms("2024-03-04T09:00:00.000Z")


def ev(n, t_s, kind, call="k1", site="S", **fields):
    body = {"call_id": call} if kind.startswith("call.") else {}
    return {"event_id": f"e{n}-{call}-{kind}", "event_type": kind, "schema_version": 1,
            "event_time": format_ms(T0 + int(t_s * 1000)), "site_id": site, "source": "test", **body, **fields}


def answered_call(call, t, wait, talk, agent="a1", queue="q", caller=None, acw=0):
    events = [ev(1, t, "call.offered", call, queue_id=queue, caller_hash=caller),
              ev(2, t, "call.queued", call, queue_id=queue),
              ev(3, t + wait, "call.answered", call, agent_id=agent),
              ev(4, t + wait + talk, "call.ended", call, agent_id=agent)]
    if acw:
        events.append(ev(5, t + wait + talk + acw, "call.wrapup_ended", call, agent_id=agent))
    return events


def test_site_windows_match_an_independent_tally():
    _, rows, _ = run(valid_events(DAY))
    got = {(site, start.replace("T", " ").rstrip("Z")): r for (site, start), r in site_rows(rows).items()}
    expected = expected_site_windows(DAY, 900)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {k: got[key][k] for k in want} == want, key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_order_does_not_change_the_result(seed):
    events = valid_events(DAY)
    records, rows, _ = run(events)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    records2, rows2, _ = run(shuffled)
    strip = lambda rs: {k: {f: v for f, v in r.items() if f != "version"} for k, r in rs.items()}
    assert strip(records2) == strip(records)
    assert strip(rows2) == strip(rows)


def test_duplicates_are_ignored():
    events = valid_events(DAY)
    records, rows, _ = run(events)
    records2, rows2, _ = run(events + events[::-1])
    assert records2 == records and rows2 == rows


def test_call_record_fields():
    records, _, _ = run(valid_events(DAY))
    c3 = records["c3"]  # queued at +10 s, answered after 45 s, on hold 60 s, ended 200 s after queue+wait
    assert (c3["outcome"], c3["wait_ms"], c3["hold_ms"], c3["hold_count"]) == ("answered", 45_000, 60_000, 1)
    assert c3["talk_ms"] == 200_000 - 10_000 - 60_000 and c3["acw_ms"] == 30_000
    assert c3["resolved"] is True and c3["disposition"] == "info"
    assert records["c5"]["transfer_count"] == 1 and records["c5"]["segment_transferred"] == [1]
    assert records["c4"]["outcome"] == "abandoned" and records["c4"]["wait_ms"] == 20_000
    assert records["d3"]["outcome"] == "abandoned" and records["d3"]["abandon_stage"] == "ivr"


def test_a_transfer_makes_one_segment_per_agent():
    events = [ev(1, 0, "call.queued", queue_id="q"), ev(2, 10, "call.answered", agent_id="a1"),
              ev(3, 70, "call.held", agent_id="a1"), ev(4, 100, "call.resumed", agent_id="a1"),
              ev(5, 130, "call.transferred", from_agent_id="a1", to_agent_id="a2", transfer_type="attended"),
              ev(6, 150, "call.answered", agent_id="a2"), ev(7, 250, "call.ended", agent_id="a2"),
              ev(8, 160, "call.wrapup_ended", agent_id="a1"), ev(9, 280, "call.wrapup_ended", agent_id="a2")]
    records, rows, _ = run(events)
    r = records["k1"]
    assert r["segment_agent_ids"] == ["a1", "a2"] and r["segment_transferred"] == [1, 0]
    assert r["segment_talk_ms"] == [90_000, 100_000] and r["segment_hold_ms"] == [30_000, 0]
    assert r["segment_acw_ms"] == [30_000, 30_000]
    agent = {r["entity_id"]: r for r in rows.values() if r["level"] == "agent"}
    assert (agent["a1"]["handled"], agent["a1"]["answered"], agent["a1"]["transferred"]) == (1, 1, 1)
    assert (agent["a2"]["handled"], agent["a2"]["answered"], agent["a2"]["talk_ms"]) == (1, 0, 100_000)
    (site,) = site_rows(rows).values()
    assert (site["handled"], site["transferred"], site["aht_s"]) == (1, 1, 280.0)


def test_short_abandons_and_service_level():
    events = (answered_call("fast", 0, 15, 60) + answered_call("slow", 10, 40, 60)
              + [ev(1, 20, "call.queued", "short", queue_id="q"), ev(2, 23, "call.abandoned", "short", stage="queue"),
                 ev(1, 30, "call.queued", "gone", queue_id="q"), ev(2, 90, "call.abandoned", "gone", stage="queue"),
                 ev(1, 40, "call.queued", "tmo", queue_id="q"),
                 ev(2, 340, "call.abandoned", "tmo", stage="queue", reason="timeout")])
    _, rows, _ = run(events)
    (s,) = site_rows(rows).values()
    assert (s["offered"], s["answered"], s["abandoned"], s["short_abandoned"], s["unanswered_other"]) == (5, 2, 1, 1, 1)
    assert (s["sl_numerator"], s["sl_denominator"], s["service_level"]) == (1, 3, round(1 / 3, 6))
    assert s["asa_s"] == 27.5 and s["longest_wait_s"] == 300.0 and s["abandon_rate"] == 0.2
    for formula, den in (("offered", 4), ("answered", 2)):
        config = KpiConfig(window_sizes_s=(900,), queue_rules={"q": QueueRules(20, 5, formula)})
        (s,) = site_rows(run(events, config)[1]).values()
        assert s["sl_denominator"] == den
    config = KpiConfig(window_sizes_s=(900,), default_rules=QueueRules(sl_threshold_s=45, short_abandon_s=2))
    (s,) = site_rows(run(events, config)[1]).values()
    assert (s["sl_numerator"], s["short_abandoned"], s["abandoned"]) == (2, 0, 2)


def test_call_without_end_is_closed_as_incomplete_after_the_timeout():
    """Two calls of one window closed by the same sweep both count (their deltas share the sweep's tag)."""
    config = KpiConfig(window_sizes_s=(900,), call_timeout_s=600)
    events = [ev(1, 0, "call.queued", "open", queue_id="q"), ev(2, 5, "call.answered", "open", agent_id="a1"),
              ev(1, 1, "call.queued", "open-2", queue_id="q"), ev(2, 6, "call.answered", "open-2", agent_id="a2")]
    events += answered_call("later", 2000, 1, 30) + answered_call("later-2", 2000, 1, 30)  # two calls move event time on
    records, rows, _ = run(events, config)
    assert records["open"]["outcome"] == records["open-2"]["outcome"] == "incomplete"
    assert sum(r["incomplete"] for r in site_rows(rows).values()) == 2
    queue = [r for r in rows.values() if r["level"] == "queue" and r["window_s"] == 900]
    assert sum(r["incomplete"] for r in queue) == 2


@pytest.mark.parametrize("redelivery_s", [0, 86400])
def test_late_events_correct_within_the_lateness_and_are_refused_after(redelivery_s):
    config = KpiConfig(window_sizes_s=(900,), allowed_lateness_s=600, redelivery_s=redelivery_s)
    state = {}
    _, rows, _ = run(answered_call("a", 0, 10, 30), config, state)
    before = site_rows(rows)[("S", format_ms(T0))]
    # within the lateness: a call of the same window arrives late and corrects it (a newer version)
    _, rows, refused = run(answered_call("b", 60, 10, 30), config, state)
    after = site_rows(rows)[("S", format_ms(T0))]
    assert refused == [] and after["offered"] == before["offered"] + 1 and after["version"] > before["version"]
    # far ahead: the watermark moves past "a"'s lateness. A replay of it is never counted twice: within
    # the re-delivery time it is a duplicate of a settled call, after it a late event (refused)
    run(answered_call("c", 7200, 1, 10) + answered_call("d", 7200, 1, 10), config, state)
    _, rows, refused = run(answered_call("a", 0, 10, 30), config, state)
    assert rows == {}
    if redelivery_s:
        assert refused == [] and "settled" in state["events"]["0"]["calls"]["a"]
    else:
        assert len(refused) == 4 and "a" not in state["events"]["0"]["calls"]
    key = f"site|S|S|900|{T0}"
    assert WindowSums(state["windows"]["0"]["windows"], config).row(key)["offered"] == 2


def test_first_call_resolution():
    day = 86400
    events = (answered_call("c1", 0, 5, 60, caller="a" * 32) + answered_call("c3", 0, 5, 60, caller="b" * 32)
              + answered_call("c2", day, 5, 60, caller="a" * 32) + answered_call("c4", 5 * day, 5, 60, caller="c" * 32)
              + answered_call("c5", 5 * day, 5, 60, caller="d" * 32))
    config = KpiConfig(window_sizes_s=(86400,))
    _, rows, _ = run(events, config)
    days = {r["window_start"][:10]: r for r in rows.values() if r["level"] == "site" and r["window_s"] == 86400}
    # c1 repeated within 72 h (not resolved); c3 resolved once the horizon passed; c2 settles 72 h after day 2
    assert (days["2024-03-04"]["fcr_eligible"], days["2024-03-04"]["fcr_resolved"]) == (2, 1)
    assert (days["2024-03-05"]["fcr_eligible"], days["2024-03-05"]["fcr_resolved"]) == (1, 1)
    assert days["2024-03-09"]["fcr_eligible"] == 0  # c4's horizon has not passed: not final yet


def test_fcr_verdicts_settled_together_all_count():
    """Verdicts of several callers that settle in one sweep (or one bundle) land in the same site window:
    each counts (they once shared a tag, and the window took only the first)."""
    day = 86400
    callers = [chr(ord("a") + i) * 32 for i in range(5)]
    events = [e for i, caller in enumerate(callers) for e in answered_call(f"c{i}", 100 * i, 5, 60, caller=caller)]
    events += answered_call("c1-again", 300, 5, 60, caller=callers[1])
    events += answered_call("later", 5 * day, 5, 60) + answered_call("later-2", 5 * day, 5, 60)
    _, rows, _ = run(events, KpiConfig(window_sizes_s=(86400,)))
    first = next(r for r in rows.values() if r["level"] == "site" and r["window_s"] == 86400
                 and r["window_start"].startswith("2024-03-04"))
    assert (first["fcr_eligible"], first["fcr_resolved"]) == (6, 5)  # c1 was called again; the rest resolved


def test_agent_states_give_logged_in_not_ready_and_occupancy():
    config = KpiConfig(window_sizes_s=(3600,))
    a = lambda n, t, state, reason=None: ev(n, t, "agent.state_changed", agent_id="a1", state=state, reason=reason)
    events = [{**ev(9, -60, "agent.profile"), "agent_id": "a1", "team_id": "t7", "hire_date": "2023-01-01"},
              a(1, 0, "logged_in"), *answered_call("w", 600, 0, 1800), a(2, 3600, "not_ready", "lunch"),
              a(3, 3600 + 900, "available"), a(4, 3 * 3600, "logged_out")]
    _, rows, _ = run(events, config)
    agent = {r["window_start"][11:16]: r for r in rows.values() if r["level"] == "agent"}
    assert [(agent[h]["logged_in_ms"], agent[h]["not_ready_ms"]) for h in ("09:00", "10:00", "11:00")] == \
        [(3_600_000, 0), (3_600_000, 900_000), (3_600_000, 0)]
    assert agent["09:00"]["occupancy"] == 0.5 and agent["10:00"]["not_ready_ratio"] == 0.25
    team = [r for r in rows.values() if r["level"] == "team"]
    assert {r["entity_id"] for r in team} == {"t7"} and sum(r["logged_in_ms"] for r in team) == 3 * 3_600_000


def test_a_late_agent_state_re_splits_its_neighbours():
    config = KpiConfig(window_sizes_s=(3600,))
    a = lambda n, t, state: ev(n, t, "agent.state_changed", agent_id="a1", state=state)
    in_order = [a(1, 0, "logged_in"), a(2, 1800, "not_ready"), a(3, 2700, "available"), a(4, 3600, "logged_out")]
    late = [in_order[0], in_order[2], in_order[3], in_order[1]]
    assert run(in_order, config)[1].keys() == run(late, config)[1].keys()
    strip = lambda rows: {k: (r["logged_in_ms"], r["not_ready_ms"]) for k, r in rows.items()}
    assert strip(run(in_order, config)[1]) == strip(run(late, config)[1])


def test_state_is_json_serializable():
    state = {}
    run(valid_events(DAY), state=state)
    assert json.loads(json.dumps(state)) == state


def test_ordered_release_is_the_same_for_any_interleaving_of_sources():
    """Items from several sources come out in one order whatever order they arrive in; repeats
    (a replay) are dropped; a source not heard from holds everything back until it is."""
    items = {src: [(t, src) for t in sorted(random.Random(src).sample(range(1000), 30))] for src in "abc"}
    outcomes = set()
    for seed in range(5):
        rng = random.Random(seed)
        o = Ordered({}, sources=list("abc"), slack_ms=50)
        cursors, out = dict.fromkeys("abc", 0), []
        while any(cursors[s] < len(items[s]) for s in "abc"):
            src = rng.choice([s for s in "abc" if cursors[s] < len(items[s])])
            at, _ = items[src][cursors[src]]
            tag = [cursors[src], 0]
            assert o.offer(src, tag, (at, 0, f"{src}{at}"), f"{src}{at}")
            assert not o.offer(src, tag, (at, 0, f"{src}{at}"), "repeat")  # a replayed tag
            o.mark(src, at)
            cursors[src] += 1
            released = o.release()
            assert all(int(x[1:]) <= min(o.s["marks"][s][0] for s in o.s["marks"]) for x in released)
            out += released
        if seed == 0:
            assert len(out) < 90  # the slack holds the newest back while every source is busy
        for src in "abc":
            o.mark(src, 1000, idle=CAUGHT_UP)
        out += o.release()
        assert len(out) == 90
        outcomes.add(tuple(out))
    assert len(outcomes) == 1
    first = outcomes.pop()
    assert [int(x[1:]) for x in first] == sorted(int(x[1:]) for x in first)


def test_state_stays_bounded_when_a_batch_spans_past_a_windows_retention():
    """Low traffic in large batches (a backfill, a night): a window changed early in a batch and due
    before its end must still leave the state at a later sweep, not stay forever."""
    start = time_ms("2024-03-04T00:00:00Z")
    config = KpiConfig(window_sizes_s=(900,), call_timeout_s=600, allowed_lateness_s=60, fcr_horizon_s=600)
    graph = LocalGraph({}, config)
    for i in range(400):  # a call every 10 minutes over ~2.8 days, fed as one batch
        t = start + i * 600_000
        for kind, at, extra in (("call.queued", t, {"queue_id": "q1"}), ("call.abandoned", t + 30_000, {"stage": "queue"}),
                                ("call.ended", t + 30_000, {})):
            graph.feed(json.dumps({"schema_version": 1, "event_id": f"c{i}-{kind}", "event_type": kind,
                                   "event_time": format_ms(at), "site_id": "s1", "source": "test",
                                   "call_id": f"c{i}", **extra}).encode(), "test", str(i))
    graph.flush()
    for last in ("last", "last-2"):  # two calls: event time moves once two reach it (CALLQA_WATERMARK_QUORUM)
        graph.feed(json.dumps({"schema_version": 1, "event_id": last, "event_type": "call.queued",
                               "event_time": format_ms(start + 400 * 600_000), "site_id": "s1", "source": "test",
                               "call_id": last, "queue_id": "q1"}).encode(), "test", last)
    graph.flush()
    held = graph.state["events"]["0"]["windows"]
    kept_ms = 2 * (config.call_timeout_s + config.allowed_lateness_s) * 1000 + 900_000  # tombstones: one more retention
    assert held and all(int(key.rsplit("|", 1)[1]) >= start + 400 * 600_000 - kept_ms - 60_000 for key in held), sorted(held)[:3]


def test_batch_boundaries_do_not_change_the_state():
    """The same input in batches of 1 and of 400: every stage's state is the same (a restart
    re-processes input in other batches than the first run, so nothing may depend on them — e.g.
    which KPI windows a sweep drops, and so which partials start a new generation)."""
    from datetime import date

    from sources.simulator import SimConfig, Simulator

    events = list(Simulator(SimConfig(sites=1, agents_per_site=4, days=2, start=date(2024, 3, 4), seed=8)).events())
    events.sort(key=lambda e: e["event_type"] != "agent.profile")
    config = KpiConfig(call_timeout_s=1800, allowed_lateness_s=600, fcr_horizon_s=4 * 3600)
    states = []
    for every in (1, 400):
        graph = LocalGraph({}, config, partitions=2)
        for i, event in enumerate(events):
            graph.feed(json.dumps(event).encode(), "sim", str(i))
            if (i + 1) % every == 0:
                graph.flush()
        graph.idle()
        for name in ("events", "fcr", "windows"):  # the input positions differ: more batches, more bundles
            for parts in graph.state[name].values():
                parts["meta"].pop("through", None)
        states.append({name: graph.state[name] for name in ("events", "fcr", "windows")})
    assert states[0] == states[1]


def test_a_crash_part_way_through_saving_counts_nothing_twice():
    """The worker saves windows before calls: a crash in between restores newer windows with older
    calls, and the input since the older save is read again. A window swept meanwhile must not take
    that input again as a new generation (the window stage would add it on top of the first)."""
    import copy

    config = KpiConfig(window_sizes_s=(900,), call_timeout_s=600, allowed_lateness_s=60, fcr_horizon_s=36_000)
    t0 = time_ms("2024-03-04T08:00:00Z")  # the events stage keeps windows 11 min, the window stage 10 h

    def ev(call, kind, at, **extra):
        return json.dumps({"schema_version": 1, "event_id": f"{call}-{kind}", "event_type": kind, "site_id": "s1",
                           "source": "test", "call_id": call, "event_time": format_ms(at), **extra}).encode()

    first = [ev("c", "call.queued", t0, queue_id="q1"), ev("c", "call.answered", t0 + 10_000, agent_id="a1")]
    second = [ev("c", "call.ended", t0 + 100_000, agent_id="a1"), ev("d", "call.queued", t0 + 7_200_000, queue_id="q1"),
              ev("e", "call.queued", t0 + 7_200_000, queue_id="q1")]
    graph = LocalGraph({}, config)
    for i, line in enumerate(first):
        graph.feed(line, "t", str(i))
    graph.flush()
    saved = copy.deepcopy(graph.state)
    for i, line in enumerate(second):
        graph.feed(line, "t", str(i + 2))
    graph.flush()
    key = f"site|s1|s1|900|{t0}"
    assert "c" not in graph.state["events"]["0"]["windows"].get(key, {})  # swept by d's and e's watermark
    # the crash: the events stage's windows were saved, its calls and progress were not
    crashed = copy.deepcopy(graph.state)
    for part in ("calls", "agents", "evaluations", "meta"):
        crashed["events"]["0"][part] = saved["events"]["0"][part]
    crashed["offsets"]["events/0"] = saved["offsets"]["events/0"]
    again = LocalGraph(crashed, config)
    for i, line in enumerate(second):
        again.feed(line, "t", str(i + 2))
    again.flush()
    partials = [g for g in crashed["windows"]["0"]["windows"][key] if g != JUDGED]  # (and the figures judged)
    assert len(partials) == 1 and WindowSums(crashed["windows"]["0"]["windows"], config).row(key)["offered"] == 1


def test_a_call_state_saved_before_stints_is_read():
    """A data folder saved by the previous layout (one queue, one end per call) goes on where it stopped."""
    from callqa.core.assembly import CallAssembler

    old = {"call_id": "k1", "site_id": "S", "queue_id": "q", "caller_hash": None, "direction": "inbound",
           "call_type": None, "offered_ms": T0, "queued_ms": T0, "abandoned_ms": None, "abandon_stage": None,
           "abandon_reason": None, "ended_ms": None, "answers": [[T0 + 10_000, "a1"]], "transfers": [], "holds": [],
           "wrapups": [], "disposition": None, "resolved": None, "last_ms": T0 + 10_000, "incomplete": False,
           "fcr_noted": [], "version": 3, "seen": ["e1", "e2", "e3"], "contrib": {}}
    calls = CallAssembler({"k1": old}, QUARTER)
    update = calls.apply(ev(4, 70, "call.ended", agent_id="a1"), T0 + 70_000)
    (record,) = update.records
    assert (record["outcome"], record["wait_ms"], record["talk_ms"], record["queue_id"]) == ("answered", 10_000, 60_000, "q")


def test_the_events_one_source_line_makes_move_event_time_as_one():
    """A source line can make events of two calls (a Connect callback record ends the contact it calls
    back; a queue_log transfer line moves its consultation leg): dated a day ahead, it still moves no
    watermark alone (CALLQA_WATERMARK_QUORUM counts it once), so a later call of the stream is not late."""
    graph = LocalGraph({}, QUARTER)
    for e in answered_call("c1", 0, 5, 60) + answered_call("c2", 0, 5, 60):
        graph.feed(e, "file", e["event_id"])
    for call in ("x1", "x2"):  # one line, two calls
        graph.feed(ev(1, 86_400, "call.offered", call, queue_id="q"), "file", "line-9")
    for e in answered_call("c3", 600, 5, 60):
        graph.feed(e, "file", e["event_id"])
    out = graph.flush()
    assert graph.state["events"]["0"]["meta"]["wm"] < T0 + 86_400_000
    assert not out.rows.get("dead_letters") and {r["call_id"] for r in out.rows["call_records"]} >= {"c1", "c2", "c3"}
