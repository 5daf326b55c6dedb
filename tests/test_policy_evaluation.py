"""End to end on the embedded path: sampling tables, reviewer plans, test-call plans, and the evaluation
command's figures on simulated traffic with injected drifts."""
import json
from datetime import date

from callqa.core.plans import SLOT_HOURS, reviewer_plans, weekly_test_calls
from sinks.store import EmbeddedStore
from tests.conftest import callqa_env, run_callqa


def test_reviewer_plans_keep_agents_whole_riskiest_first_within_capacity():
    queued = [{"call_id": f"{a}-{i}", "agent_id": a, "team_id": "t", "site_id": "s", "method": "recording_review",
               "reason": "rate", "risk": risk} for a, n, risk in (("low", 5, 1.0), ("hot", 4, 3.0), ("mid", 3, 2.0))
              for i in range(n)]
    plans = reviewer_plans(queued, ["qa-01", "qa-02"], 5)
    assert [(p["reviewer"], p["agent_id"], p["target"]) for p in plans] == [
        ("qa-01", "hot", 4), ("qa-02", "mid", 3), ("qa-02", "low", 2), ("qa-01", "low", 1)]
    assert sum(p["target"] for p in plans) == 10  # two reviewers × 5: two low-risk calls stay unplanned


def test_a_weekly_weekly_test_calls_covers_every_slot_with_no_agent_twice():
    agents = [{"agent_id": f"a{i:03d}", "site_id": "s1", "hours": list(range(8, 22))} for i in range(300)]
    plan = weekly_test_calls(date(2024, 3, 11), agents, ["e-wallet"], ["waiting.apology_after_hold"], 200, seed=1)
    assert len(plan) == 200 and len({p["agent_id"] for p in plan}) == 200
    assert {p["slot"] for p in plan} == {f"{d}-{h:02d}h" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
                                         for h in SLOT_HOURS}
    assert all("2024-03-11" <= p["at"][:10] <= "2024-03-17" for p in plan)
    assert {p["topic"] for p in plan} == {"e-wallet", "waiting.apology_after_hold"}
    few = weekly_test_calls(date(2024, 3, 11), agents[:3], [], [], 200, seed=1)
    assert len(few) == 3  # never the same agent twice
    early = [{"agent_id": "early", "site_id": "s1", "hours": [8, 9]}]
    assert weekly_test_calls(date(2024, 3, 11), early, [], [], 5, seed=2)[0]["slot"].endswith("08h")  # in their shift


def test_sampling_reaches_the_store_and_feeds_plans(tmp_path):
    env = callqa_env(tmp_path)
    done = run_callqa(["simulate", "--sites", "1", "--agents-per-site", "20", "--days", "3", "--seed", "5",
                       "--drift", "qa:team=site-1/team-1,delta=-20,from=2024-03-05"], env, timeout=600)
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        answered = store.query("SELECT count() FROM call_records FINAL WHERE outcome = 'answered'")[1][0][0]
        decided, selected = store.query("SELECT count(), countIf(selected) FROM sampling_decisions FINAL")[1][0]
        queued = store.query("SELECT count() FROM review_queue FINAL WHERE status = 'queued'")[1][0][0]
        raised = store.query("SELECT agent_id, signal_kind, evidence FROM sampling_rates WHERE cause = 'raised' "
                             "AND signal_kind LIKE 'drift:%' ORDER BY at")[1]
        by_day = dict(store.query("SELECT toString(day), count() FROM review_queue FINAL WHERE status = 'queued' GROUP BY day")[1])
    finally:
        store.close()
    assert decided == answered and selected == queued > 0  # one decision per recorded call
    assert raised and all(json.loads(evidence)["series"] for _, _, evidence in raised)
    plans = run_callqa(["plan", "--day", "2024-03-05", "--json"], env)
    assert plans.returncode == 0, plans.stderr
    rows = json.loads(plans.stdout)["plans"]
    assert sum(r["target"] for r in rows) == by_day["2024-03-05"] and all(r["reviewer"].startswith("qa-") for r in rows)
    calls = run_callqa(["test-calls", "--week", "2024-03-07", "--new-business", "e-wallet", "--json"],
                       {**env, "CALLQA_TEST_CALLS_PER_WEEK": "10"})
    assert calls.returncode == 0, calls.stderr
    plan = json.loads(calls.stdout)
    assert len(plan) == 10 and len({p["agent_id"] for p in plan}) == 10 and "e-wallet" in {p["topic"] for p in plan}
    bad = run_callqa(["plan", "--day", "tomorrow"], env)
    assert bad.returncode == 2 and "is not a date" in bad.stderr and "Traceback" not in bad.stderr


def test_the_evaluation_finds_the_drifts_groups_them_and_compares_policies_at_the_same_budget(tmp_path):
    done = run_callqa(["evaluate", "--sites", "1", "--agents-per-site", "45", "--days", "7", "--json", "--no-control",
                       "--drift", "qa:team=site-1/team-2,delta=-15,from=2024-03-07",
                       "--drift", "aht:team=site-1/team-3,factor=1.6,from=2024-03-08"], callqa_env(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    qa, aht = figures["drifts"]
    assert qa["detected_at"] and 0 <= qa["delay_operating_hours"] < 8
    assert aht["detected_at"] and 0 <= aht["delay_operating_hours"] < 8 and aht["detected_by"].endswith("handle_s")
    assert qa["notices_per_incident"] <= 3 and aht["notices_per_incident"] <= 3
    # placebos: the same rule on an untouched team finds nothing
    assert [p["detected_at"] for p in figures["placebos"]] == [None, None]
    assert figures["false_alarms_per_agent_month"]["all"] < 0.5  # 7.5 agent-months: at most 3 false alarms
    assert figures["rate_raises"]["real_share"] >= 0.8
    policies = figures["policies"]
    reviews = {policies[n]["reviews"] for n in ("adaptive", "fixed_n_uniform", "fixed_n_weighted")}
    assert len(reviews) == 1 and reviews.pop() > 0  # the same budget
    assert policies["adaptive"]["poor_found"] > policies["fixed_n_uniform"]["poor_found"]


def test_bad_drift_specs_are_clear_errors(tmp_path):
    env = callqa_env(tmp_path)
    for spec, message in (("aht:team=site-1/team-1,factor=0,from=+1", "factor must be > 0"),
                          ("qa:team=site-1/team-1,from=+inf", "finite"),
                          ("aht:team=site-1/team-1,factor=nan,from=+1", "finite"),
                          ("qa:team=site-1/team-1,from=+1,size=3", "unknown key"),
                          ("qa:team=site-9/team-1,from=+1", "no such team")):
        done = run_callqa(["evaluate", "--sites", "1", "--agents-per-site", "10", "--days", "2", "--drift", spec], env)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (spec, done.stderr)
