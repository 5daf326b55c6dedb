"""The simulator: valid events, the hourly / weekday / quarter-hour shapes, determinism, drift truth."""
import json
from collections import Counter, defaultdict
from datetime import date, datetime

import pytest

from schemas import time_ms, validate_dict
from sources.simulator import DriftSpec, DriftSpecError, SimConfig, Simulator
from tests.conftest import callqa_env, run_callqa


def hour_of(event):
    return datetime.fromisoformat(event["event_time"]).hour


@pytest.fixture(scope="module")
def week():
    drifts = (DriftSpec.parse("apology:agent=site-1-a0007,from=2024-03-06"),
              DriftSpec.parse("qa:team=site-1/team-1,delta=-25,from=2024-03-07"),
              DriftSpec.parse("aht:site=site-1,factor=1.5,from=2024-03-08"))
    sim = Simulator(SimConfig(sites=1, agents_per_site=45, days=7, start=date(2024, 3, 4), seed=7, drifts=drifts))
    return sim, list(sim.events())


def test_every_event_validates_and_answered_calls_have_recordings(week):
    _, events = week
    for event in events:
        validate_dict(event)
    kinds = Counter(e["event_type"] for e in events)
    assert kinds["recording.completed"] == kinds["call.answered"] == kinds["speech.analyzed"] > 10_000
    evaluations = Counter(e["kind"] for e in events if e["event_type"] == "evaluation.submitted")
    assert 0.015 < evaluations["human"] / kinds["call.answered"] < 0.05
    # calibration sessions: about 0.3% of calls, each scored by the six evaluators and the lead
    sessions = evaluations["calibration"] / 7
    assert sessions == int(sessions) and 0.001 < sessions / kinds["call.answered"] < 0.006
    assert kinds["agent.profile"] == 45 and kinds["call.held"] == kinds["call.resumed"] > 0
    assert kinds["call.transferred"] > 0 and kinds["call.abandoned"] > 0


def test_busiest_hours_are_10_to_12_and_monday_is_busiest(week):
    _, events = week
    offered = [e for e in events if e["event_type"] == "call.offered"]
    by_hour = Counter(hour_of(e) for e in offered)
    assert {h for h, _ in by_hour.most_common(2)} == {10, 11}
    by_day = Counter(datetime.fromisoformat(e["event_time"]).weekday() for e in offered)
    assert by_day.most_common(1)[0][0] == 0
    assert by_day[0] > 1.15 * by_day[2] and by_day[6] < 0.6 * by_day[2]


def test_about_40_percent_of_an_hours_calls_come_in_its_first_quarter(week):
    _, events = week
    minutes = [datetime.fromisoformat(e["event_time"]).minute for e in events if e["event_type"] == "call.offered"]
    share = sum(m < 15 for m in minutes) / len(minutes)
    assert 0.37 < share < 0.43


def test_abandonment_rises_with_waiting(week):
    _, events = week
    queued, answered, abandoned = {}, {}, defaultdict(int)
    for e in events:
        if e["event_type"] == "call.queued":
            queued[e["call_id"]] = e
        elif e["event_type"] == "call.answered":
            answered[e["call_id"]] = e
        elif e["event_type"] == "call.abandoned" and e["stage"] == "queue":
            abandoned[(e["event_time"][:10], hour_of(queued[e["call_id"]]))] += 1
    waits, calls = defaultdict(list), Counter()
    for call, q in queued.items():
        key = (q["event_time"][:10], hour_of(q))
        calls[key] += 1
        if call in answered:
            waits[key].append((datetime.fromisoformat(answered[call]["event_time"])
                               - datetime.fromisoformat(q["event_time"])).total_seconds())
    slots = [k for k in calls if calls[k] >= 30 and waits[k]]
    asa = {k: sum(waits[k]) / len(waits[k]) for k in slots}
    rate = {k: abandoned[k] / calls[k] for k in slots}
    ranked = sorted(slots, key=asa.get)
    low, high = ranked[: len(ranked) // 3], ranked[-len(ranked) // 3:]
    assert sum(rate[k] for k in high) / len(high) > 2 * sum(rate[k] for k in low) / len(low)


def test_same_seed_same_events_other_seed_other_events():
    config = dict(sites=2, agents_per_site=10, days=1, start=date(2024, 3, 4))
    first = list(Simulator(SimConfig(seed=3, **config)).events())
    assert first == list(Simulator(SimConfig(seed=3, **config)).events())
    assert first != list(Simulator(SimConfig(seed=4, **config)).events())


def test_injected_drifts_change_behaviour_from_their_start(week):
    sim, events = week
    assert [d["kind"] for d in sim.truth.drifts] == ["apology", "qa", "aht"]
    # the agent stops apologising after holds
    speech = [e for e in events if e["event_type"] == "speech.analyzed" and e["agent_id"] == "site-1-a0007"]
    held = {e["call_id"] for e in events if e["event_type"] == "call.held"}

    def apologised(e):
        return any("久等" in u["text"] or "Sorry" in u["text"] for u in e["utterances"])

    before = [apologised(e) for e in speech if e["call_id"] in held and e["event_time"] < "2024-03-06"]
    after = [apologised(e) for e in speech if e["call_id"] in held and e["event_time"] >= "2024-03-06"]
    assert before and after and sum(before) / len(before) > 0.7 and not any(after)
    # the team's QA scores drop by about the injected delta
    scores = defaultdict(list)
    team = {e["agent_id"] for e in events if e["event_type"] == "agent.profile" and e["team_id"] == "site-1/team-1"}
    for e in events:
        if e["event_type"] == "evaluation.submitted" and e["agent_id"] in team:
            call_day = e["call_id"].split("-")[2]
            scores[call_day >= "20240307"].append(sum(i["score"] for i in e["items"]))
    assert sum(scores[False]) / len(scores[False]) - sum(scores[True]) / len(scores[True]) > 15
    # a system change is announced and talk time rises after it
    assert [e["change_type"] for e in events if e["event_type"] == "ops.changed"] == ["system_change"]
    # poor calls are recorded in the ground truth
    assert 0 < len(sim.truth.poor_calls) < sim.truth.calls


def test_drift_specs_are_checked():
    for bad in ("nope:team=x,from=2024-01-01", "qa:from=2024-01-01", "qa:team=x", "qa:team=x,from=someday",
                "aht:team=x,factor=0,from=+1", "aht:team=x,factor=nan,from=+1", "qa:team=x,from=+inf",
                "qa:team=x,from=+2,to=+1", "qa:team=x,from=+1,size=3", "hold:team=x,from=+1,ramp=-2"):
        with pytest.raises(DriftSpecError):
            DriftSpec.parse(bad, date(2024, 3, 4))


def test_simulate_command_writes_json_lines_and_truth(tmp_path):
    out, truth = tmp_path / "sim.jsonl", tmp_path / "truth.json"
    done = run_callqa(["simulate", "--sites", "2", "--agents-per-site", "8", "--days", "1", "--seed", "5",
                       "--out", str(out), "--truth", str(truth), "--drift", "qa:site=site-2,delta=-10,from=2024-03-04T12:00"],
                      callqa_env(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) > 1000 and all(validate_dict(json.loads(line)) for line in lines[:2000])
    assert json.loads(truth.read_text())["drifts"][0]["scope_id"] == "site-2"
    # and the same traffic replayed on the embedded default gives per-site KPIs
    done = run_callqa(["replay", str(out)], callqa_env(tmp_path))
    assert done.returncode == 0 and "site-1" in done.stdout and "site-2" in done.stdout


def test_closed_loop_human_evaluations_come_only_from_reviews_with_their_probability():
    sim = Simulator(SimConfig(sites=1, agents_per_site=10, days=1, start=date(2024, 3, 4), seed=3, closed_loop=True))
    events = list(sim.events())
    assert not [e for e in events if e["event_type"] == "evaluation.submitted" and e["kind"] == "human"]
    call = next(e for e in events if e["event_type"] == "call.answered")
    review = sim.review(call["call_id"], 0.25, time_ms(call["event_time"]))
    assert validate_dict(review) and review["kind"] == "human" and review["inclusion_probability"] == 0.25
    assert review["event_time"] >= call["event_time"] and review["agent_id"] == call["agent_id"]
    assert sim.review(call["call_id"], 0.25, time_ms(call["event_time"])) is None  # reviewed once
    total, n = sim.truth.qa_pct[call["agent_id"]]
    assert n > 10 and 40 < total / n < 100  # what a reviewer would give over all the agent's calls
