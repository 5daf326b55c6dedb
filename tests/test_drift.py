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
