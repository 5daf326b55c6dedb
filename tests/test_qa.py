"""QA scorecards and automated QA on fixed fixtures (Chinese and English)."""
import pytest

from callqa.core.autoqa import analyse, auto_evaluation
from callqa.core.scorecard import UnknownForm, load_form, score
from schemas import validate_dict


def evaluation(scores: dict, **extra) -> dict:
    return {"event_id": "ev1", "event_type": "evaluation.submitted", "schema_version": 1,
            "event_time": "2024-03-05T10:00:00.000Z", "site_id": "s1", "source": "test", "evaluation_id": "ev1",
            "call_id": "c1", "agent_id": "a1", "evaluator_id": "qa-1", "form_id": "hotline-100",
            "form_version": "2024.1", "kind": "human",
            "items": [{"item_id": k, "score": v, "max_score": load_form("hotline-100", "2024.1").items[k]["max"]}
                      for k, v in scores.items()], **extra}


FULL = {item: spec["max"] for item, spec in load_form("hotline-100", "2024.1").items.items()}


def test_the_default_form_is_the_hotline_100_point_form():
    form = load_form("hotline-100", "2024.1")
    sections = {s["id"]: sum(i["max"] for i in s["items"]) for s in form.spec["sections"]}
    assert sections == {"greeting": 10, "waiting": 10, "answering": 30, "closing": 5, "knowledge": 20, "overall": 25}
    assert all(i.get("zh") and i.get("en") for i in form.items.values())
    assert [form.grade(p) for p in (100, 99.9, 80, 79, 60, 45, 10)] == ["优", "良", "良", "合格", "合格", "稍差", "差"]


def test_a_known_call_scores_to_its_total_and_grade():
    known = dict(FULL) | {"waiting.apology_after_hold": 0, "greeting.uses_surname": 0, "answering.handles_objections": 6,
                          "knowledge.accuracy": 16, "overall.warm": 3}
    result = score(evaluation(known))
    assert (result["total"], result["max"], result["pct"], result["grade"]) == (84, 100, 84.0, "良")
    assert result["sections"]["waiting"] == {"score": 7, "max": 10}
    assert result["categories"] == {"etiquette": pytest.approx(100 * 35 / 40), "knowledge": 80.0,
                                    "procedure": pytest.approx(100 * 33 / 40)}
    perfect = score(evaluation(FULL))
    assert (perfect["total"], perfect["grade"]) == (100, "优")


def test_not_applicable_items_leave_the_maximum_and_unknown_items_are_refused():
    partial = {k: v for k, v in FULL.items() if not k.startswith("waiting.")}
    assert score(evaluation(partial))["max"] == 90
    with pytest.raises(UnknownForm, match="not on form"):
        score(evaluation({}, items=[{"item_id": "made.up", "score": 1, "max_score": 1}]))
    with pytest.raises(UnknownForm, match="no QA form"):
        score(evaluation(FULL, form_version="1999.4"))
    with pytest.raises(UnknownForm, match="at most"):
        score(evaluation({}, items=[{"item_id": "closing.thanks", "score": 5, "max_score": 2}]))


def speech(language, lines):
    utterances = []
    for speaker, text, start, end in lines:
        utterances.append({"speaker": speaker, "start_ms": start, "end_ms": end, "text": text})
    return {"event_id": "sp1", "event_type": "speech.analyzed", "schema_version": 1,
            "event_time": "2024-03-05T10:00:00.000Z", "site_id": "s1", "source": "test", "call_id": "c1",
            "agent_id": "a1", "language": language, "utterances": utterances}


GOOD = {
    "zh": [("agent", "您好，很高兴为您服务，请问您贵姓？", 500, 3000), ("customer", "我姓王。", 3400, 4200),
           ("agent", "王先生您好，请问有什么可以帮您？", 4500, 6500), ("customer", "我想查一下账单。", 6900, 8800),
           ("agent", "请您稍等，我帮您查询一下。", 9000, 11000), ("agent", "王先生，还在查询，请再稍等。", 80000, 82000),
           ("agent", "不好意思，让您久等了，账单已经查到。", 160000, 163000), ("customer", "好的。", 163500, 164000),
           ("agent", "请问还有其他可以帮您的吗？", 164500, 166500), ("customer", "没有了，谢谢。", 167000, 168000),
           ("agent", "感谢您的来电，再见。", 168500, 170000)],
    "en": [("agent", "Good morning, this is Anna, may I have your name please?", 300, 3500),
           ("customer", "It's Smith.", 3800, 4500), ("agent", "Thank you Mr. Smith, how can I help you today?", 4800, 7000),
           ("customer", "I have a question about my bill.", 7300, 9500),
           ("agent", "Please hold for a moment while I check that for you.", 9800, 12000),
           ("agent", "Mr. Smith, I'm still checking, just a little longer.", 70000, 72500),
           ("agent", "Sorry to keep you waiting, I have it now.", 150000, 152500), ("customer", "Great.", 153000, 153500),
           ("agent", "Is there anything else I can help you with?", 154000, 156000), ("customer", "No, thanks.", 156500, 157200),
           ("agent", "Thank you for calling, goodbye.", 157500, 159000)],
}
BAD = {
    "zh": [("customer", "喂？", 500, 1000), ("agent", "说。", 14000, 14500), ("customer", "我想查一下账单，上个月的", 15000, 19000),
           ("agent", "稍等", 16000, 16500), ("agent", "查到了。", 160000, 161000),
           ("agent", "这个我不知道，不归我管。", 162000, 164000), ("agent", "再见。", 165000, 165500)],
    "en": [("customer", "Hi?", 500, 1000), ("agent", "Yeah.", 14000, 14500),
           ("customer", "I have a question about my bill from last month", 15000, 19000),
           ("agent", "Hold on", 16000, 16500), ("agent", "Got it.", 160000, 161000),
           ("agent", "I don't know, not my job.", 162000, 164000), ("agent", "Bye.", 165000, 165500)],
}


@pytest.mark.parametrize("language", ["zh", "en"])
def test_auto_qa_finds_every_checked_behaviour(language):
    result = analyse(speech(language, GOOD[language]))
    assert result.checks == {item: True for item in load_form("hotline-100", "2024.1").auto_items}
    assert result.findings == [] and result.interruptions == 0 and result.forbidden == []
    assert 0 < result.agent_talk_ratio < 1 and 0 <= result.silence_ratio < 0.2


@pytest.mark.parametrize("language", ["zh", "en"])
def test_auto_qa_misses_nothing_in_a_negative_example(language):
    result = analyse(speech(language, BAD[language]))
    assert result.checks == {item: False for item in load_form("hotline-100", "2024.1").auto_items}
    assert result.interruptions == 1 and len(result.forbidden) == 1
    assert len(result.findings) == len(result.checks)


def test_the_automatic_result_is_an_evaluation_of_its_own_kind():
    sp = speech("en", GOOD["en"])
    event = auto_evaluation(sp, analyse(sp))
    validate_dict(event)
    assert event["kind"] == "auto" and event["evaluator_id"] == "auto-qa"
    scored = score(event)
    assert scored["pct"] == 100.0 and scored["max"] == sum(FULL[i] for i in load_form("hotline-100", "2024.1").auto_items)
    assert analyse({**sp, "utterances": [], "flags": {"greeting": True}}) is None


def test_icc_matches_shrout_and_fleiss():
    import numpy as np

    from callqa.core.calibration import icc_2_1

    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc_2_1(ratings) == pytest.approx(0.29, abs=0.005)  # Shrout & Fleiss (1979), ICC(2,1)


def test_calibration_flags_the_evaluator_off_by_more_than_6_percent_and_reports_kappa():
    import random

    from callqa.core.calibration import calibrate

    rng, evaluations = random.Random(5), []
    items = list(FULL)
    for call in range(12):
        biased = ("answering.listens_responds", "knowledge.accuracy")  # 30 points
        truth = {k: FULL[k] if k in biased else FULL[k] * rng.choice([1, 1, 0.8, 0.6, 0]) for k in items}
        for who, bias in (("lead", 0), ("qa-1", 0), ("qa-2", 0), ("qa-3", -0.3)):  # qa-3: 9 points low
            scores = {k: v + bias * FULL[k] if k in biased else v for k, v in truth.items()}
            if who == "qa-1" and call % 4 == 0:  # occasional disagreement on one item
                scores["closing.thanks"] = 0 if scores["closing.thanks"] else 2
            evaluations.append(evaluation(scores, call_id=f"c{call}", evaluator_id=who, kind="calibration",
                                          evaluation_id=f"{who}-{call}", event_time="2024-03-05T10:00:00.000Z"))
    deviations, agreement = calibrate(evaluations, expert_ids=frozenset({"lead"}))
    flagged = {d.evaluator_id for d in deviations if d.flagged}
    assert flagged == {"qa-3"}
    assert {d.deviation for d in deviations if d.evaluator_id == "qa-3"} == {-9.0}
    assert all(abs(d.deviation) <= 2 for d in deviations if d.evaluator_id != "qa-3")
    (row,) = agreement
    assert (row["month"], row["form_version"], row["calls"]) == ("2024-03", "2024.1", 12)
    assert row["kappa"]["greeting.standard"] == 1.0 and row["kappa"]["closing.thanks"] < 1.0
    assert row["kappa"]["knowledge.accuracy"] < row["kappa"]["greeting.standard"]
    assert 0 < row["icc_total"] < 1


def test_qa_kpis_reach_clickhouse_on_the_embedded_path(tmp_path):
    import json as _json

    from sinks.store import EmbeddedStore
    from tests.conftest import callqa_env, run_callqa

    out = tmp_path / "sim.jsonl"
    env = callqa_env(tmp_path)
    assert run_callqa(["simulate", "--sites", "1", "--agents-per-site", "10", "--out", str(out)], env).returncode == 0
    events = [_json.loads(line) for line in out.read_text().splitlines()]
    human = [e for e in events if e["event_type"] == "evaluation.submitted" and e["kind"] == "human"]
    calibration = [e for e in events if e["event_type"] == "evaluation.submitted" and e["kind"] == "calibration"]
    speech = [e for e in events if e["event_type"] == "speech.analyzed"]
    bad = dict(human[0], event_id="bad-form", evaluation_id="bad", form_version="1999.1")
    out.write_text(out.read_text() + _json.dumps(bad) + "\n")
    assert run_callqa(["replay", str(out)], env).returncode == 0
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        kinds = dict(store.query("SELECT kind, count() FROM evaluations FINAL GROUP BY kind")[1])
        site = store.query("SELECT sum(qa_human_n), sum(qa_auto_n), sum(qa_human_score), sum(qa_human_max) "
                           "FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 86400")[1][0]
        dead = store.query("SELECT reason FROM dead_letters FINAL")[1]
        from collections import Counter

        from sinks.queries import COACHING_EXAMPLES

        from sinks.queries import EVALUATIONS_THIS_MONTH, QA_SECTION_SCORES

        sections = store.query(QA_SECTION_SCORES.format(level="site", start="2024-03-01", end="2024-04-01"))[1]
        monthly = store.query(EVALUATIONS_THIS_MONTH.format(target=30, month="2024-03"))[1]
        ratios = store.query("SELECT min(agent_talk_ratio), max(silence_ratio), countIf(interruptions IS NULL) "
                             "FROM evaluations FINAL WHERE kind = 'auto'")[1][0]
        fails = Counter(i["item_id"] for e in human for i in e["items"] if i["score"] == 0)
        item = fails.most_common(1)[0][0]
        tagged = store.query(COACHING_EXAMPLES.format(tag=f"fail:{item}", start="2024-03-01", end="2024-04-01",
                                                      agent_filter=""))[1]
    finally:
        store.close()
    assert {(r[1], r[2]) for r in sections} >= {("human", "greeting"), ("auto", "waiting"), ("human", "knowledge")}
    assert sum(r[1] for r in monthly) == len(human) and all(r[3] == 30 and r[4] == 0 for r in monthly)
    assert 0 < ratios[0] and ratios[1] < 1 and ratios[2] == 0
    failed = {e["call_id"] for e in human if any(i["item_id"] == item and i["score"] == 0 for i in e["items"])}
    assert failed and {r[2] for r in tagged if r[3] == "human"} == failed
    assert kinds == {"human": len(human), "auto": len(speech), "calibration": len(calibration)}  # calibration: apart
    totals = [sum(i["score"] for i in e["items"]) for e in human]
    assert site[:2] == (len(human), len(speech)) and site[2] == pytest.approx(sum(totals))
    assert site[3] == 100 * len(human)
    assert len(dead) == 1 and dead[0][0].startswith("no QA form hotline-100 version 1999.1")


def test_calibration_report_from_the_store(tmp_path):
    import json as _json

    from tests.conftest import callqa_env, run_callqa

    lines = []
    for call in range(6):
        for who, drop in (("lead", 0), ("qa-1", 0), ("qa-9", 10)):
            scores = dict(FULL) | {"knowledge.accuracy": 20 - drop, "closing.thanks": 2 if call % 2 else 0}
            lines.append(_json.dumps(evaluation(scores, event_id=f"{who}-{call}", evaluation_id=f"{who}-{call}",
                                                call_id=f"c{call}", evaluator_id=who, kind="calibration")))
    path = tmp_path / "calibration.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = callqa_env(tmp_path)
    assert run_callqa(["replay", str(path)], env).returncode == 0
    done = run_callqa(["calibration", "--month", "2024-03", "--expert", "lead"], env)
    assert done.returncode == 0, done.stderr
    flagged = [line for line in done.stdout.splitlines() if "FLAG" in line]
    assert len(flagged) == 6 and all("qa-9" in line and "-10.0" in line for line in flagged)
    assert "ICC(2,1)" in done.stdout and "closing.thanks" in done.stdout
    assert run_callqa(["calibration", "--month", "March"], env).returncode == 2
    assert run_callqa(["evaluations", "--month", "2024-13"], env).returncode == 2
    done = run_callqa(["evaluations", "--month", "2024-03"], env | {"CALLQA_QA_MONTHLY_TARGET": "12"})
    assert "target 12 per agent" in done.stdout and "a1" in done.stdout


def test_human_qa_in_windows_is_weighted_by_inverse_inclusion_probability():
    """Two reviews of one agent: a 100% call drawn with p = 0.5 and a 50% call drawn with p = 0.1 (its
    kind is ten times under-reviewed). Independent oracle: the Hajek estimate by hand."""
    from callqa.core import kpi
    from callqa.core.qa import QaAssembler

    qa, sums = QaAssembler({}, kpi.KpiConfig()), {}
    half = {item: (m / 2 if item != "greeting.standard" else m) for item, m in FULL.items()}
    for n, (scores, p) in enumerate(((FULL, 0.5), (half, 0.1))):
        e = evaluation(scores, inclusion_probability=p) | {"event_id": f"ev{n}", "evaluation_id": f"ev{n}"}
        update = qa.apply(e)
        assert update.evaluations[0]["inclusion_probability"] == p
        assert [o[3] for o in update.observations if o[0].endswith("qa_human")] == [1 / p] * 2  # agent, site: the charts' weight
        for key, delta in update.deltas:
            if key.startswith("agent|s1|a1|86400|"):
                for name, v in delta.items():
                    sums[name] = sums.get(name, 0) + v
    totals = [score(evaluation(s))["total"] for s in (FULL, half)]
    expected = 100 * (totals[0] / 0.5 + totals[1] / 0.1) / (100 / 0.5 + 100 / 0.1)
    assert sums["qa_human_n"] == 2
    assert 100 * sums["qa_human_score"] / sums["qa_human_max"] == pytest.approx(expected)
    assert expected < 100 * sum(totals) / 200  # unweighted would overstate the under-reviewed kind's agent
