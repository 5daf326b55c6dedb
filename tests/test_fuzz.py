"""A slice of the invalid-input corpus (tests/fuzz.py) mixed into a valid day: zero crashes, every invalid
line one dead letter with a reason, and the valid data exactly as in a clean run. bench/fuzz.py runs
10,000 lines."""
from __future__ import annotations

import json

import pytest

from sinks.store import EmbeddedStore
from tests.conftest import FIXTURES, callqa_env, run_callqa
from tests.fuzz import invalid_lines, spread

DAY = FIXTURES / "day.jsonl"


def valid_events() -> list[dict]:
    out = []
    for line in DAY.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def tables(data_dir):
    store = EmbeddedStore(data_dir / "chdb")
    try:
        # a window's version counts the partial sums it was built from, which depends on how the input
        # was batched; its values must not change
        kept = {name: store.query(f"SELECT * EXCEPT {extra} FROM {name} FINAL ORDER BY ALL")[1]
                for name, extra in (("kpi_windows", "(ingested_at, version)"), ("call_records", "ingested_at"),
                                    ("evaluations", "ingested_at"), ("raw_events", "ingested_at"))}
        dead = store.query("SELECT position, reason FROM dead_letters FINAL")[1]
        return kept, dead
    finally:
        store.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_invalid_lines_are_dead_letters_and_change_nothing(tmp_path, seed):
    clean_dir, fuzzed_dir = tmp_path / "clean", tmp_path / "fuzzed"
    assert run_callqa(["replay", str(DAY)], callqa_env(clean_dir)).returncode == 0
    clean, clean_dead = tables(clean_dir / "data")
    lines = DAY.read_text().splitlines()
    mixed, positions = spread(lines, invalid_lines(valid_events(), 300, seed))
    path = tmp_path / "fuzzed.jsonl"
    path.write_text("\n".join(mixed) + "\n")
    done = run_callqa(["replay", "--json", str(path)], callqa_env(fuzzed_dir))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    fuzzed, dead = tables(fuzzed_dir / "data")
    assert fuzzed == clean
    caught = {position for position, reason in dead if reason}
    assert positions <= caught and len(dead) == len(clean_dead) + len(positions)
    assert json.loads(done.stdout)["dead_letters"] == len(dead)
