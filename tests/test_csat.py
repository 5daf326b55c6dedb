"""Customer satisfaction: the survey.completed contract, its KPI counters (exact against a tally taken straight
from the simulated events), the surveys table, and which QA items matter to customers — found against the
simulator's own generating weights, with no significant effect for the items that have none."""
import json
import math
from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from callqa import csat
from callqa.core.kpi import KpiConfig
from callqa.core.local import LocalGraph
from callqa.core.surveys import DETRACTOR_MAX, ITEM_PASS_SHARE, MIN_GROUP, PROMOTER_MIN, SATISFIED_MIN
from callqa.embedded import EmbeddedPipeline
from schemas import InvalidEvent, format_ms, key_field, time_ms, validate_dict
from sinks import macros
from sinks import queries as q
from sinks.migrate import migrate
from sinks.store import EmbeddedStore
from sinks.writer import BatchWriter
from sources.amazon_connect import read_ctr
from sources.pii import CallerHasher
from sources.simulator import CSAT_ITEM_WEIGHTS, CSAT_MOOD_P, SimConfig, Simulator
from tests.conftest import SHARED_DATA

T0 = time_ms("2024-03-04T09:00:00.000Z")
HOUR = KpiConfig(window_sizes_s=(3600,))


def survey(n, t_s, call="k1", csat=4, site="S", **fields):
    return {"event_id": f"sv{n}", "event_type": "survey.completed", "schema_version": 1,
            "event_time": format_ms(T0 + int(t_s * 1000)), "site_id": site, "source": "test",
            "survey_id": fields.pop("survey_id", f"survey-{call}"), "call_id": call, "csat": csat, **fields}


def call(call_id="k1", agent="a1", queue="q", t=0):
    ev = lambda n, dt, kind, **f: {"event_id": f"{call_id}-{n}", "event_type": kind, "schema_version": 1,
                                   "event_time": format_ms(T0 + (t + dt) * 1000), "site_id": "S", "source": "test",
                                   "call_id": call_id, **f}
    return [ev(1, 0, "call.offered", queue_id=queue), ev(2, 0, "call.queued", queue_id=queue),
            ev(3, 10, "call.answered", agent_id=agent, queue_id=queue), ev(4, 200, "call.ended", agent_id=agent)]


def windows(events, config=HOUR, state=None, partitions=2):
    """The newest KPI row of every window, and the dead letters' reasons."""
    graph = LocalGraph(state if state is not None else {}, config, partitions=partitions)
    for e in events:
        graph.feed(e, "test", e["event_id"])
    out = graph.flush()
    rows = {}
    for r in out.rows.get("kpi_windows", []):
        key = (r["level"], r["entity_id"], r["window_s"], r["window_start"])
        if key not in rows or rows[key]["version"] < r["version"]:
            rows[key] = r
    return rows, [d["reason"] for d in out.rows.get("dead_letters", [])]


def surveyed(rows):
    """(level, entity) → (responses, sum, satisfied) of the windows with surveys."""
    return {(lvl, ent): (r["csat_responses"], r["csat_sum"], r["csat_satisfied"])
            for (lvl, ent, _, _), r in rows.items() if r["csat_responses"]}


# -- the contract ---------------------------------------------------------------------------------------
def test_a_survey_is_keyed_by_its_call_and_checked():
    assert key_field("survey.completed") == "call_id"
    ok = survey(1, 0, nps=9, resolved=True, agent_id="a1", queue_id="q", channel="ivr")
    assert validate_dict(dict(ok)) == ok
    for change, reason in [({"csat": 0}, "csat"), ({"csat": 6}, "csat"), ({"csat": "5"}, "csat"),
                           ({"csat": True}, "csat"), ({"csat": None}, "csat"), ({"nps": 11}, "nps"),
                           ({"nps": -1}, "nps"), ({"resolved": "yes"}, "resolved"), ({"channel": "fax"}, "channel"),
                           ({"comment": "great"}, "comment"), ({"survey_id": ""}, "survey_id")]:
        with pytest.raises(InvalidEvent, match=reason):
            validate_dict({**ok, **change})
    for missing in ("survey_id", "call_id", "csat"):
        with pytest.raises(InvalidEvent, match=missing):
            validate_dict({k: v for k, v in ok.items() if k != missing})


# -- the core -------------------------------------------------------------------------------------------
def test_a_survey_joins_its_call_and_counts_at_its_own_time():
    profile = {"event_id": "p1", "event_type": "agent.profile", "schema_version": 1,
               "event_time": format_ms(T0 - 86400_000),
               "site_id": "S", "source": "test", "agent_id": "a2", "team_id": "t9", "hire_date": "2020-01-01"}
    # the call at 09:00 (transferred to a2 from a1 is not needed: a2 answers last); the survey the next hour
    events = [profile, *call(agent="a2"), survey(1, 3700, nps=10, resolved=False)]
    rows, dead = windows(events)
    assert not dead
    assert surveyed(rows) == {(lvl, ent): (1, 4, 1) for lvl, ent in
                              [("site", "S"), ("queue", "q"), ("agent", "a2"), ("team", "t9")]}
    hour = {k[3] for k, r in rows.items() if r["csat_responses"]}
    assert hour == {"2024-03-04T10:00:00.000Z"}  # the survey's hour, not the call's
    site = rows[("site", "S", 3600, "2024-03-04T10:00:00.000Z")]
    assert (site["nps_responses"], site["nps_promoters"], site["nps_detractors"], site["nps"]) == (1, 1, 0, 100.0)
    assert (site["survey_resolved_responses"], site["survey_resolved"], site["survey_resolved_rate"]) == (1, 0, 0.0)
    assert (site["csat_pct"], site["csat_avg"]) == (100.0, 4.0)
    assert not any(r["csat_responses"] for (_, _, size, _), r in rows.items() if size == 300)  # not in live buckets


def test_what_a_survey_names_wins_and_a_survey_before_its_call_counts_for_its_site():
    rows, _ = windows([*call(), survey(1, 300, agent_id="a7", queue_id="q7")])
    assert set(surveyed(rows)) == {("site", "S"), ("queue", "q7"), ("agent", "a7")}
    rows, _ = windows([survey(1, -60, call="k9"), *call("k9")])  # the call is not held yet
    assert set(surveyed(rows)) == {("site", "S")}


def test_a_repeat_counts_once_a_correction_replaces_and_bad_answers_are_dead_letters():
    events = [*call(), survey(1, 300, csat=2), survey(1, 300, csat=2), survey(2, 400, csat=5),
              survey(3, 500, call="k1", csat=7, survey_id="other")]
    rows, dead = windows(events)
    assert surveyed(rows)[("site", "S")] == (1, 5, 1)  # the correction (csat 5) replaced the first answer (2)
    assert len(dead) == 1 and "csat" in dead[0]


def test_a_surveys_state_leaves_once_its_windows_are_closed():
    state: dict = {}
    windows([*call(), survey(1, 300)], state=state, partitions=1)
    held = lambda: sum(len(p["surveys"]) for p in state["events"].values())
    assert held() == 1
    later = 2 * HOUR.window_retention_ms // 1000 + 2 * 3600
    windows(call("k2", t=later) + call("k3", t=later), state=state, partitions=1)  # two calls move event time
    assert held() == 0


# -- the simulator through the embedded runner into a store --------------------------------------------
SIM = SimConfig(sites=1, agents_per_site=30, days=2, start=date(2024, 3, 4), seed=21, qa_sample_p=0.8, survey_p=0.8)
START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two simulated days with most calls evaluated and surveyed, through the runner (4 partitions) into chdb."""
    events = list(Simulator(SIM).events())
    store = EmbeddedStore(tmp_path_factory.mktemp("csat") / "chdb")
    migrate(store)
    pipeline = EmbeddedPipeline(BatchWriter(store, 20000, 60), KpiConfig(), partitions=4)
    for i, e in enumerate(events):
        pipeline.feed(e, "sim", str(i))
    pipeline.close()
    yield events, store
    store.close()


def test_simulated_surveys_follow_the_documented_model(simulated):
    events, _ = simulated
    answered = sum(e["event_type"] == "call.answered" for e in events)
    surveys = [e for e in events if e["event_type"] == "survey.completed"]
    assert abs(len(surveys) / answered - SIM.survey_p) < 0.03
    assert {e["channel"] for e in surveys} == {"ivr", "sms"}
    assert all(e["call_id"] == e["survey_id"].removeprefix("sv-") for e in surveys)


def tally(events):
    """The survey counters per (level, entity, window size, window start), straight from the events."""
    team = {e["agent_id"]: e["team_id"] for e in events if e["event_type"] == "agent.profile"}
    out = defaultdict(lambda: defaultdict(int))
    for e in events:
        if e["event_type"] != "survey.completed":
            continue
        t = time_ms(e["event_time"])
        for size in (3600, 86400):
            start = datetime.fromtimestamp((t - t % (size * 1000)) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.000")
            for level, entity in (("site", e["site_id"]), ("queue", e["queue_id"]), ("agent", e["agent_id"]),
                                  ("team", team[e["agent_id"]])):
                w = out[(level, entity, size, start)]
                w["csat_responses"] += 1
                w["csat_sum"] += e["csat"]
                w["csat_satisfied"] += e["csat"] >= SATISFIED_MIN
                if e.get("nps") is not None:
                    w["nps_responses"] += 1
                    w["nps_promoters"] += e["nps"] >= PROMOTER_MIN
                    w["nps_detractors"] += e["nps"] <= DETRACTOR_MAX
                if e.get("resolved") is not None:
                    w["survey_resolved_responses"] += 1
                    w["survey_resolved"] += e["resolved"]
    return {k: dict(v) for k, v in out.items()}


COUNTERS = ("csat_responses", "csat_sum", "csat_satisfied", "nps_responses", "nps_promoters", "nps_detractors",
            "survey_resolved_responses", "survey_resolved")


def test_survey_counters_equal_the_tally_in_every_window_and_the_day_rollup(simulated):
    events, store = simulated
    want = tally(events)
    columns, found = store.query(f"SELECT level, entity_id, window_s, toString(window_start), {', '.join(COUNTERS)}, "
                                 "csat_pct, nps FROM kpi_windows FINAL WHERE window_s IN (3600, 86400) "
                                 "AND csat_responses > 0")
    got = {tuple(r[:4]): dict(zip(columns[4:], r[4:])) for r in found}
    assert set(got) == set(want) and len(want) > 100
    for key, w in want.items():
        g = got[key]
        assert {c: g[c] for c in COUNTERS} == {c: w.get(c, 0) for c in COUNTERS}, key
        assert g["csat_pct"] == pytest.approx(100 * w["csat_satisfied"] / w["csat_responses"], abs=1e-3)
        if w.get("nps_responses"):
            nps = 100 * (w["nps_promoters"] - w.get("nps_detractors", 0)) / w["nps_responses"]
            assert g["nps"] == pytest.approx(nps, abs=1e-3)
    daily = {(r[0], r[1], r[2]): r[3:] for r in store.query(
        "SELECT level, entity_id, toString(day) || ' 00:00:00.000', csat_responses, csat_sum, csat_satisfied "
        "FROM kpi_daily FINAL WHERE csat_responses > 0")[1]}
    assert daily == {(lvl, ent, start): (w["csat_responses"], w["csat_sum"], w["csat_satisfied"])
                     for (lvl, ent, size, start), w in want.items() if size == 86400}
    (stored,), = store.query("SELECT count() FROM surveys FINAL")[1]
    assert stored == sum(e["event_type"] == "survey.completed" for e in events)


def expand(store, sql):
    values = {"site": ["site-1"], "agent": [r[0] for r in store.query("SELECT DISTINCT agent_id FROM evaluations")[1]]}
    columns, found = store.query(macros.expand(sql, START, END, values))
    return [dict(zip(columns, r)) for r in found]


def test_the_item_panel_equals_a_tally_of_the_events(simulated):
    """Per item of the human evaluations: counts, means, the Welch interval and the point-biserial r."""
    events, store = simulated
    score = {e["call_id"]: e["csat"] for e in events if e["event_type"] == "survey.completed"}
    groups = defaultdict(lambda: ([], []))
    for e in events:
        if e["event_type"] == "evaluation.submitted" and e["kind"] == "human" and e["call_id"] in score:
            for i in e["items"]:
                groups[i["item_id"]][i["score"] >= ITEM_PASS_SHARE * i["max_score"]].append(score[e["call_id"]])
    shown = {r["item"]: r for r in expand(store, q.CSAT_ITEMS) if r["kind"] == "human"}
    assert set(shown) == {item for item, (bad, good) in groups.items()
                          if len(bad) >= MIN_GROUP and len(good) >= MIN_GROUP}
    mean = lambda xs: sum(xs) / len(xs)
    var = lambda xs: sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)
    for item, r in shown.items():
        bad, good = groups[item]
        diff, se = mean(good) - mean(bad), math.sqrt(var(good) / len(good) + var(bad) / len(bad))
        assert (r["passed"], r["failed"], r["csat_passed"], r["csat_failed"]) == (
            len(good), len(bad), round(mean(good), 2), round(mean(bad), 2)), item
        assert (r["ci_low"], r["ci_high"]) == (pytest.approx(diff - 1.96 * se, abs=0.006),
                                               pytest.approx(diff + 1.96 * se, abs=0.006)), item
        n, p = len(good) + len(bad), len(good) / (len(good) + len(bad))
        sd = math.sqrt(var(good + bad) * (n - 1) / n)
        assert r["correlation"] == pytest.approx(diff * math.sqrt(p * (1 - p)) / sd, abs=0.0006), item


def test_the_items_that_matter_are_the_simulators_and_the_others_have_no_effect(simulated):
    _, store = simulated
    found = [r for r in csat.item_table(expand(store, q.CSAT_ITEMS), expand(store, q.CSAT_PAIRS))
             if r["kind"] == "human"]
    weighted = sorted(CSAT_ITEM_WEIGHTS, key=CSAT_ITEM_WEIGHTS.get, reverse=True)
    assert [r["item"] for r in found[:len(weighted)]] == weighted  # ranked as the true effects are
    assert len(found) >= 12
    for r in found:
        assert r["significant"] == (r["item"] in CSAT_ITEM_WEIGHTS), r  # placebos: no effect after Holm's correction
        if r["item"] in CSAT_ITEM_WEIGHTS:  # the true effect on mean CSAT, within the estimate's interval
            assert r["adjusted_low"] <= (1 - CSAT_MOOD_P) * CSAT_ITEM_WEIGHTS[r["item"]] <= r["adjusted_high"], r
    # the plain pass/fail difference of an item with no effect is not zero: it fails with the weighted ones
    placebo = next(r for r in found if r["item"] == "overall.warm")
    assert placebo["ci_low"] > 0 and placebo["adjusted_low"] < 0 < placebo["adjusted_high"]


def test_csat_in_the_site_comparison(simulated):
    events, store = simulated
    surveys = [e for e in events if e["event_type"] == "survey.completed"]
    (site,) = expand(store, q.SITE_COMPARISON)
    assert site["surveys"] == len(surveys)
    assert site["csat_pct"] == round(100 * sum(e["csat"] >= SATISFIED_MIN for e in surveys) / len(surveys), 1)


# -- adapters ------------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_amazon_connect_maps_a_survey_from_the_contacts_attributes():
    record = json.loads((SHARED_DATA / "amazon-connect" / "ctr-record.json").read_text())
    read = lambda attributes: next(read_ctr([json.dumps({**record, "Attributes": attributes})], "ctr", "s1",
                                            CallerHasher("k")))
    assert not [e for e in read({}).events if e["event_type"] == "survey.completed"]  # the sample has none
    unit = read({"csat": "4", "nps": "9", "survey_resolved": "No"})
    (s,) = [e for e in unit.events if e["event_type"] == "survey.completed"]
    assert (s["csat"], s["nps"], s["resolved"], s["call_id"], s["event_time"]) == (
        4, 9, False, record["ContactId"], "2019-01-30T15:11:39.000Z")
    assert validate_dict(s) and "agent_id" not in s  # no agent connected to this contact
    plain = [e["event_type"] for e in read({}).events]
    for bad in ({"csat": "6"}, {"csat": "good"}, {"csat": "5", "nps": "11"}, {"csat": "5", "survey_resolved": "maybe"}):
        unit = read(bad)  # the customer's answer is unreadable: the survey is left out, the call kept, the record a dead letter
        assert "survey left out" in unit.error and [e["event_type"] for e in unit.events] == plain, bad
