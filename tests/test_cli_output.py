"""Operator commands: `--json` on every command that prints a table, `--quiet` keeping the results (only
progress bars and decoration go), summaries before the long per-call or per-agent tables."""
import inspect
import json
from collections import defaultdict

import pytest

from callqa import cli
from sinks.store import EmbeddedStore
from tests.conftest import callqa_env, run_callqa
from tests.test_cli_embedded import quiet_blocks

MONTH, TARGET, THRESHOLD = "2024-03", 6, 6.0
BORDERS = set("┃━│┏┗└┡╇")


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    """Five simulated days of one site (human and calibration evaluations among them)."""
    tmp = tmp_path_factory.mktemp("center")
    env = callqa_env(tmp, CALLQA_QA_MONTHLY_TARGET=str(TARGET))
    done = run_callqa(["--quiet", "simulate", "--sites", "1", "--agents-per-site", "15", "--days", "5",
                       "--start", "2024-03-04"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    return env, tmp / "data" / "chdb"


def direct(path, sql: str) -> list[tuple]:
    store = EmbeddedStore(path)
    try:
        return store.query(sql)[1]
    finally:
        store.close()


def callqa(env, *args: str):
    done = run_callqa(list(args), env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def test_every_command_that_prints_a_table_takes_json():
    for name, command in cli.main.commands.items():
        if "print_table(" in inspect.getsource(command.callback):
            assert "as_json" in {p.name for p in command.params}, name


def test_evaluations_json_quiet_and_summary_first(center):
    env, path = center
    out = json.loads(callqa(env, "evaluations", "--month", MONTH, "--json"))
    rows = direct(path, "SELECT agent_id, countIf(kind = 'human'), countIf(kind = 'test_call') FROM evaluations FINAL "
                        "WHERE evaluated_at >= '2024-03-01' AND evaluated_at < '2024-04-01' GROUP BY agent_id")
    assert {a["agent_id"]: (a["human"], a["test_calls"]) for a in out["agents"]} == {a: (h, t) for a, h, t in rows}
    assert (out["month"], out["target"], out["human"], out["test_calls"]) == (
        MONTH, TARGET, sum(r[1] for r in rows), sum(r[2] for r in rows))
    assert all(a["on_target"] is (a["human"] >= TARGET) and a["target"] == TARGET for a in out["agents"])
    assert out["agents_on_target"] == sum(a["on_target"] for a in out["agents"]) > 0
    assert out["agents_behind_target"] == len(rows) - out["agents_on_target"] > 0
    assert [a["human"] for a in out["agents"]] == sorted(a["human"] for a in out["agents"])  # furthest behind first

    summary, agents = quiet_blocks(callqa(env, "--quiet", "evaluations", "--month", MONTH))
    assert summary == [(f"Evaluations in {MONTH}: {out['human']} human evaluations and {out['test_calls']} test calls "
                        f"of {len(rows)} agents evaluated; {out['agents_on_target']} reached the target of {TARGET} "
                        f"per agent, {out['agents_behind_target']} are behind")]
    assert agents == ["agent_id\thuman\ttest_calls\ttarget\ton_target"] + [
        f"{a['agent_id']}\t{a['human']}\t{a['test_calls']}\t{TARGET}\t{'yes' if a['on_target'] else 'no'}"
        for a in out["agents"]]
    full = callqa(env, "evaluations", "--month", MONTH)
    assert full.splitlines()[0] == summary[0] and BORDERS & set(full)


def expected_deviations(path, expert: str | None = None) -> dict[tuple, float]:
    """From the store: each calibration score's distance from its call's mean (or the expert's score)."""
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for call, evaluator, pct in direct(path, "SELECT call_id, evaluator_id, pct FROM evaluations FINAL WHERE "
                                             "kind = 'calibration' AND toYYYYMM(evaluated_at) = 202403"):
        scores[call][evaluator] = pct
    out = {}
    for call, by in scores.items():
        if len(by) < 2:
            continue
        reference = by[expert] if expert in by else sum(by.values()) / len(by)
        out |= {(call, who): pct - reference for who, pct in by.items() if who != expert}
    return out


def test_calibration_json_against_the_store(center):
    env, path = center
    out = json.loads(callqa(env, "calibration", "--month", MONTH, "--json"))
    expected = expected_deviations(path)
    got = {(d["call_id"], d["evaluator_id"]): d for d in out["deviations"]}
    assert set(got) == set(expected) and len(expected) >= 14
    for key, deviation in expected.items():
        assert got[key]["deviation"] == pytest.approx(deviation, abs=0.01), key
        assert got[key]["flagged"] is (abs(got[key]["deviation"]) > THRESHOLD)
    assert (out["month"], out["reference"], out["threshold_pct"]) == (MONTH, "mean", THRESHOLD)
    assert (out["calls"], out["scores"], out["flagged"]) == (
        len({c for c, _ in expected}), len(expected), sum(d["flagged"] for d in out["deviations"]))
    per_evaluator = defaultdict(list)
    for (_, who), deviation in expected.items():
        per_evaluator[who].append(deviation)
    assert {e["evaluator_id"]: (e["calls"], e["mean_abs_deviation"]) for e in out["evaluators"]} == {
        who: (len(d), pytest.approx(sum(map(abs, d)) / len(d), abs=0.01)) for who, d in per_evaluator.items()}
    assert out["agreement"] and all(a["month"] == MONTH and a["calls"] >= 2 for a in out["agreement"])

    expert = json.loads(callqa(env, "calibration", "--month", MONTH, "--expert", "qa-lead", "--json"))
    against_lead = expected_deviations(path, "qa-lead")
    assert expert["reference"] == "expert" and expert["experts"] == ["qa-lead"]
    assert {(d["call_id"], d["evaluator_id"]): pytest.approx(d["deviation"], abs=0.01)
            for d in expert["deviations"]} == against_lead

    empty = json.loads(callqa(env, "calibration", "--month", "2023-01", "--json"))
    assert (empty["calls"], empty["deviations"], empty["agreement"]) == (0, [], [])


def test_calibration_quiet_keeps_every_result_and_the_summary_comes_first(center):
    env, _ = center
    out = json.loads(callqa(env, "calibration", "--month", MONTH, "--json"))
    summary, evaluators, *items, scores = quiet_blocks(callqa(env, "-q", "calibration", "--month", MONTH))
    assert summary[0] == (f"Calibration {MONTH}: {out['calls']} calls scored by two or more evaluators, {out['scores']} "
                          f"scores against each call's mean; {out['flagged']} deviate by more than {THRESHOLD:g} points")
    assert [line.split(", ICC(2,1) of totals ")[1] for line in summary[1:]] == [
        str(a["icc_total"]) for a in out["agreement"]]
    assert [line.split("\t")[0] for line in evaluators[1:]] == [e["evaluator_id"] for e in out["evaluators"]]
    assert [len(block) - 1 for block in items] == [len(a["kappa"]) for a in out["agreement"]]
    assert scores[0].split("\t")[:2] == ["call", "evaluator"]
    assert [tuple(line.split("\t")[:2]) for line in scores[1:]] == [
        (d["call_id"], d["evaluator_id"]) for d in out["deviations"]]
    assert not BORDERS & set("".join(summary + scores))
    full = callqa(env, "calibration", "--month", MONTH).splitlines()
    first_call = next(i for i, line in enumerate(full) if out["deviations"][0]["call_id"] in line)
    assert full[0] == summary[0] and first_call > len(full) - len(out["deviations"]) - 5  # the per-call table last


def test_plan_query_and_test_calls_quiet_keep_their_rows(center):
    env, _ = center
    plans = json.loads(callqa(env, "plan", "--day", "2024-03-07", "--json"))["plans"]
    summary, table, *_ = quiet_blocks(callqa(env, "-q", "plan", "--day", "2024-03-07"))
    assert summary[0].startswith("Review plans for 2024-03-07: ") and len(table) == len(plans) + 1 > 2
    calls = json.loads(callqa(env, "test-calls", "--week", "2024-03-11", "--json"))
    summary, table = quiet_blocks(callqa(env, "-q", "test-calls", "--week", "2024-03-11"))
    assert summary[0].startswith(f"Test calls for the week of 2024-03-11: {len(calls)} calls")
    assert [line.split("\t")[0] for line in table[1:]] == [c["test_call_id"] for c in calls]
    sql = "SELECT outcome, count() AS calls FROM call_records FINAL GROUP BY outcome ORDER BY outcome"
    rows = json.loads(callqa(env, "query", "--json", sql))
    assert [r["outcome"] for r in rows] == ["abandoned", "answered"] and all(r["calls"] > 0 for r in rows)
    assert quiet_blocks(callqa(env, "-q", "query", sql)) == [[], ["outcome\tcalls"] + [
        f"{r['outcome']}\t{r['calls']}" for r in rows]]
