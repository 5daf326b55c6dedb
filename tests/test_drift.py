"""Drift charts with a false-alarm budget, peers and incidents (pure core, no servers)."""
import json
import math
import random
from dataclasses import replace

import pytest

from callqa.core import drift
from callqa.core.drift import Family, cusum_limit, limit, new_state, step
from callqa.core.monitor import BY_LEVEL, METRICS, MonitorConfig, QualityMonitor

QA = Family("normal", worse=-1, floor=2.0, warmup=10)
HOUR = 3_600_000


def test_the_normal_limit_follows_siegmunds_approximation_as_tabulated_by_montgomery():
    # Montgomery, Introduction to SQC, Table 9.3 (two-sided, k = 0.5): h = 4 → ARL0 168, h = 5 → ARL0 465;
    # one side alone runs twice as long
    assert cusum_limit(2 * 168, 1.0) == pytest.approx(4.0, abs=0.05)
    assert cusum_limit(2 * 465, 1.0) == pytest.approx(5.0, abs=0.05)
    assert limit(Family("binary"), 1e4) == pytest.approx(9.21, abs=0.01)  # ln ARL0 (Lorden's bound)


@pytest.mark.parametrize("p0,odds_ratio", [(0.05, 3.0), (0.07, 10.0), (0.25, 10.0)])
def test_binomial_limits_give_at_least_the_run_length_asked_for(p0, odds_ratio):
    """Monte Carlo of the in-control run length against the ARL0 the limit was set for (the budget
    must not be overspent)."""
    family, arl0, rng = Family("binary", odds_ratio=odds_ratio), 2000, random.Random(4)
    h, runs = limit(family, arl0), []
    odds = p0 / (1 - p0) * odds_ratio
    up, down = math.log(odds / (1 + odds) / p0), math.log((1 - odds / (1 + odds)) / (1 - p0))
    for _ in range(300):
        s, t = 0.0, 0
        while s <= h:
            t += 1
            s = max(0.0, s + (up if rng.random() < p0 else down))
        runs.append(t)
    assert sum(runs) / len(runs) >= 0.9 * arl0


def run_lengths(family, values, h, series=200):
    """False alarms over ``series`` in-control series of the values ``values(rng)`` yields."""
    rng, alarms, steps = random.Random(11), 0, 0
    for _ in range(series):
        s = new_state()
        for x in values(rng):
            signal = step(s, x, family, h)
            alarms += signal is not None and signal.chart == "cusum"
            steps += 1
    return alarms, steps


def test_in_control_normal_series_alarm_no_more_than_the_budget_allows_while_learning_their_baseline():
    arl0 = 2000
    alarms, steps = run_lengths(QA, lambda rng: (rng.gauss(85, 7) for _ in range(1000)), limit(QA, arl0))
    assert alarms / steps <= 1.5 / arl0  # the baseline is estimated as it goes: a little above the textbook rate


def test_a_constant_five_percent_transfer_series_stays_quiet_on_a_binomial_chart():
    family = METRICS["transferred"]
    alarms, _ = run_lengths(family, lambda rng: (float(rng.random() < 0.05) for _ in range(2000)), limit(family, 1e5),
                            series=50)
    assert alarms <= 1  # 100,000 observations; a normal chart of 0/1 values alarms all the time


def test_an_agent_who_stops_apologising_is_found_within_a_dozen_holds():
    family = METRICS["item:waiting.apology_after_hold"]
    rng, s = random.Random(3), new_state()
    h = limit(family, 2e5)  # an agent's item series: ~60 holds a week, a 0.0003-a-week allowance
    assert all(step(s, float(rng.random() < 0.07), family, h) is None for _ in range(300))
    holds = next(i for i in range(1, 50) if step(s, 1.0, family, h))
    assert holds <= 12


@pytest.mark.parametrize("p0", [0.07, 0.25])
def test_the_stop_design_keeps_the_run_length_and_finds_a_behaviour_that_stops_no_later(p0):
    """An item chart with the stop design beside the tenfold-odds one: in control it alarms no more than
    the run length asked for allows; an agent who stops is found in no more holds than with the
    tenfold design alone (fewer for a good agent), on the same baseline."""
    stop = METRICS["item:waiting.apology_after_hold"]
    alone = replace(stop, stop=0.0)
    assert stop.stop and limit(stop, 2000) == pytest.approx(limit(alone, 2000) + math.log(2))
    alarms, steps = run_lengths(stop, lambda rng: (float(rng.random() < p0) for _ in range(2000)), limit(stop, 2000),
                                series=100)
    assert alarms / steps <= 1 / 2000
    found = {}
    for family in (stop, alone):
        s, h, rng = new_state(), limit(family, 2e5), random.Random(3)
        assert all(step(s, float(rng.random() < p0), family, h) is None for _ in range(300))
        while s[drift.S] or s[drift.S2]:
            step(s, 0.0, family, h)
        found[family.stop] = next(i for i in range(1, 60) if step(s, 1.0, family, h))
    assert found[0.9] <= found[0.0] and (p0 > 0.1 or found[0.9] < found[0.0])


def test_handle_time_is_charted_on_a_log_scale_and_a_15_percent_rise_is_found():
    family = METRICS["handle_s"]
    rng, s = random.Random(5), new_state()
    h = limit(family, 5000)
    assert all(step(s, rng.lognormvariate(5.3, 0.6), family, h) is None for _ in range(2000))
    later = next(i for i in range(1, 5000) if step(s, 1.15 * rng.lognormvariate(5.3, 0.6), family, h))
    assert later <= 600  # calls: about 6 hours of a 15-agent team


def test_an_alarm_clears_when_the_series_comes_back_and_a_lasting_change_becomes_the_baseline():
    rng, h = random.Random(8), limit(QA, 1000)
    s = new_state()
    for _ in range(100):
        step(s, rng.gauss(85, 7), QA, h, at_ms=0)
    signals = [step(s, rng.gauss(70, 7), QA, h, at_ms=i) for i in range(30)]
    assert [x.chart for x in signals if x] == ["cusum"]
    back = [step(s, rng.gauss(85, 7), QA, h, at_ms=100 + i) for i in range(30)]
    assert [x.chart for x in back if x] == ["cleared"] and not s[drift.ALARM]
    # a drop that lasts past accept_ms is accepted as the new level, then learned afresh
    lasting = Family("normal", worse=-1, floor=2.0, warmup=10, accept_ms=50)
    s = new_state()
    for _ in range(100):
        step(s, rng.gauss(85, 7), lasting, h, at_ms=0)
    charts = [x.chart for x in (step(s, rng.gauss(70, 7), lasting, h, at_ms=10 + i) for i in range(200)) if x]
    assert charts[:2] == ["cusum", "accepted"] and s[drift.MEAN] == pytest.approx(70, abs=4)


PROFILES = {f"a{t}{i}": {"team_id": f"s1/t{t}", "site_id": "s1"} for t in (1, 2) for i in range(15)}


def feed(monitor, hours, shift=lambda agent, hour: 0.0, metric="qa_human", per_hour=4, rng=None):
    """Every agent's calls, ``per_hour`` an hour; each call observed on its agent, team and site."""
    rng, rows, reviews = rng or random.Random(1), [], []
    for hour in hours:
        for k in range(per_hour):
            at = hour * HOUR + k * HOUR // per_hour
            for agent, p in PROFILES.items():
                value = rng.gauss(85, 6) + shift(agent, hour)
                for key in (f"agent|s1|{agent}|{metric}", f"team|s1|{p['team_id']}|{metric}", f"site|s1|s1|{metric}"):
                    r, v = monitor.observe(key, value, at)
                    rows += r
                    reviews += v
    return rows, reviews


def test_a_team_wide_drop_is_one_team_incident_not_fifteen_agents():
    monitor = QualityMonitor({}, PROFILES)
    quiet, _ = feed(monitor, range(0, 200))
    assert quiet == []
    drop = lambda agent, hour: -8.0 if PROFILES[agent]["team_id"] == "s1/t1" else 0.0
    rows, reviews = feed(monitor, range(200, 260), drop)
    alarms = [r for r in rows if r["kind"] == "drift" and r["status"] == "open"]
    incidents = [r for r in rows if r["kind"] == "incident"]
    assert {(r["level"], r["entity_id"]) for r in alarms} <= {("team", "s1/t1"), ("site", "s1")}
    assert ("team", "s1/t1") in {(r["level"], r["entity_id"]) for r in alarms}
    # one incident, on the team (the site may alarm first: the incident then narrows to the team behind it)
    assert len({r["alert_id"] for r in incidents}) == 1 and len(incidents) <= 2
    assert (incidents[-1]["level"], incidents[-1]["entity_id"]) == ("team", "s1/t1")
    assert incidents[0]["opened_at"] < "1970-01-09T14"  # within 6 hours of the drop (200 h = day 9, 08:00)
    assert reviews[-1][:3] == ("team", "s1", "s1/t1") and reviews[-1][4] is True
    assert [r[4] for r in reviews if r[0] == "site"] in ([], [True, False])
    # the team comes back: the incident closes, and its review signal ends
    rows, reviews = feed(monitor, range(260, 400))
    assert [r["status"] for r in rows if r["kind"] == "incident"] == ["closed"]
    assert [(r[0], r[4]) for r in reviews] == [("team", False)]


def test_an_agent_who_moves_away_from_their_peers_is_their_own_incident():
    monitor = QualityMonitor({}, PROFILES)
    feed(monitor, range(0, 200))
    rows, _ = feed(monitor, range(200, 240), lambda agent, hour: -10.0 if agent == "a13" else 0.0)
    incidents = [r for r in rows if r["kind"] == "incident" and r["status"] == "open"]
    assert [(r["level"], r["entity_id"]) for r in incidents] == [("agent", "a13")]
    assert json.loads(incidents[0]["evidence"])["series"] == ["agent|s1|a13|qa_human"]


def test_an_agents_own_drift_is_not_excused_by_the_move_it_gives_their_team():
    """The peers' deviation an agent is charted against leaves the agent out: a13 dropping 30 points
    moves team t1's level by 2 points, and a13's expected value must stay at the team's baseline."""
    monitor = QualityMonitor({}, PROFILES, record=True)
    feed(monitor, range(0, 200))
    monitor.drain()
    feed(monitor, range(200, 212), lambda agent, hour: -30.0 if agent == "a13" else 0.0)
    expected = [r["expected"] for r in monitor.drain() if r["series"] == "agent|s1|a13|qa_human"]
    team = monitor.series["team|s1|s1/t1|qa_human"]
    assert team["fast"][0] < team["c"][drift.MEAN] - 0.5  # the team's current level did move
    assert len(expected) >= 10 and sum(expected) / len(expected) == pytest.approx(85.0, abs=0.8)


def test_durations_are_charted_on_the_sites_case_mix_of_queues():
    """A team taking more of the long queue's calls, each as long as before, is not a drift; the same
    team's calls growing 15 % in every queue is. Two queues of geometric means 120 s and 600 s."""
    monitor, rng = QualityMonitor({}, PROFILES), random.Random(5)

    def hours(span, long_share, factor):
        rows = []
        for hour in span:
            for k in range(4):
                at = hour * HOUR + k * HOUR // 4
                for agent, p in PROFILES.items():
                    moved = p["team_id"] == "s1/t1"
                    queue = "long" if rng.random() < (long_share if moved else 0.5) else "short"
                    value = rng.lognormvariate(math.log(600 if queue == "long" else 120), 0.5) * (factor if moved else 1)
                    for key in (f"agent|s1|{agent}|handle_s", f"team|s1|{p['team_id']}|handle_s", "site|s1|s1|handle_s"):
                        rows += monitor.observe(key, value, at, 1.0, queue)[0]
        return [(r["level"], r["entity_id"]) for r in rows if r["kind"] == "drift" and r["status"] == "open"]

    assert hours(range(0, 150), 0.5, 1.0) == []
    assert hours(range(150, 250), 0.9, 1.0) == []  # the team's geometric mean is 1.9 times what it was
    assert ("team", "s1/t1") in hours(range(250, 262), 0.9, 1.15)


def test_each_site_has_its_own_case_mix_in_a_monitor_holding_several():
    """Sites sharing a monitor partition, with queues of the same name: site A's billing calls take
    100 s, site B's 1,000 s; B's calls move from half billing to nine in ten, each as long as before."""
    monitor, rng, rows = QualityMonitor({}, {"a1": {"team_id": "A/t"}, "b1": {"team_id": "B/t"}}), random.Random(1), []
    for i in range(8000):
        for site, agent in (("A", "a1"), ("B", "b1")):
            queue = "billing" if site == "A" or rng.random() < (0.5 if i < 5000 else 0.9) else "tech"
            value = rng.lognormvariate(math.log(100 if site == "A" else 1000), 0.4)
            for key in (f"agent|{site}|{agent}|handle_s", f"site|{site}|{site}|handle_s", f"team|{site}|{site}/t|handle_s"):
                rows += monitor.observe(key, value, i * 120_000, 1.0, queue)[0]
    assert [r for r in rows if r["kind"] == "drift"] == []
    assert sorted(monitor.state["mix"]) == ["A|handle_s", "B|handle_s"]


def test_an_agent_who_changes_team_is_not_charted_against_the_old_teams_share():
    """a10 scores 60 in team t1 (its level moves), then joins t2: a10's expected value there is t2's."""
    profiles = {agent: dict(p) for agent, p in PROFILES.items()}
    monitor = QualityMonitor({}, profiles, record=True)
    feed(monitor, range(0, 100))
    low = lambda agent, hour: -25.0 if agent == "a10" else 0.0
    feed(monitor, range(100, 104), low)
    monitor.drain()
    profiles["a10"]["team_id"] = "s1/t2"
    monitor.observe("agent|s1|a10|qa_human", 60.0, 104 * HOUR)
    expected = [r["expected"] for r in monitor.drain() if r["series"] == "agent|s1|a10|qa_human"]
    t2, chart = monitor.series["team|s1|s1/t2|qa_human"], monitor.series["agent|s1|a10|qa_human"]["c"]
    # the agent's baseline plus t2's own deviation (t1's share of a10 left in t2 would add 1.6 points)
    assert expected[-1] == pytest.approx(chart[drift.MEAN] + t2["fast"][0] - t2["c"][drift.MEAN], abs=0.3)


def test_duration_charts_kept_from_before_the_case_mix_start_afresh_on_its_scale():
    state = {"series": {"agent|s1|a1|handle_s": {"c": new_state()}, "agent|s1|a1|qa_human": {"c": new_state()}}}
    QualityMonitor(state, PROFILES)
    assert list(state["series"]) == ["agent|s1|a1|qa_human"] and state["mix"] == {}
    state["series"]["agent|s1|a1|handle_s"] = {"c": new_state()}
    QualityMonitor(state, PROFILES)  # once: charts learnt on the case mix are kept
    assert "agent|s1|a1|handle_s" in state["series"]


def test_the_budget_shares_limits_by_level_and_size():
    config = MonitorConfig()
    assert config.allowance("agent") * 100 / config.budget == pytest.approx(0.4 / len(METRICS))
    # a false team alarm raises fifteen agents' rates: it counts fifteen times, against fifteen agents' share
    assert config.allowance("team") == pytest.approx(config.allowance("agent") * 0.3 / 0.4)


def test_an_injected_drift_raises_an_incident_on_the_embedded_path(tmp_path):
    from sinks.store import EmbeddedStore
    from tests.conftest import callqa_env, run_callqa

    env = callqa_env(tmp_path)
    truth = tmp_path / "truth.json"
    done = run_callqa(["simulate", "--sites", "1", "--agents-per-site", "15", "--days", "5", "--seed", "4",
                       "--truth", str(truth), "--drift", "aht:site=site-1,factor=1.5,from=2024-03-06"], env, timeout=600)
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        rows = store.query("SELECT kind, level, entity_id, metric, toString(opened_at) FROM alerts FINAL "
                           "WHERE status = 'open' AND kind IN ('drift', 'incident') ORDER BY opened_at")[1]
    finally:
        store.close()
    handle = [r for r in rows if "handle_s" in r[3].split(",")]
    assert handle and "2024-03-06" <= handle[0][4] < "2024-03-06 12"
    assert any(r[0] == "incident" for r in handle)
    assert [r for r in rows if r[4] < "2024-03-06"] == []  # nothing before the injected change


def test_alarms_of_one_scope_days_apart_on_other_metrics_are_separate_incidents():
    from callqa.core.incidents import Incidents

    incidents = Incidents({}, lambda agent: "s1/t1")
    alarm = {"evidence": json.dumps({"chart": "cusum"})}
    day = 86_400_000
    opened, _ = incidents.signal("site|s1|s1|item:waiting.apology_after_hold", "site", "s1", "s1",
                                 "item:waiting.apology_after_hold", 0, alarm)
    joined, _ = incidents.signal("site|s1|s1|qa_human", "site", "s1", "s1", "qa_human", 3 * 3_600_000, alarm)
    later, _ = incidents.signal("site|s1|s1|handle_s", "site", "s1", "s1", "handle_s", 5 * day, alarm)
    assert [r["status"] for r in opened] == ["open"] and joined == []  # the same cause, hours apart
    assert [r["status"] for r in later] == ["open"] and later[0]["alert_id"] != opened[0]["alert_id"]


def test_when_a_team_change_is_accepted_its_agents_move_with_it_and_raise_nothing():
    monitor = QualityMonitor({}, PROFILES)
    feed(monitor, range(0, 200))
    slower = lambda agent, hour: -8.0 if PROFILES[agent]["team_id"] == "s1/t1" else 0.0  # a lasting change
    rows, _ = feed(monitor, range(200, 200 + 24 * 12), slower)
    accepted = [r for r in rows if r["kind"] == "drift" and r["status"] == "cleared"
                and json.loads(r["evidence"])["chart"] == "accepted" and r["level"] == "team"]
    assert accepted  # held 7 days: the team's new level
    after = accepted[0]["at"]
    later_agents = [r for r in rows if r["kind"] == "drift" and r["status"] == "open" and r["level"] == "agent"
                    and r["at"] > after and PROFILES[r["entity_id"]]["team_id"] == "s1/t1"]
    assert later_agents == []  # the team's agents are not then judged against the old level


def test_an_incident_whose_series_stop_reporting_closes_as_stale():
    from callqa.core.incidents import Incidents

    incidents = Incidents({}, lambda agent: "s1/t1")
    alarm = {"evidence": json.dumps({"chart": "cusum"})}
    incidents.signal("agent|s1|a1|qa_human", "agent", "s1", "a1", "qa_human", 0, alarm)  # then the agent goes on leave
    assert incidents.tick(7 * 86_400_000) == ([], [])
    rows, reviews = incidents.tick(9 * 86_400_000)
    assert [r["status"] for r in rows] == ["closed"] and [r[4] for r in reviews] == [False]


def _qa_agent_hours(monitor: QualityMonitor, values: list[float], first_hour: int = 0) -> list[dict]:
    """One human evaluation an hour on an agent's QA chart; the drift alarms raised."""
    rows = []
    for i, value in enumerate(values):
        rows += monitor.observe("agent|s1|a1|qa_human", value, (first_hour + i) * HOUR + 600_000)[0]
    return rows


def test_the_stored_chart_state_is_the_charts_own_and_its_alarm_value_is_the_value_that_signals():
    import copy

    rng = random.Random(3)
    monitor = QualityMonitor({}, {"a1": {"team_id": "s1/t1", "site_id": "s1"}}, record=True)
    assert not _qa_agent_hours(monitor, [rng.gauss(85, 5) for _ in range(20)] + [82, 83, 82])
    kept = copy.deepcopy(monitor.state)
    # the next hour (its one evaluation at 85) and a later observation on another series, which closes it
    _qa_agent_hours(monitor, [85.0], first_hour=23)
    monitor.observe("site|s1|s1|qa_human", 85.0, 25 * HOUR)
    rows = {r["time"]: r for r in monitor.drain()}
    hour = rows["1970-01-01T23:00:00.000Z"]
    assert hour["steps"] == 1 and hour["ready"] and not hour["in_alarm"]
    s = monitor.series["agent|s1|a1|qa_human"]
    assert hour["decision_limit"] == pytest.approx(s["h"], abs=1e-4) and hour["start_statistic"] > 0
    assert hour["expected"] < 85 and hour["alarm_value"] < hour["expected"]  # lower QA is worse
    # an evaluation just past the alarm value signals in that hour; one just short of it does not
    for value, signals in ((hour["alarm_value"] - 0.05, True), (hour["alarm_value"] + 0.05, False)):
        again = QualityMonitor(copy.deepcopy(kept), {"a1": {"team_id": "s1/t1", "site_id": "s1"}}, record=True)
        alarms = [r for r in _qa_agent_hours(again, [value], first_hour=23) if r["kind"] == "drift"]
        assert bool(alarms) == signals, (value, alarms)
        if signals:  # its row now holds the statistic and limit the alarm carried
            state = {r["time"]: r for r in again.drain()}["1970-01-01T23:00:00.000Z"]
            evidence = json.loads(alarms[0]["evidence"])
            assert state["statistic"] == pytest.approx(evidence["statistic"], abs=1e-4)
            assert state["statistic"] > state["decision_limit"] == pytest.approx(evidence["limit"], abs=1e-4)
            assert state["in_alarm"] and state["alarm_value"] == hour["alarm_value"]


def test_every_hour_of_every_series_is_stored_once_with_its_latest_steps():
    monitor = QualityMonitor({}, PROFILES, record=True)
    rows, _ = feed(monitor, range(6), metric="handle_s", per_hour=5)
    monitor.observe("site|s1|s1|handle_s", 300.0, 7 * HOUR)  # the monitor's input passes hour 6
    stored: dict = {}
    for row in monitor.drain():
        key = (row["series"], row["time"])
        assert row["version"] >= stored.get(key, {"version": 0})["version"]
        stored[key] = row
    # every series that completed a subgroup in an hour has that hour: 30 agents, 2 teams and the site
    series = {k for k, _ in stored}
    assert len(series) == 33 and {t for _, t in stored} == {f"1970-01-01T0{h}:00:00.000Z" for h in range(6)}
    site = [stored[("site|s1|s1|handle_s", f"1970-01-01T0{h}:00:00.000Z")] for h in range(6)]
    assert [r["steps"] for r in site] == [15] * 6 and all(r["observations"] == 150 for r in site)  # 150 calls, subgroups of 10
    assert not any(r["kind"] == "drift" for r in rows)


def test_weighted_human_qa_is_charted_by_design_band_and_keeps_its_false_alarm_budget():
    """Adaptive sampling draws the calls it expects to be poor: 10 % of a site's 1,000 calls a day are
    risky, drawn with p = 0.6 and scoring 66 ± 6; the others p = 0.005, 88 ± 6. Weighted by 1/p the
    scores are unbiased, but a subgroup of risky calls only is far below the mean and one with a rare
    good call only a little above. With a 100-fold budget (so that false alarms can be counted) over 8
    centers x 60 days: adjusted to their design band, the site's chart keeps within 3 times the run
    length it is given; unadjusted, it raised several times more. With the default budget, a real drop of
    8 points is found by the next day."""
    def run(seed: int, by_design: bool, days: int = 60, drop_from: int | None = None, budget: float = 100.0) -> list[int]:
        levels = {k: replace(f, by_design=by_design) for k, f in BY_LEVEL.items()}
        monitor, rng, opened = QualityMonitor({}, {}, MonitorConfig(budget=budget, levels=levels)), random.Random(seed), []
        for day in range(days):
            evaluations = []
            for _ in range(1000):
                risky = rng.random() < 0.1
                p = 0.6 if risky else 0.005
                if rng.random() < p:
                    score = rng.gauss(66 if risky else 88, 6) - (8 if drop_from is not None and day >= drop_from else 0)
                    evaluations.append((day * 24 * HOUR + 9 * HOUR + rng.randrange(8 * HOUR), min(100.0, max(0.0, score)), 1 / p))
            for at, score, weight in sorted(evaluations):
                opened += [day for r in monitor.observe("site|s1|s1|qa_human", score, at, weight)[0]
                           if r["kind"] == "drift" and r["status"] == "open"]
        return opened

    weeks = 8 * 60 / 7
    allowed = MonitorConfig(budget=100.0).allowance("site") * weeks  # false alarms the budget gives them
    adjusted = sum(len(run(seed, True)) for seed in range(8))
    plain = sum(len(run(seed, False)) for seed in range(8))
    assert adjusted <= 3 * allowed, (adjusted, allowed)
    assert plain > 2 * max(adjusted, allowed), (plain, adjusted)
    assert all(run(seed, True, days=40, drop_from=30, budget=1.0)[:1] in ([30], [31]) for seed in range(3))
