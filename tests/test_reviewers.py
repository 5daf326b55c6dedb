"""Named reviewers (CALLQA_REVIEWERS_FILE): capacity, eligibility by site and language, balance within
capacity, calibration standing and coaching, determinism, configuration errors, and `callqa plan` on a store.
The oracles are written out by hand (capacities, loads, deviations) or checked against the file's plain JSON."""
import json
import random
from datetime import date

import pytest

from callqa.config import Config, ConfigError
from callqa.core.plans import assign_reviews
from callqa.core.reviewers import parse_reviewers, standings
from callqa.core.sampling import Sampler
from tests.conftest import callqa_env, run_callqa


def reviewer(rid, sites="*", languages=("en",), per_day=10, **extra) -> dict:
    return {"id": rid, "name": f"Reviewer {rid}", "sites": sites, "languages": list(languages),
            "reviews_per_day": per_day, **extra}


def call(n, agent, site="site-1", language="en", method="recording_review", risk=1.0) -> dict:
    return {"call_id": f"c{n:04d}", "agent_id": agent, "team_id": f"{site}/team-1", "site_id": site,
            "language": language, "method": method, "reason": "rate", "risk": risk}


def loads(result) -> dict:
    out = {}
    for p in result["plans"]:
        out[p["reviewer"]] = out.get(p["reviewer"], 0) + p["target"]
    return out


def assigned(result) -> dict:
    return {c: p["reviewer"] for p in result["plans"] for c in p["call_ids"]}


def write(tmp_path, spec, name="reviewers.json"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def test_review_capacity_is_the_sum_of_the_named_reviewers_else_the_old_settings(tmp_path):
    path = write(tmp_path, [reviewer("ana", per_day=40), reviewer("bo", per_day=25), reviewer("cy", per_day=7)])
    config = Config.from_env({"CALLQA_REVIEWERS_FILE": str(path), "CALLQA_QA_REVIEWERS": "3"})
    assert [r.id for r in config.reviewers] == ["ana", "bo", "cy"]
    assert config.policy.daily_capacity == 40 + 25 + 7  # the file wins over CALLQA_QA_REVIEWERS
    assert Sampler({}, {}, {}, config.policy, b"k", shares=4).capacity == 18  # 72 split over 4 partitions
    fallback = Config.from_env({"CALLQA_QA_REVIEWERS": "3", "CALLQA_QA_REVIEWS_PER_HOUR": "5",
                                "CALLQA_QA_REVIEW_HOURS": "2"})
    assert fallback.reviewers == () and fallback.policy.daily_capacity == 3 * 5 * 2


def test_a_french_call_at_site_2_goes_only_to_a_french_reviewer_of_site_2_or_stays_unassigned():
    team = parse_reviewers([reviewer("en-all", languages=["en"], per_day=100),
                            reviewer("fr-s1", sites=["site-1"], languages=["fr"]),
                            reviewer("fr-s2", sites=["site-2"], languages=["FR", "en"], per_day=3)])
    queue = [call(1, "a1", "site-2", "fr"), call(2, "a1", "site-2", "fr"), call(3, "a2", "site-2", "en"),
             call(4, "a3", "site-1", "fr"), call(5, "a4", "site-2", "")]  # c5: no language known, anyone of site-2
    by_call = assigned(assign_reviews(queue, team))
    assert by_call["c0001"] == by_call["c0002"] == "fr-s2" and by_call["c0004"] == "fr-s1"
    assert by_call["c0003"] in {"en-all", "fr-s2"} and by_call["c0005"] in {"en-all", "fr-s2"}
    out = assign_reviews(queue, team[:2])  # no French reviewer at site-2
    assert set(assigned(out)) == {"c0003", "c0004", "c0005"}
    [left] = out["unassigned"]
    assert left["call_ids"] == ["c0001", "c0002"] and left["reason"] == "no reviewer for language fr at site site-2"
    assert assigned(assign_reviews([call(6, "a5", "site-3", "en")], team)) == {"c0006": "en-all"}  # "*": every site
    out = assign_reviews([call(6, "a5", "site-3", "fr")], team[1:])
    assert not out["plans"] and out["unassigned"][0]["reason"] == "no reviewer covers site site-3"


def test_every_call_goes_to_an_eligible_reviewer_within_capacity_or_is_unassigned_with_the_reason():
    rng = random.Random(7)
    sites, languages = ["site-1", "site-2", "site-3"], ["en", "fr", "zh"]
    spec = [reviewer(f"r{i}", sites=rng.choice(["*", rng.sample(sites, rng.randint(1, 2))]),
                     languages=rng.sample(languages, rng.randint(1, 2)), per_day=rng.randint(1, 12)) for i in range(6)]
    queue = [call(n, f"agent-{rng.randint(1, 40)}", rng.choice(sites), rng.choice(languages),
                  rng.choice(["recording_review", "live_remote", "side_by_side"]), rng.randint(1, 9)) for n in range(150)]
    for row in queue:  # an agent works at one site
        row["site_id"] = sites[int(row["agent_id"].split("-")[1]) % 3]
    out = assign_reviews(queue, parse_reviewers(spec))
    plain = {r["id"]: r for r in spec}
    eligible = lambda r, c: (r["sites"] == "*" or c["site_id"] in r["sites"]) and c["language"] in r["languages"]
    rows = {c["call_id"]: c for c in queue}
    by_call = assigned(out)
    for c, who in by_call.items():
        assert eligible(plain[who], rows[c])
    assert all(n <= plain[who]["reviews_per_day"] for who, n in loads(out).items())
    left = [c for u in out["unassigned"] for c in u["call_ids"]]
    assert sorted(left + list(by_call)) == sorted(rows)  # every call once
    for u in out["unassigned"]:
        c = rows[u["call_ids"][0]]
        able = [r for r in spec if eligible(r, c)]
        if able:
            assert u["reason"].startswith("capacity exhausted") and all(
                loads(out).get(r["id"], 0) == r["reviews_per_day"] for r in able)
        else:
            assert u["reason"].startswith("no reviewer") and c["site_id"] in u["reason"]


def test_reviews_are_balanced_by_free_capacity_riskiest_first():
    team = parse_reviewers([reviewer("a", per_day=10), reviewer("b", per_day=20), reviewer("c", per_day=30)])
    out = assign_reviews([call(i, f"agent-{i:03d}") for i in range(30)], team)
    assert loads(out) == {"a": 5, "b": 10, "c": 15} and not out["unassigned"]  # each at half their capacity
    assert [(r["reviewer"], r["assigned"], r["free"]) for r in out["reviewers"]] == [("a", 5, 5), ("b", 10, 10),
                                                                                     ("c", 15, 15)]
    over = [call(i, f"agent-{i:03d}", risk=100 - i) for i in range(75)]
    out = assign_reviews(over, team)
    assert loads(out) == {"a": 10, "b": 20, "c": 30}
    assert sorted(c for u in out["unassigned"] for c in u["call_ids"]) == [f"c{i:04d}" for i in range(60, 75)]
    assert {u["reason"] for u in out["unassigned"]} == {"capacity exhausted: every reviewer eligible (a, b, c) is full"}


# four items of hotline-100 2024.1, 50 points: a score of p % is p / 2 points
ITEMS = (("knowledge.accuracy", 20), ("answering.lets_finish", 10), ("answering.listens_responds", 10),
         ("answering.handles_objections", 10))


def scored(pct: float) -> list[dict]:
    left, items = pct / 2, []
    for item, most in ITEMS:
        got = min(most, left)
        left -= got
        items.append({"item_id": item, "score": got, "max_score": most})
    return items


def calibration(call_id: str, day: str, pcts: dict) -> list[dict]:
    return [{"evaluation_id": f"{call_id}-{who}", "call_id": call_id, "agent_id": "x", "evaluator_id": who,
             "form_id": "hotline-100", "form_version": "2024.1", "event_time": f"{day}T10:00:00.000Z",
             "kind": "calibration", "items": scored(pct)} for who, pct in pcts.items()]


# 4 March: cy is 8 and 6 points under each call's mean (76, 68): mean |deviation| 7 > 6, outside
FIRST = calibration("k1", "2024-03-04", {"ana": 80, "bo": 80, "cy": 68}) + \
    calibration("k2", "2024-03-04", {"ana": 70, "bo": 72, "cy": 62})
# 11 March: cy 2 points under the mean (79): over the 30 days to 11 March, (8 + 6 + 2) / 3 = 5.33, inside again
LATER = calibration("k3", "2024-03-11", {"ana": 80, "bo": 80, "cy": 77})


def test_calibration_standing_is_the_mean_deviation_of_the_30_days_to_the_latest_calibration_against_6_points():
    first = standings(FIRST)
    assert first["cy"] == {"calibrated_on": "2024-03-04", "since": "2024-02-04", "calls": 2, "mean_abs_deviation": 7.0,
                           "limit": 6.0, "outside": True}
    assert first["ana"]["mean_abs_deviation"] == 3.0 and first["bo"]["mean_abs_deviation"] == 4.0  # (4+2)/2, (4+4)/2
    assert not first["ana"]["outside"] and not first["bo"]["outside"]
    later = standings(FIRST + LATER)
    assert (later["cy"]["calibrated_on"], later["cy"]["calls"], later["cy"]["mean_abs_deviation"]) == ("2024-03-11", 3, 5.33)
    assert not later["cy"]["outside"]
    assert standings(FIRST + LATER, as_of=date(2024, 3, 10))["cy"]["outside"]  # a plan before the recalibration
    # 90 days on: those inside are no longer calibrated; one outside stays outside until recalibrated
    ninety = standings(FIRST, as_of=date(2024, 6, 2))
    assert set(ninety) == {"cy"} and ninety["cy"]["outside"] and ninety["cy"]["calibrated_on"] == "2024-03-04"
    # one later call 5 points off does not clear a standing: (8 + 6 + 5) / 3 = 6.33
    harsh = calibration("k5", "2024-03-11", {"ana": 80, "bo": 80, "cy": 72.5})  # mean 77.5: cy 5 under
    assert standings(FIRST + harsh)["cy"]["mean_abs_deviation"] == 6.33 and standings(FIRST + harsh)["cy"]["outside"]
    # calls over 30 days before the latest calibration leave the window
    april = calibration("k6", "2024-04-10", {"ana": 80, "bo": 80, "cy": 77})
    assert standings(FIRST + april)["cy"] == {"calibrated_on": "2024-04-10", "since": "2024-03-12", "calls": 1,
                                              "mean_abs_deviation": 2.0, "limit": 6.0, "outside": False}
    at_the_limit = standings(calibration("k4", "2024-03-12", {"ana": 80, "bo": 80, "cy": 71}))  # mean 77: 6 under
    assert at_the_limit["cy"]["mean_abs_deviation"] == 6.0 and not at_the_limit["cy"]["outside"]  # over 6 flags


def test_a_reviewer_outside_the_calibration_limit_gets_no_coaching_until_recalibrated_inside():
    team = parse_reviewers([reviewer("cy", per_day=100), reviewer("ana", per_day=10)])
    queue = [call(1, "rookie", method="side_by_side", risk=4), call(2, "rookie", method="side_by_side", risk=4),
             call(3, "veteran", risk=1), call(4, "drifting", method="side_by_side", risk=3)]
    flagged = assign_reviews(queue, team, standings(FIRST))
    coaching = {p["reviewer"] for p in flagged["plans"] if p["coaching"]}
    assert coaching == {"ana"} and assigned(flagged)["c0003"] == "cy"  # cy still reviews recordings
    summary = {r["reviewer"]: r for r in flagged["reviewers"]}
    assert summary["cy"]["coaching_sessions"] == 0 and not summary["cy"]["coaches"]
    assert summary["ana"]["coaching_sessions"] == 3 and summary["cy"]["reviews"] == 1
    rookie = next(p for p in flagged["plans"] if p["agent_id"] == "rookie")
    assert "coaching by Reviewer ana (ana)" in rookie["why"]
    assert "inside the calibration limit (mean |deviation| 3 ≤ 6 points, 2 calls" in rookie["why"]
    alone = assign_reviews(queue, team[:1], standings(FIRST))
    assert {c for u in alone["unassigned"] for c in u["call_ids"]} == {"c0001", "c0002", "c0004"}
    assert {u["reason"] for u in alone["unassigned"]} == {
        "no reviewer may coach (side by side) in en at site site-1: cy outside the calibration limit"}
    recalibrated = assign_reviews(queue, team, standings(FIRST + LATER))
    # the riskiest unit to cy again (both free, cy with more room); the next to ana (0 of 10 used against cy's 2 of 100)
    assert [(p["agent_id"], p["reviewer"]) for p in recalibrated["plans"] if p["coaching"]] == [("rookie", "cy"),
                                                                                               ("drifting", "ana")]
    assert {r["reviewer"]: r["coaching_sessions"] for r in recalibrated["reviewers"]} == {"ana": 1, "cy": 2}
    no_coach = parse_reviewers([reviewer("cy", per_day=100, coaching=False), reviewer("ana", per_day=10)])
    assert {p["reviewer"] for p in assign_reviews(queue, no_coach)["plans"] if p["coaching"]} == {"ana"}


def test_the_same_queue_and_reviewers_give_the_same_assignment_in_any_order():
    rng = random.Random(3)
    spec = [reviewer(f"r{i}", languages=rng.sample(["en", "fr"], rng.randint(1, 2)), per_day=rng.randint(3, 9))
            for i in range(5)]
    queue = [call(n, f"agent-{rng.randint(1, 12)}", "site-1", rng.choice(["en", "fr"]),
                  rng.choice(["recording_review", "side_by_side"]), rng.randint(1, 4)) for n in range(60)]
    first = assign_reviews(queue, parse_reviewers(spec), standings(FIRST))
    for _ in range(5):
        rng.shuffle(queue)
        rng.shuffle(spec)
        assert assign_reviews([dict(c) for c in queue], parse_reviewers(spec), standings(FIRST)) == first


GOOD = {"id": "a", "sites": "*", "languages": ["en"], "reviews_per_day": 5}


@pytest.mark.parametrize("spec, message", [
    ([{**GOOD, "langs": ["fr"]}], "reviewer 1 (a): unknown key 'langs'"),
    ([GOOD, {**GOOD, "name": "Another A"}], "reviewer 2 (a): duplicate id 'a'"),
    ([{**GOOD, "reviews_per_day": 0}], "reviewer 1 (a): reviews_per_day must be a positive whole number (got 0)"),
    ([{**GOOD, "reviews_per_day": -3}], "reviews_per_day must be a positive whole number (got -3)"),
    ([{**GOOD, "reviews_per_day": 2.5}], "reviews_per_day must be a positive whole number (got 2.5)"),
    ([{**GOOD, "reviews_per_day": True}], "reviews_per_day must be a positive whole number (got True)"),
    ([{**GOOD, "languages": []}], "reviewer 1 (a): languages must be a non-empty list"),
    ([{**GOOD, "languages": ["English"]}], "language 'English' is not a language code"),
    ([{**GOOD, "sites": []}], "sites must be \"*\" or a non-empty list of site ids"),
    ([{**GOOD, "coaching": "yes"}], "coaching must be true or false"),
    ([{k: v for k, v in GOOD.items() if k != "reviews_per_day"}], "reviewer 1 (a): missing reviews_per_day"),
    ([{**GOOD, "id": ""}], "reviewer 1: id must be a non-empty string"),
    ({"reviewers": [GOOD]}, "must be a non-empty JSON list of reviewers"),
    ([], "must be a non-empty JSON list of reviewers"),
    ("[{\"id\": ", "not a readable JSON file"),
])
def test_a_bad_reviewers_file_is_a_one_line_error_naming_the_setting(tmp_path, spec, message):
    path = write(tmp_path, spec)
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"CALLQA_REVIEWERS_FILE": str(path)})
    text = str(caught.value)
    assert text.startswith(f"CALLQA_REVIEWERS_FILE={path}: ") and message in text and "\n" not in text


def test_a_missing_reviewers_file_stops_plan_with_exit_2(tmp_path):
    done = run_callqa(["plan", "--day", "2024-03-05"], callqa_env(tmp_path, CALLQA_REVIEWERS_FILE=str(tmp_path / "no.json")))
    assert done.returncode == 2 and "CALLQA_REVIEWERS_FILE=" in done.stderr and "not a readable JSON file" in done.stderr
    assert "Traceback" not in done.stderr


DAY = "2024-03-05"


def _store_with_a_day(tmp_path):
    """A store holding a day's review queue at two sites, the calls' languages (speech analytics, else the
    agent's profile) and a calibration in which cy is 7 points off."""
    from sinks.migrate import migrate
    from sinks.store import EmbeddedStore

    def q(n, agent, site, method="recording_review", risk=2.0):
        return {"call_id": f"q{n}", "recording_id": f"rec-q{n}", "agent_id": agent, "site_id": site,
                "team_id": f"{site}/team-1", "day": DAY, "at": f"{DAY}T10:{n:02d}:00.000Z", "method": method,
                "reason": "rate", "risk": risk, "status": "queued", "version": 1}

    def raw(event_type, site, event_time, **fields):
        event = {"event_id": f"{event_type}-{fields.get('call_id') or fields['agent_id']}", "event_type": event_type,
                 "schema_version": 1, "event_time": event_time, "site_id": site, "source": "test", **fields}
        return {"event_id": event["event_id"], "event_type": event_type, "site_id": site, "source": "test",
                "event_time": event_time, "call_id": fields.get("call_id", ""), "agent_id": fields["agent_id"],
                "payload": json.dumps(event)}

    queue = [q(1, "fr-agent", "site-2"), q(2, "fr-agent", "site-2"), q(3, "en-agent", "site-2"),
             q(4, "zh-agent", "site-2"), q(5, "rookie", "site-1", "side_by_side", 5.0),
             q(6, "rookie", "site-1", "side_by_side", 5.0), q(7, "en-agent-1", "site-1")]
    events = [raw("agent.profile", "site-2", "2024-03-01T00:00:00.000Z", agent_id="fr-agent", team_id="t",
                  hire_date="2020-01-01", language="fr"),
              raw("speech.analyzed", "site-2", f"{DAY}T10:05:00.000Z", call_id="q3", agent_id="en-agent", language="en"),
              raw("speech.analyzed", "site-2", f"{DAY}T10:06:00.000Z", call_id="q4", agent_id="zh-agent", language="zh"),
              raw("speech.analyzed", "site-1", f"{DAY}T10:07:00.000Z", call_id="q7", agent_id="en-agent-1", language="en")]
    evaluations = [{"evaluation_id": e["evaluation_id"], "kind": "calibration", "call_id": e["call_id"], "agent_id": "x",
                    "site_id": "site-1", "evaluator_id": e["evaluator_id"], "form_id": e["form_id"],
                    "form_version": e["form_version"], "evaluated_at": e["event_time"],
                    "item_ids": [i["item_id"] for i in e["items"]], "item_scores": [i["score"] for i in e["items"]],
                    "item_max": [i["max_score"] for i in e["items"]], "version": 1} for e in FIRST]
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        migrate(store)
        store.insert("review_queue", queue)
        store.insert("raw_events", events)
        store.insert("evaluations", evaluations)
    finally:
        store.close()


def test_plan_assigns_named_reviewers_by_site_language_and_standing_from_the_store(tmp_path):
    _store_with_a_day(tmp_path)
    path = write(tmp_path, [reviewer("cy", languages=["en"], per_day=20),
                            reviewer("ana", sites=["site-1"], languages=["en"], per_day=4),
                            reviewer("fra", sites=["site-2"], languages=["fr"], per_day=5, coaching=False)])
    env = callqa_env(tmp_path, CALLQA_REVIEWERS_FILE=str(path))
    done = run_callqa(["plan", "--day", DAY, "--json"], env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["capacity"] == {"reviews": 29, "from": "CALLQA_REVIEWERS_FILE", "words": out["capacity"]["words"]}
    by_call = assigned(out)
    assert by_call == {"q1": "fra", "q2": "fra",  # the agent's profile language (no speech analytics)
                       "q3": "cy",  # English at site-2: cy, the only English reviewer there
                       "q5": "ana", "q6": "ana",  # coaching: cy is outside the calibration limit (7 > 6)
                       "q7": "cy"}
    [left] = out["unassigned"]
    assert left["call_ids"] == ["q4"] and left["reason"] == "no reviewer for language zh at site site-2"
    summary = {r["reviewer"]: r for r in out["reviewers"]}
    assert summary["cy"]["standing"]["outside"] and summary["cy"]["coaching_sessions"] == 0
    assert (summary["ana"]["coaching_sessions"], summary["ana"]["capacity"], summary["ana"]["free"]) == (2, 4, 2)
    assert [(p["reviewer_name"], p["language"]) for p in out["plans"] if p["agent_id"] == "fr-agent"] == [
        ("Reviewer fra", "fr")]
    quiet = run_callqa(["-q", "plan", "--day", DAY], env)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    assert lines[0] == f"Review plans for {DAY}: 6 of 7 queued calls planned for 3 reviewers; 1 unassigned"
    assert lines[1].startswith("capacity: 29 reviews a day, the sum of the 3 named reviewers' reviews_per_day")
    assert "reviewer\tname\tsites\tlanguages\tcapacity\treviews\tcoaching sessions\tfree\tcalibration standing" in lines
    assert any(line.startswith("zh-agent\tsite-2/team-1\tsite-2\tzh\trecording_review\t1\tno reviewer") for line in lines)
    fallback = json.loads(run_callqa(["plan", "--day", DAY, "--json"], callqa_env(tmp_path)).stdout)
    assert fallback["capacity"]["from"] == "CALLQA_QA_REVIEWERS" and fallback["capacity"]["reviews"] == 1008
    assert fallback["planned"] == 7 and not fallback["unassigned"]  # qa-01...: every site and language


def test_the_simulator_s_evaluators_are_the_named_reviewers_of_the_call_s_site_and_language():
    from sources.simulator import SimConfig, Simulator

    team = parse_reviewers([reviewer("li", sites=["site-1"], languages=["zh"]), reviewer("sam", languages=["en"]),
                            reviewer("kim", languages=["en", "zh"]), reviewer("jo", sites=["site-2"], languages=["en"])])
    events = list(Simulator(SimConfig(2, 10, 2, date(2024, 3, 4), 1, reviewers=team)).events())
    human = [(e["site_id"], e["evaluator_id"]) for e in events
             if e["event_type"] == "evaluation.submitted" and e["kind"] == "human"]
    # the simulator's site-1 speaks Chinese, site-2 English
    assert human and {who for site, who in human if site == "site-1"} <= {"li", "kim"}
    assert {who for site, who in human if site == "site-2"} <= {"sam", "kim", "jo"}
    calibrated = [e for e in events if e["event_type"] == "evaluation.submitted" and e["kind"] == "calibration"]
    assert {e["evaluator_id"] for e in calibrated} == {"qa-lead", "li", "sam", "kim", "jo"}
    standing = standings(calibrated)  # the third reviewer scores 9 points under the others (qa-03's bias)
    assert standing["kim"]["outside"] and not any(standing[r]["outside"] for r in ("li", "sam", "jo"))
    default = [e["evaluator_id"] for e in Simulator(SimConfig(2, 10, 2, date(2024, 3, 4), 1)).events()
               if e["event_type"] == "evaluation.submitted"]
    assert set(default) <= {"qa-lead"} | {f"qa-{i:02d}" for i in range(1, 7)}  # without a file: qa-01...
