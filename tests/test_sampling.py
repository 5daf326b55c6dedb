"""The monitoring-frequency policy and per-call sampling decisions (pure core, no servers)."""
import json
from collections import Counter
from dataclasses import replace

import pytest

from callqa.core.sampling import DAY_MS, PolicyConfig, Sampler, agent_targets, change_signal, incident_signal, uniform
from callqa.core.thresholds import ThresholdMonitor
from schemas import format_ms, time_ms

T0 = time_ms("2024-03-04T00:00:00.000Z")  # a Monday
HOUR = 3_600_000
PROFILES = {
    "veteran": {"site_id": "s1", "team_id": "s1/t1", "hire_date": "2015-01-01", "tier": "middle",
                "shift": {"start": "08:00", "end": "17:00"}},
    "rookie": {"site_id": "s1", "team_id": "s1/t1", "hire_date": "2024-02-20", "tier": "middle",
               "shift": {"start": "08:00", "end": "17:00"}},
    "laggard": {"site_id": "s1", "team_id": "s1/t2", "hire_date": "2015-01-01", "tier": "low",
                "shift": {"start": "08:00", "end": "17:00"}},
    "star": {"site_id": "s2", "team_id": "s2/t1", "hire_date": "2015-01-01", "tier": "high",
             "shift": {"start": "08:00", "end": "17:00"}},
}


def sampler(policy=PolicyConfig(), profiles=PROFILES, key=b"test-key"):
    return Sampler({}, {}, profiles, policy, key)


def call(agent, at, n, duration=180_000):
    site = PROFILES.get(agent, {}).get("site_id", "s1")
    return {"call_id": f"{agent}-{n}", "recording_id": f"rec-{agent}-{n}", "storage_uri": "s3://x", "agent_id": agent,
            "site_id": site, "queue_id": "billing", "answered_ms": at - duration, "duration_ms": duration, "at_ms": at}


def workday_calls(agent, days, per_day=40, start=T0):
    """``per_day`` calls spread over 09:00-16:00 of each day."""
    for d in range(days):
        for i in range(per_day):
            yield call(agent, start + d * DAY_MS + 9 * HOUR + i * (7 * HOUR // per_day), d * 1000 + i)


EVIDENCE = {"incident": "agent|s1|veteran|1", "metrics": ["qa_human"], "chart": "cusum", "value": 70.0,
            "statistic": 9.0, "limit": 8.0, "baseline_mean": 85.0, "baseline_sigma": 5.0, "observations": 60}


def test_agent_rates_follow_the_manual_weights():
    s = sampler()
    rates = {}
    for agent in PROFILES:
        (change,) = s.decide(call(agent, T0 + 10 * HOUR, 0)).rates
        assert change["cause"] == "initial" and change["old_rate"] == 0
        rates[agent] = change["new_rate"]
    p = PolicyConfig()
    assert rates["veteran"] == round(p.base_rate * 0.67, 6)
    assert rates["rookie"] == round(p.base_rate * 4.0 * 0.67, 6)
    assert rates["laggard"] == round(p.base_rate * 2.25, 6) and rates["star"] == round(p.base_rate * 0.75, 6)
    assert rates["rookie"] > rates["laggard"] > rates["star"] > rates["veteran"]  # a new hire gets the most


def test_new_hires_are_recommended_side_by_side_and_others_recording_review():
    s = sampler()
    methods = {a: s.decide(call(a, T0 + 10 * HOUR, 0)).decisions[0]["method"] for a in PROFILES}
    assert methods == {"veteran": "recording_review", "rookie": "side_by_side", "laggard": "recording_review",
                       "star": "recording_review"}


def test_an_incident_raises_at_once_and_relaxes_within_a_working_day_of_its_close_with_hysteresis():
    policy = PolicyConfig()
    s = sampler(policy)
    base = s.decide(call("veteran", T0 + 9 * HOUR, 0)).rates[0]["new_rate"]
    signal_id = "agent|s1|veteran|1|agent"
    (raised,) = s.signal("veteran", signal_id, incident_signal("agent", True, EVIDENCE, policy), T0 + 10 * HOUR).rates
    assert raised["cause"] == "raised" and raised["old_rate"] == base and raised["new_rate"] == round(base * 3, 6)
    assert raised["signal_kind"] == "drift:agent" and json.loads(raised["evidence"])["baseline_mean"] == 85.0
    assert s.decide(call("veteran", T0 + 11 * HOUR, 1)).decisions[0]["method"] == "side_by_side"

    # closed 6 h after the raise: held until the dwell (a day) is over, then relaxed by the next call
    closed = incident_signal("agent", False, EVIDENCE, policy)
    assert s.signal("veteran", signal_id, closed, T0 + 16 * HOUR).rates == []
    assert s.decide(call("veteran", T0 + 20 * HOUR, 2)).rates == []
    (relaxed,) = s.decide(call("veteran", T0 + DAY_MS + 10 * HOUR, 3)).rates
    assert relaxed["cause"] == "relaxed" and relaxed["new_rate"] == base

    # hysteresis: a target only slightly below the current rate does not move it
    small = replace(policy, drift_factor={"agent": 1.05, "team": 1.05, "site": 1.05})
    s2 = sampler(small)
    s2.decide(call("veteran", T0, 0))
    s2.signal("veteran", signal_id, incident_signal("agent", True, EVIDENCE, small), T0 + HOUR)
    s2.signal("veteran", signal_id, incident_signal("agent", False, EVIDENCE, small), T0 + HOUR)
    assert s2.decide(call("veteran", T0 + 10 * DAY_MS, 1)).rates == []


def test_team_alerts_and_ops_changes_reach_the_agents_in_scope_and_expire():
    policy = PolicyConfig()
    assert agent_targets("team", ["s1/t1"], "s1", PROFILES) == ["rookie", "veteran"]
    assert agent_targets("site", ["s2"], None, PROFILES) == ["star"]
    assert agent_targets("center", [], None, PROFILES) == sorted(PROFILES)
    assert agent_targets("queue", ["billing"], "s1", PROFILES) == ["laggard", "rookie", "veteran"]

    s = sampler()
    base = s.decide(call("laggard", T0 + 9 * HOUR, 0)).rates[0]["new_rate"]
    change = {"change_id": "kb-7", "change_type": "knowledge_update", "scope": {"level": "team", "ids": ["s1/t2"]},
              "effective_from": format_ms(T0 + DAY_MS), "description": "new card fees"}
    sid, sig = change_signal(change, policy)
    assert s.signal("laggard", sid, sig, T0 + 10 * HOUR).rates == []  # not yet effective
    (raised,) = s.decide(call("laggard", T0 + DAY_MS + 9 * HOUR, 1)).rates
    assert raised["signal_kind"] == "ops:knowledge_update" and raised["new_rate"] == round(min(0.5, base * 2), 6)
    assert json.loads(raised["evidence"])["description"] == "new card fees"
    assert s.decide(call("laggard", T0 + 14 * DAY_MS + 9 * HOUR, 2)).rates == []  # still effective
    (relaxed,) = s.decide(call("laggard", T0 + 15 * DAY_MS + 10 * HOUR, 3)).rates
    assert relaxed["cause"] == "relaxed" and relaxed["new_rate"] == base


def test_tenure_moves_the_rate_as_a_new_hire_settles_in():
    s = sampler()
    first = s.decide(call("rookie", T0 + 9 * HOUR, 0)).rates[0]
    later = s.decide(call("rookie", T0 + 80 * DAY_MS, 1)).rates[0]  # hired 2024-02-20: 90 days on 2024-05-20
    assert later["cause"] == "relaxed" and later["factors_changed"] == ["tenure"]
    assert later["new_rate"] == round(first["new_rate"] / 4.0 * 1.3, 6)


def test_draws_are_replay_stable_keyed_and_not_predictable():
    a, b = sampler(key=b"k1"), sampler(key=b"k1")
    calls = list(workday_calls("veteran", 5))
    picks = [d["selected"] for c in calls for d in a.decide(c).decisions]
    assert picks == [d["selected"] for c in calls for d in b.decide(c).decisions]  # a replay decides the same
    other = sampler(key=b"k2")
    assert picks != [d["selected"] for c in calls for d in other.decide(c).decisions]  # the key matters
    draws = [uniform(b"k1", f"call-{i}") for i in range(20000)]
    assert all(0 <= u < 1 for u in draws) and abs(sum(draws) / len(draws) - 0.5) < 0.01
    positions = Counter(i % 40 for i, picked in enumerate(picks) if picked)  # no favourite position in the day
    assert max(positions.values()) <= 3


def test_a_month_meets_the_minimum_per_agent_and_covers_every_weekday_and_shift_band():
    s = sampler(replace(PolicyConfig(), base_rate=0.01))
    start = time_ms("2024-04-01T00:00:00.000Z")
    selected = Counter()
    cells = set()
    for d in range(30):
        for i in range(36):  # 08:00-17:00, a call every 15 minutes
            c = call("veteran", start + d * DAY_MS + 8 * HOUR + i * 15 * 60_000 + 200_000, d * 100 + i)
            (decision,) = s.decide(c).decisions
            if decision["selected"]:
                selected[decision["reason"]] += 1
                cells.add(decision["cell"])
    total = sum(selected.values())
    assert 30 <= total <= 45, selected  # 1% of 1,080 calls would be 11: the monthly minimum takes it to 30
    assert selected["pace"] > 0
    assert {c.split("-")[0] for c in cells} == {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    assert {c.split("-")[1] for c in cells} == {"first_hour", "middle", "last_two_hours"}


def test_a_weekday_and_shift_band_without_a_review_this_month_is_drawn_more_often():
    s = sampler(replace(PolicyConfig(), min_per_month=0))
    t = T0 + 7 * DAY_MS  # Monday 2024-03-11
    s.decide(call("veteran", t + 9 * HOUR, 0))
    s.agents["veteran"]["cells"] = ["Mon-middle"]  # as if a Monday mid-shift call had been reviewed
    covered = s.decide(call("veteran", t + 10 * HOUR, 1)).decisions[0]
    uncovered = s.decide(call("veteran", t + 8 * HOUR + 1_000, 2, duration=500)).decisions[0]
    assert covered["cell"] == "Mon-middle" and uncovered["cell"] == "Mon-first_hour"
    ramp = (10 * DAY_MS + 8 * HOUR + 1_000) / (31 * DAY_MS)  # share of March gone; the boost reaches ×3 at its end
    assert uncovered["probability"] == round(covered["probability"] * (1 + 2 * ramp), 6)  # same factors while learning


def busy_days(s, days, agents=("veteran", "star", "laggard"), per_day=30):
    """Every agent's workday calls through ``s`` in time order; the decisions and review rows, each as
    last revised, and the days' queues as they ended."""
    calls = sorted((c for a in agents for c in workday_calls(a, days, per_day)), key=lambda c: (c["at_ms"], c["call_id"]))
    decisions, reviews, queues = {}, {}, []
    for c in calls + [call("veteran", T0 + days * DAY_MS + 9 * HOUR, 10**6)]:  # a next day's call ends the last
        day = s.partitions.get("0", {}).get("day")
        queue = list(s.partitions.get("0", {}).get("queue", []))
        out = s.decide(c)
        if s.partitions["0"]["day"] != day and day is not None:
            queues.append(queue)
        for d in out.decisions:
            decisions[d["call_id"]] = d
        for r in out.reviews:
            reviews[r["call_id"]] = r
    return calls, decisions, reviews, queues


def test_capacity_caps_a_day_at_the_lowest_priorities_and_revises_their_probability():
    """A full day keeps the selections of lowest priority u / (p × risk), whatever their order of arrival;
    the others are skipped or displaced with their reason; once the day is over each kept call's
    probability is revised by min(1, τ × risk), τ the lowest priority refused (recomputed here from the
    keyed draws)."""
    policy = replace(PolicyConfig(), base_rate=0.5, reviewers=1, reviews_per_hour=5, review_hours=1.0)
    s = sampler(policy)
    calls, decisions, reviews, queues = busy_days(s, 1)
    ids = {c["call_id"] for c in calls}
    final = {c for c, r in reviews.items() if r["status"] == "queued" and c in ids}
    assert len(final) == len(queues[0]) == 5  # 1 reviewer × 5 reviews an hour × 1 hour
    first_p = {c: d["probability"] / d["factors"].get("capacity", 1.0) for c, d in decisions.items() if c in ids}
    draws = {c: uniform(b"test-key", c) for c in ids}
    drawn = [c for c in ids if draws[c] < first_p[c]]
    priority = {c: draws[c] / (first_p[c] * decisions[c]["risk"]) for c in drawn}
    ranked = sorted(drawn, key=priority.get)
    assert len(drawn) > 10 and final == set(ranked[:5])
    assert all(decisions[c]["reason"].startswith(("capacity", "displaced")) and not decisions[c]["selected"]
               for c in ranked[5:])
    assert any(r["status"] == "dropped" for r in reviews.values())
    tau = priority[ranked[5]]
    for c in final:
        d = decisions[c]
        share = min(1.0, tau * d["risk"])
        assert d["factors"].get("capacity", 1.0) == pytest.approx(share, abs=1e-5)
        assert d["version"] == (3 if share < 1 else 1) and d["probability"] == pytest.approx(first_p[c] * share, abs=1e-5)
    # a new day starts with a fresh capacity
    assert s.partitions["0"]["day"] == "2024-03-05" and len(s.partitions["0"]["queue"]) <= 1


def test_capacity_cut_keeps_every_calls_inclusion_probability_known():
    """Over busy days (capacity 8 a day against ~22 selections), the Horvitz-Thompson count of each
    agent's calls — the sum of 1/p over their reviewed calls, p as last revised — is their true number
    of calls (pooled over six sampling keys: one key's 80 days leave ±20 % of noise on the agents
    reviewed least); with p as first decided it falls short by the cut. Every agent is reviewed on
    busy days, the riskiest most."""
    policy = replace(PolicyConfig(), base_rate=0.2, min_per_month=0, coverage_factor=1.0, reviewers=1,
                     reviews_per_hour=8, review_hours=1.0)
    days, keys = 80, 6
    estimate, as_first, share = Counter(), Counter(), Counter()
    for k in range(keys):
        calls, decisions, reviews, _ = busy_days(sampler(policy, key=f"key-{k}".encode()), days)
        ids = {c["call_id"] for c in calls}
        reviewed = [decisions[c] for c, r in reviews.items() if r["status"] == "queued" and c in ids]
        assert 0.95 * 8 * days <= len(reviewed) <= 8 * days  # nearly every day full
        for d in reviewed:
            estimate[d["agent_id"]] += 1 / d["probability"]
            as_first[d["agent_id"]] += d["factors"].get("capacity", 1.0) / d["probability"]
            share[d["agent_id"]] += 1
    truth = 30 * days * keys
    for agent in ("veteran", "star", "laggard"):
        assert abs(estimate[agent] / truth - 1) < 0.2, (agent, estimate[agent] / truth)
        assert as_first[agent] / truth < 0.8, (agent, as_first[agent] / truth)
    assert share["laggard"] > 3 * share["star"] > 0 and share["veteran"] > 0


def test_call_factors_steer_reviews_to_the_manuals_shares():
    s = sampler(replace(PolicyConfig(), base_rate=0.2, min_per_month=0, coverage_factor=1.0))
    by_band, by_duration = Counter(), Counter()
    for d in range(20):
        for i in range(36):
            duration = (60_000, 180_000, 300_000)[i % 3]
            c = call("veteran", T0 + d * DAY_MS + 8 * HOUR + i * 15 * 60_000 + duration, d * 100 + i, duration)
            (decision,) = s.decide(c).decisions
            if decision["selected"] and d >= 5:
                band = decision["cell"].split("-")[1]
                by_band[band] += 1
                by_duration[duration] += 1
    total = sum(by_band.values())
    # first hour: 4 of 36 calls (11%) but a 20% share of reviews; the 50-80 s bucket: a third of calls, 40%
    assert 0.15 < by_band["first_hour"] / total < 0.30
    assert by_duration[60_000] / total > 0.36


def test_threshold_alerts_judge_closed_windows_with_hysteresis():
    m = ThresholdMonitor({})

    def window(i, sl, offered=50):
        return {"level": "site", "site_id": "s1", "entity_id": "s1", "window_s": 900,
                "window_start": format_ms(T0 + i * 900_000), "service_level": sl, "offered": offered,
                "abandon_rate": 0.01, "asa_s": 5.0}

    events = []
    for i, sl in enumerate([0.9, 0.5, 0.5, 0.79, 0.82, 0.85, 0.9, 0.9, 0.9]):
        events += m.observe([window(i, 0.99)], T0 + i * 900_000)  # early figures, replaced by later ones
        events += m.observe([window(i, sl)], T0 + (i + 1) * 900_000)  # judged once 15 min past its end
        if i >= 3:
            events += m.observe([window(i - 3, 0.0)], T0 + (i + 1) * 900_000)  # a late correction: not judged again
    assert [(e["status"], e["severity"], json.loads(e["evidence"])["window_start"][11:16]) for e in events] == [
        ("open", "critical", "00:15"), ("update", "critical", "00:30"), ("update", "warning", "00:45"),
        ("cleared", None, "01:30")]
    # 0.82 is inside the limit but within the margin: not calm; 0.85 and 0.9 are: cleared after two
    assert json.loads(events[0]["evidence"])["value"] == 0.5 and events[0]["kind"] == "threshold"
    assert events[0]["at"] == format_ms(T0 + 2 * 900_000)  # at the window's end
    late = m.observe([window(i, 0.1, offered=5) for i in (20, 21, 22, 23)], T0 + 30 * 900_000)
    assert late == []  # too few calls to judge
    # a batch is recorded whole before judging: the window's final figures count even when a later
    # window's row comes first
    b = ThresholdMonitor({})
    assert b.observe([window(3, 0.9), window(0, 0.99)], T0) == []
    assert [e["status"] for e in b.observe([window(3, 0.9), window(0, 0.5)], T0 + 3 * 900_000)] == ["open"]


def test_an_alert_on_a_queue_that_goes_quiet_clears_after_the_expiry_at_the_same_instant_on_any_batching():
    """A queue that rarely reaches 20 calls in 15 minutes is not judged again after its breach; its alert
    clears expire_after_s (4 h) after the last window judged, whether small windows keep coming or none."""
    def window(i, sl, offered):
        return {"level": "queue", "site_id": "s1", "entity_id": "q1", "window_s": 900,
                "window_start": format_ms(T0 + i * 900_000), "service_level": sl, "offered": offered,
                "abandon_rate": 0.01, "asa_s": 5.0}

    def run(rows_per_step, step_ms):
        m, events, t = ThresholdMonitor({}), [], T0
        events += m.observe([window(0, 0.5, 40)], T0 + 2 * 900_000)  # a judged breach: open
        for batch in rows_per_step:
            t += step_ms
            events += m.observe(batch, t)
        return [(e["status"], e["at"], json.loads(e["evidence"]).get("not_judged_s")) for e in events]

    quiet = [[window(i, 0.3, 3)] for i in range(1, 40)]  # small windows: never judged
    every_window = run(quiet, 900_000)
    in_big_steps = run([sum(quiet[i:i + 7], []) for i in range(0, 39, 7)], 7 * 900_000)
    nothing = run([[] for _ in range(8)], 3_600_000)  # no rows at all, the stream moves on
    expected = [("open", format_ms(T0 + 900_000), None), ("cleared", format_ms(T0 + 4 * 3_600_000 + 900_000), 14_400)]
    assert every_window == in_big_steps == nothing == expected


def test_a_call_whose_own_analytics_look_bad_is_more_likely_drawn_and_its_probability_says_so():
    s = sampler()
    for i in range(30):  # the agent's and the site's attitude and emotion: 20 points short, 5% negative
        s.observe("veteran", "s1", "qa_auto", 80.0)
        s.observe("veteran", "s1", "sentiment_negative", 0.05)
    s.decide(call("veteran", T0 + 9 * HOUR, 0))
    s.analysis("veteran", "veteran-1", {"shortfall": 40.0, "negative": 0.6})  # a bad call: twice short, upset
    s.analysis("veteran", "veteran-2", {"shortfall": 0.0, "negative": 0.0})  # a flawless one
    bad = s.decide(call("veteran", T0 + 10 * HOUR, 1)).decisions[0]
    good = s.decide(call("veteran", T0 + 10 * HOUR + 60_000, 2)).decisions[0]
    assert bad["factors"]["call_attitude"] == 2.0 and bad["factors"]["call_emotion"] == 2.0  # 2 and 12: clipped
    assert good["factors"]["call_attitude"] == 0.75 and good["factors"]["call_emotion"] == 0.75  # 0.5: clipped
    assert bad["probability"] == pytest.approx(good["probability"] * 4 / 0.75 ** 2, rel=0.01)
    plain = s.decide(call("veteran", T0 + 11 * HOUR, 3)).decisions[0]  # no analytics arrived: no call factor
    assert "call_emotion" not in plain["factors"]
