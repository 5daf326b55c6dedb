"""Drift detectors on synthetic series with known shifts (no servers)."""
import random

from callqa.core.drift import ChartConfig, new_state, update

QA = ChartConfig(min_sigma=2.0)


def run(values, config=QA):
    state, signals = new_state(), []
    for i, x in enumerate(values):
        signal = update(state, x, config)
        if signal:
            signals.append((i, signal))
    return signals


def test_stationary_noise_rarely_fires():
    fired = 0
    for seed in range(100):
        rng = random.Random(seed)
        fired += bool(run([rng.gauss(85, 6) for _ in range(200)]))
    assert fired <= 15  # at most 15% of series of 200 in-control observations raise any alarm


def test_a_drop_of_one_and_a_half_sigma_is_found_within_a_few_dozen_observations():
    delays = []
    for seed in range(30):
        rng = random.Random(seed)
        values = [rng.gauss(85, 6) for _ in range(60)] + [rng.gauss(76, 6) for _ in range(100)]
        after = [(i, s) for i, s in run(values) if i >= 60]
        assert after and after[0][1].direction == -1
        delays.append(after[0][0] - 60)
    assert sorted(delays)[len(delays) // 2] <= 10


def test_a_large_jump_fires_shewhart_at_once_with_its_evidence():
    rng = random.Random(1)
    values = [rng.gauss(300, 30) for _ in range(40)] + [600]
    (i, signal), = [(i, s) for i, s in run(values, ChartConfig(min_sigma=5)) if i == 40]
    assert signal.chart == "shewhart" and signal.direction == 1
    assert abs(signal.baseline_mean - 300) < 20 and 15 < signal.baseline_sigma < 45 and signal.limit == 5.0


def test_three_wild_evaluations_never_fire():
    assert run([100, 20, 95]) == []
    short = ChartConfig(warmup=5, min_sigma=2.0)
    assert run([85, 86, 84, 85, 40], short) == []  # still learning: no signal
    assert [i for i, _ in run([85, 86, 84, 85, 85, 40], short)] == [5]  # learned: the jump fires


def test_state_is_small_and_fixed():
    state = new_state()
    for x in range(1000):
        update(state, float(x % 7), QA)
    assert len(state) == 7 and all(isinstance(v, (int, float)) for v in state)


def test_alerts_open_once_absorb_repeats_and_clear_with_hysteresis():
    from callqa.core.monitor import AlertConfig, MetricChart, QualityMonitor

    hour = 3_600_000
    monitor = QualityMonitor({}, {"qa_human": MetricChart(QA)}, AlertConfig(clear_after=5, min_open_ms=24 * hour))
    rng, events = random.Random(3), []
    values = [rng.gauss(85, 6) for _ in range(60)] + [rng.gauss(70, 6) for _ in range(30)] + \
             [rng.gauss(85, 6) for _ in range(60)]
    for i, value in enumerate(values):
        events += monitor.observe("agent|s1|a7|qa_human", value, i * hour)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "open" and statuses.count("open") == 1 and statuses[-1] == "cleared"
    opened, cleared = events[0], events[-1]
    assert 60 <= int(opened["alert_id"].rsplit("|", 1)[1]) // hour <= 75  # opened soon after the drop at 60
    evidence = __import__("json").loads(opened["evidence"])
    assert evidence["direction"] == -1 and evidence["baseline_mean"] > 80
    assert opened["severity"] in ("warning", "critical") and cleared["alert_id"] == opened["alert_id"]
    assert all(e["alert_id"] == opened["alert_id"] for e in events)  # one alert, no flapping


def test_an_alert_does_not_clear_before_its_dwell_time():
    from callqa.core.monitor import AlertConfig, MetricChart, QualityMonitor

    monitor = QualityMonitor({}, {"handle_s": MetricChart(ChartConfig(warmup=10, min_sigma=1.0))},
                             AlertConfig(clear_after=2, min_open_ms=10**9))
    events = []
    for i, value in enumerate([100.0] * 10 + [200.0] + [100.0] * 20):
        events += monitor.observe("site|s1|s1|handle_s", value, i * 1000)
    assert [e["status"] for e in events] == ["open"] and events[0]["severity"] == "critical"


def test_an_improvement_restarts_the_chart_but_raises_no_alert():
    from callqa.core.monitor import MetricChart, QualityMonitor

    monitor = QualityMonitor({}, {"handle_s": MetricChart(ChartConfig(warmup=10, min_sigma=1.0))})
    calls = [100.0] * 10 + [10.0] + [100.0] * 5 + [190.0]
    events = [e for i, value in enumerate(calls) for e in monitor.observe("site|s1|s1|handle_s", value, i * 1000)]
    assert [(e["status"], e["at"][-7:]) for e in events] == [("open", "16.000Z")]  # only the slowdown at 16 s


def test_an_injected_drift_raises_alerts_on_the_embedded_path(tmp_path):
    import json

    from sinks.store import EmbeddedStore
    from tests.conftest import callqa_env, run_callqa

    env = callqa_env(tmp_path)
    truth = tmp_path / "truth.json"
    done = run_callqa(["simulate", "--sites", "1", "--agents-per-site", "15", "--days", "5", "--seed", "4",
                       "--truth", str(truth), "--drift", "aht:site=site-1,factor=1.8,from=2024-03-06"], env, timeout=600)
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        rows = store.query("SELECT level, entity_id, metric, toString(opened_at), severity, evidence FROM alerts FINAL "
                           "WHERE status = 'open' ORDER BY opened_at")[1]
    finally:
        store.close()
    site_handle = [r for r in rows if r[0] == "site" and r[2] == "handle_s"]
    assert site_handle and site_handle[0][3] >= "2024-03-06" and site_handle[0][3] < "2024-03-06 12"
    assert json.loads(site_handle[0][5])["direction"] == 1
    before = [r for r in rows if r[3] < "2024-03-06" and r[2] == "handle_s" and r[0] == "site"]
    assert before == []  # no handle-time alert at the site before the injected change
