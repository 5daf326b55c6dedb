"""Grafana provisioning and dashboards: every panel's SQL, expanded as Grafana and the ClickHouse plugin
expand it, runs on chdb against a simulated week and returns the columns and rows the panel needs."""
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from callqa import report
from callqa.config import SETTINGS
from callqa.core import kpi
from callqa.core.clock import SiteClock
from callqa.core.dead_letters import dead_letter, raw_event
from callqa.core.sampling import PolicyConfig
from callqa.core.thresholds import severity
from dashboards import __main__ as generate
from dashboards.build import (
    DASHBOARDS,
    DATASOURCE_UID,
    DETECTOR_AXES,
    PLUGIN,
    PROMETHEUS_UID,
    RULE,
    SEVERITY_COLOURS,
)
from sinks import macros
from sinks import queries as q
from sinks.store import EmbeddedStore
from tests.conftest import ROOT, callqa_env, run_callqa

PROVISIONING = ROOT / "dashboards" / "provisioning"
TODAY = "callqa-today"
PIPELINE = "callqa-pipeline"  # tests/test_pipeline_dashboard.py: its Prometheus queries, and its store panels on rows of known counts
CLICKHOUSE_REF, PROMETHEUS_REF = {"type": PLUGIN, "uid": DATASOURCE_UID}, {"type": "prometheus", "uid": PROMETHEUS_UID}
START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)


def boards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))}


def rules() -> list[dict]:
    return yaml.safe_load(generate.ALERT_RULES.read_text())["groups"][0]["rules"]


def test_committed_dashboards_and_rules_are_what_the_code_builds():
    for path, text in generate.rendered().items():
        assert path.read_text() == text, f"{path} is stale: run python -m dashboards"
    assert set(boards()) == set(DASHBOARDS) == {TODAY, "callqa-live", "callqa-agent-quality", "callqa-drift",
                                                 "callqa-calibration", "callqa-sites", PIPELINE}


def test_provisioning_points_at_a_datasource_and_dashboards_that_exist():
    sources = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert [(s["uid"], s["type"], s["jsonData"]["protocol"]) for s in sources] == [(DATASOURCE_UID, PLUGIN, "native")]
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [(s["uid"], s["type"]) for s in sources] == [(PROMETHEUS_UID, "prometheus")]
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "callqa.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/callqa")
    uids = set()
    for uid, board in boards().items():
        assert board["uid"] == uid and uid not in uids
        uids.add(uid)
        used = [p["datasource"] for p in board["panels"]] + [t["datasource"] for p in board["panels"] for t in p["targets"]]
        used += [v["datasource"] for v in board["templating"]["list"] if v["type"] == "query"]
        used += [a["datasource"] for a in board.get("annotations", {}).get("list", [])]
        # the pipeline board reads Prometheus and the store; the others the store only
        assert used and all(d in ((CLICKHOUSE_REF, PROMETHEUS_REF) if uid == PIPELINE else (CLICKHOUSE_REF,))
                            for d in used), uid
        for panel in board["panels"]:  # one datasource per panel, as Grafana runs it
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {panel["datasource"]["uid"]}, panel["title"]
        assert uid == PIPELINE or "site" in {v["name"] for v in board["templating"]["list"]}
    assert {d["uid"] for p in boards()[PIPELINE]["panels"] for d in [p["datasource"]]} == {DATASOURCE_UID, PROMETHEUS_UID}
    variables = {v["name"] for b in boards().values() for v in b["templating"]["list"]}
    assert variables == {"site", "queue", "team", "agent", "series", "recording_url", "min_calls"}
    # what Grafana cannot read from callqa's environment: constants from the settings' defaults
    defaults = {s.env: s.default for s in SETTINGS}
    constants = {(uid, v["name"]): v["query"] for uid, b in boards().items() for v in b["templating"]["list"]
                 if v["type"] == "constant"}
    assert constants == {(TODAY, "recording_url"): defaults["CALLQA_RECORDING_URL"],
                         (TODAY, "min_calls"): defaults["CALLQA_MIN_CALLS_FOR_RATIO"],
                         ("callqa-live", "min_calls"): defaults["CALLQA_MIN_CALLS_FOR_RATIO"],
                         ("callqa-agent-quality", "min_calls"): defaults["CALLQA_MIN_CALLS_FOR_RATIO"]}
    for rule in rules():
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs and rule["annotations"]["__dashboardUid__"] in uids
        assert {d["datasourceUid"] for d in rule["data"]} in ({DATASOURCE_UID, "__expr__"}, {PROMETHEUS_UID, "__expr__"})
    assert {r["uid"] for r in rules()} == {"callqa-service-level", "callqa-abandon-rate", "callqa-asa-s",
                                           "callqa-quality-drift", "callqa-sink-lag", "callqa-stage-lag",
                                           "callqa-sink-stale", "callqa-worker-stalled", "callqa-target-down"}


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """A simulated week (2 sites x 15 agents) with a QA drop on a team and longer calls on a site."""
    tmp = tmp_path_factory.mktemp("week")
    env = callqa_env(tmp)
    done = run_callqa(["simulate", "--sites", "2", "--agents-per-site", "15", "--days", "7", "--start", "2024-03-04",
                       "--drift", "qa:team=site-1/team-1,delta=-20,from=+2", "--drift", "aht:site=site-2,factor=1.5,from=+3"],
                      env, timeout=300)
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp / "data" / "chdb")
    # and a line that is not an event, as the sink stores it (the simulator writes none): the pipeline board's
    # dead letters have a row to show
    store.insert("dead_letters", [dead_letter("not valid JSON: unexpected character", b"{oops", "events/0", "7")])
    yield store
    store.close()


def resolve_variables(store, board: dict, start: datetime, end: datetime) -> dict[str, list[str]]:
    """Each variable set to All: its query's values, in dashboard order (later ones depend on earlier)."""
    values: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "constant":
            values[variable["name"]] = [variable["query"]]
            continue
        values[variable["name"]] = [r[0] for r in store.query(macros.expand(variable["query"], start, end, values))[1]]
        assert values[variable["name"]], f"{board['uid']}: variable {variable['name']} has no values"
    return values


def run_panel(store, sql: str, start: datetime, end: datetime, values: dict) -> tuple[list[str], list[tuple]]:
    return store.query(macros.expand(sql, start, end, values, interval_s=300))


def waiting_moment(store) -> datetime:
    """A moment during the busiest hour when a call had been waiting over 20 s (the live wallboard's 'now')."""
    (queued,), = store.query(
        "SELECT min(queued) FROM (SELECT call_id, minIf(event_time, event_type = 'call.queued') AS queued, "
        "minIf(event_time, event_type IN ('call.answered', 'call.abandoned')) AS left FROM raw_events "
        "WHERE event_type IN ('call.queued', 'call.answered', 'call.abandoned') GROUP BY call_id) "
        "WHERE toHour(queued) = 10 AND toDate(queued) = '2024-03-06' AND dateDiff('second', queued, left) > 20")[1]
    return datetime.fromisoformat(queued).replace(tzinfo=UTC) + timedelta(seconds=20)


def test_every_panel_runs_on_a_simulated_week_with_its_columns_and_rows(week):
    now = waiting_moment(week)
    failures = []
    for uid, board in boards().items():
        start, end = (now - timedelta(hours=6), now) if uid == "callqa-live" else (START, END)
        if uid == PIPELINE:  # the pipeline's time is the clock's: the week was stored (and dead-lettered) just now
            end = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
            start = end - timedelta(hours=6)
        values = resolve_variables(week, board, start, end)
        targets = [(p["title"], p, t) for p in board["panels"] for t in p["targets"] if "rawSql" in t]
        targets += [(a["name"], {}, a["target"]) for a in board.get("annotations", {}).get("list", [])]
        panel_columns: dict[int, set[str]] = {}
        for title, panel, target in targets:
            columns, rows = run_panel(week, target["rawSql"], start, end, values)
            panel_columns.setdefault(id(panel), set()).update(columns)
            where = f"{uid} / {title} / {target['refId']}"
            if not rows:
                failures.append(f"{where}: no rows")
            if target["format"] == 0 and columns[0] != "time":
                failures.append(f"{where}: a time series must start with a time column, got {columns}")
            fields = panel.get("options", {}).get("reduceOptions", {}).get("fields")
            if fields and not any(re.fullmatch(fields.strip("/"), c) for c in columns):
                failures.append(f"{where}: no column matches {fields}")
        for title, panel, target in targets:  # a column's settings name a column one of the panel's queries returns
            refs = {t["refId"] for t in panel.get("targets", [])}
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                matcher = override["matcher"]
                if matcher["id"] == "byName" and matcher["options"] not in panel_columns[id(panel)]:
                    failures.append(f"{uid} / {title}: settings for missing column {matcher['options']}")
                if matcher["id"] == "byFrameRefID" and matcher["options"] not in refs:
                    failures.append(f"{uid} / {title}: settings for missing query {matcher['options']}")
    assert not failures, "\n".join(failures)


def open_threshold_alerts(store, metric: str, at: datetime) -> set[tuple]:
    """The core's threshold alerts of a metric still open at ``at``, folded in Python from their events:
    (level, site, entity, latest severity, alert id, windows breached)."""
    events = store.query(f"SELECT alert_id, toString(at), status, level, site_id, entity_id, severity, signals "
                         f"FROM alerts FINAL WHERE kind = 'threshold' AND metric = '{metric}'")[1]
    alerts: dict[str, dict] = {}
    for alert_id, when, status, level, site, entity, level_of_severity, signals in sorted(events, key=lambda e: e[1]):
        if datetime.fromisoformat(when).replace(tzinfo=UTC) > at:
            continue
        a = alerts.setdefault(alert_id, {"scope": (level, site, entity), "severity": None, "signals": 0})
        a["status"], a["signals"] = status, max(a["signals"], signals)
        if status != "cleared":
            a["severity"] = level_of_severity
    return {(*a["scope"], a["severity"], alert_id, float(a["signals"])) for alert_id, a in alerts.items()
            if a["status"] != "cleared"}


def test_kpi_alert_rules_read_the_cores_open_threshold_alerts_with_its_severities(week):
    """One threshold engine: the KPI rules fire while callqa's own alert is open, labelled with the core's
    severity (no limit of their own), and the store's alerts carry the severity the core's rule gives."""
    for metric, rule in RULE.items():
        for event in table(week, f"SELECT severity, status, evidence FROM alerts FINAL WHERE kind = 'threshold' "
                                 f"AND metric = '{metric}'", {}):
            value = json.loads(event["evidence"])["value"]
            assert event["severity"] == (None if event["status"] == "cleared" else severity(rule, value)), event
    by_uid = {r["uid"]: r for r in rules()}
    seen = set()
    for metric in RULE:
        alert = by_uid[f"callqa-{metric.replace('_', '-')}"]
        assert "severity" not in alert["labels"] and alert["for"] == "0s"  # the query's severity labels each instance
        query = next(d for d in alert["data"] if d["refId"] == "A")["model"]["rawSql"]
        condition = next(d for d in alert["data"] if d["refId"] == "C")["model"]["conditions"][0]["evaluator"]
        assert condition == {"params": [0], "type": "gt"}
        for at in (datetime(2024, 3, 4, 12, tzinfo=UTC), datetime(2024, 3, 6, 10, 7, tzinfo=UTC), END):
            columns, rows = run_panel(week, query, at - timedelta(hours=1), at, {})
            assert columns == ["level", "site_id", "entity_id", "severity", "alert_id", "windows_breached"]
            assert set(rows) == open_threshold_alerts(week, metric, at), (metric, at)
            seen |= {r[3] for r in rows}
    assert seen == {"warning", "critical"}


def test_the_incident_rule_notifies_on_open_incidents(week):
    rule = next(r for r in rules() if r["uid"] == "callqa-quality-drift")
    query = next(d for d in rule["data"] if d["refId"] == "A")
    columns, rows = run_panel(week, query["model"]["rawSql"], END - timedelta(seconds=query["relativeTimeRange"]["from"]),
                              END, {})
    assert columns[:3] == ["level", "site_id", "entity_id"] and all(isinstance(r[-1], (int, float)) for r in rows)
    # the injected longer calls: one incident of site-2, still open
    assert [(r[0], r[1], r[2]) for r in rows if "handle_s" in r[3].split(",")] == [("site", "site-2", "site-2")]


NOW = datetime(2024, 3, 6, 10, 7, tzinfo=UTC)


def event(n: int, kind: str, seconds_before_now: float, site: str = "s1", **fields) -> dict:
    at = NOW - timedelta(seconds=seconds_before_now)
    return {"event_id": f"e{n}", "event_type": kind, "schema_version": 1, "site_id": site, "source": "test",
            "event_time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z", **fields}


def store_events(store, events: list[dict]) -> None:
    store.insert("raw_events", [raw_event(e, json.dumps(e)) for e in events])


@pytest.fixture
def scratch(week):
    """The week's store (one chdb per process) for events of sites s1 and s2 of its own, removed after."""
    yield week
    week.execute("ALTER TABLE raw_events DELETE WHERE site_id IN ('s1', 's2') SETTINGS mutations_sync = 2")


def test_contacts_waiting_now_against_an_independent_count(scratch):
    h = 3600
    calls = {  # call: [(kind, seconds before now, queue)], in no particular order
        "c1": [("call.queued", 60, "billing")],  # waiting 60 s
        "c2": [("call.queued", 30, "billing"), ("call.answered", 10, None)],
        "c3": [("call.queued", 100, "billing"), ("call.abandoned", 5, "billing")],
        "c4": [("call.queued", 200, "billing"), ("call.answered", 150, None), ("call.transferred", 40, None),
               ("call.queued", 20, "sales")],  # transferred, waiting again in sales for 20 s
        "c5": [("call.queued", 5 * h, "billing")],  # queued too long ago: its outcome was lost
        "c6": [("call.queued", -10, "billing")],  # after now
        "c7": [("call.queued", 50, "billing"), ("call.answered", -5, None)],  # answered after now: waiting now
        "c8": [("call.queued", 40, "billing"), ("call.answered", 40, None)],  # answered as it queued
        "c9": [("call.queued", 3.5 * h, "sales"), ("call.ended", 3.4 * h, None)],  # ended (caller hung up)
        "c10": [("call.queued", 3 * h, "sales")],  # a long wait, within the lookback
        "c11": [("call.queued", 15, "billing")],
    }
    sites = {"c11": "s2"}
    events, n = [], 0
    for call, marks in calls.items():
        for kind, before, queue in marks:
            n += 1
            events.append(event(n, kind, before, sites.get(call, "s1"), call_id=call,
                                **({"queue_id": queue} if queue else {}), **({"agent_id": "a1"} if kind in (
                                    "call.answered",) else {})))
    store_events(scratch, events + events[:3])  # a replay stores rows twice until they merge

    # independently: a call waits when, of its queue events up to now in the lookback, the latest is a
    # call.queued (an outcome at the same moment comes after it); it waits since then, in that queue
    expected: dict[tuple, list[int]] = {}
    lookback = timedelta(hours=q.WAITING_LOOKBACK_H)
    for call, marks in calls.items():
        seen = [(NOW - timedelta(seconds=b), kind != "call.queued", kind, queue) for kind, b, queue in marks
                if kind != "call.transferred" and NOW - lookback < NOW - timedelta(seconds=b) <= NOW]
        if seen and max(seen)[2] == "call.queued":
            at, _, _, queue = max(seen)
            expected.setdefault((sites.get(call, "s1"), queue), []).append(int((NOW - at).total_seconds()))
    values = {"site": ["s1", "s2"], "queue": ["billing", "sales"]}
    got = table(scratch, q.CONTACTS_WAITING, values, NOW - timedelta(hours=6), NOW)
    assert {(r["site_id"], r["queue_id"]): (r["waiting"], r["oldest_wait_s"]) for r in got} == {
        k: (len(v), max(v)) for k, v in expected.items()} == {
        ("s1", "billing"): (2, 60), ("s1", "sales"): (2, 3 * h), ("s2", "billing"): (1, 15)}
    total, = table(scratch, q.CONTACTS_WAITING_TOTAL, values, NOW - timedelta(hours=6), NOW)
    assert (total["waiting"], total["oldest_wait_s"]) == (5, 3 * h)
    only_s1_billing = table(scratch, q.CONTACTS_WAITING, {"site": ["s1"], "queue": ["billing"]}, NOW, NOW)
    assert [(r["site_id"], r["queue_id"], r["waiting"]) for r in only_s1_billing] == [("s1", "billing", 2)]


def test_service_now_today_and_last_30_minutes_agree_with_the_quarter_hour_windows(week):
    """The wallboard's 5-minute buckets against the 15-minute windows (summed apart) at a quarter hour."""
    now = datetime(2024, 3, 6, 10, 15, tzinfo=UTC)
    values = {"site": ["site-1", "site-2"], "queue": ["billing", "cards", "complaints", "sales", "tech"],
              "agent": [r[0] for r in week.query("SELECT agent_id FROM agents FINAL")[1]],
              "min_calls": ["0"]}  # the sums as they are (the minimum: test_wallboard_now_draws_no_ratio_...)
    windows = table(week, "SELECT site_id, entity_id, window_start >= '2024-03-06 09:45:00' AS recent, sl_numerator, "
                          "sl_denominator, abandoned, offered, wait_answered_ms, answered FROM kpi_windows FINAL "
                          "WHERE level = 'queue' AND window_s = 900 AND window_start >= '2024-03-06 00:00:00' "
                          "AND window_start < '2024-03-06 10:15:00'", {})

    def ratio(rows, numerator, denominator, scale=1):
        d = sum(r[denominator] for r in rows)
        return sum(r[numerator] for r in rows) / d / scale if d else None
    queues = {(r["site_id"], r["queue_id"]): r for r in table(week, q.QUEUES_NOW, values, now, now)}
    assert len(queues) == 10
    for (site, queue), row in queues.items():
        mine = [w for w in windows if (w["site_id"], w["entity_id"]) == (site, queue)]
        recent = [w for w in mine if w["recent"]]
        assert row["service_level_today"] == pytest.approx(ratio(mine, "sl_numerator", "sl_denominator"))
        assert row["offered_today"] == sum(w["offered"] for w in mine)
        for column, expected in (("service_level_30m", ratio(recent, "sl_numerator", "sl_denominator")),
                                 ("abandon_rate_30m", ratio(recent, "abandoned", "offered")),
                                 ("asa_s_30m", ratio(recent, "wait_answered_ms", "answered", 1000))):
            assert row[column] == (pytest.approx(expected) if expected is not None else None), (site, queue, column)
        assert row["service_level_target"] == RULE["service_level"].warning
    total, = table(week, q.LIVE_SERVICE_NOW, values, now, now)
    assert total["service_level_today"] == pytest.approx(ratio(windows, "sl_numerator", "sl_denominator"))
    assert total["service_level_30m"] == pytest.approx(ratio([w for w in windows if w["recent"]], "sl_numerator",
                                                             "sl_denominator"))


def test_agents_now_states_and_time_in_state(scratch):
    n = iter(range(1000))
    state = lambda agent, before, s, reason=None, site="s1": event(next(n), "agent.state_changed", before, site,
                                                                   agent_id=agent, state=s, reason=reason)
    call = lambda kind, agent, before, call_id, queue=None, site="s1": event(
        next(n), kind, before, site, call_id=call_id,
        **({"from_agent_id": agent, "transfer_type": "blind"} if kind == "call.transferred" else {"agent_id": agent}),
        **({"queue_id": queue} if queue else {}))
    events = [
        state("a1", 7200, "logged_in"), state("a1", 7200, "available"), call("call.answered", "a1", 100, "k1", "billing"),
        state("a2", 7200, "logged_in"), call("call.answered", "a2", 300, "k2", "billing"), call("call.ended", "a2", 60, "k2"),
        call("call.answered", "a3", 400, "k3", "sales"), call("call.ended", "a3", 200, "k3"),
        call("call.wrapup_ended", "a3", 150, "k3"), state("a3", 3000, "available"),
        state("a4", 3600, "available"), state("a4", 600, "not_ready", "lunch"),
        call("call.answered", "a5", 900, "k5", "sales"), call("call.ended", "a5", 800, "k5"), state("a5", 30, "logged_out"),
        state("a6", 3600, "available"), call("call.answered", "a6", 500, "k6", "sales"), state("a6", 300, "not_ready", "break"),
        call("call.answered", "a7", 500, "k7", "billing"), call("call.transferred", "a7", 100, "k7"),
        state("a8", 25 * 3600, "available"),  # nothing for a day: not counted
        state("a9", 20, "available"), state("a9", -60, "logged_out"),  # logs off after now: still staffed now
        call("call.answered", "b1", 300, "k8", "billing", site="s2"), call("call.ended", "b1", 100, "k8", site="s2"),
    ]  # s2's source reports no wrap-ups: after a call its agents are back in their state at once
    store_events(scratch, events)
    values = {"site": ["s1", "s2"], "queue": ["billing", "sales"], "agent": [f"a{i}" for i in range(1, 10)] + ["b1"],
              "min_calls": ["20"]}
    got = {r["agent_id"]: (r["state"], r["reason"], r["time_in_state_s"], r["queue_id"])
           for r in table(scratch, q.AGENTS_NOW, values, NOW - timedelta(hours=6), NOW)}
    assert got == {
        "a1": ("on_contact", "", 100, "billing"),
        "a2": ("after_call_work", "", 60, ""),
        "a3": ("available", "", 150, ""),
        "a4": ("not_ready", "lunch", 600, ""),
        "a6": ("on_contact", "", 500, "sales"),  # a break that starts during a call waits for its end
        "a7": ("after_call_work", "", 100, ""),  # transferred the call away
        "a9": ("available", "", 20, ""),
        "b1": ("available", "", 100, ""),
    }
    by_site = table(scratch, q.AGENTS_BY_SITE, values, NOW - timedelta(hours=6), NOW)
    assert by_site == [
        {"site_id": "s1", "staffed": 7, "available": 2, "on_contact": 2, "after_call_work": 2, "not_ready": 1,
         "longest_not_ready_s": 600},
        {"site_id": "s2", "staffed": 1, "available": 1, "on_contact": 0, "after_call_work": 0, "not_ready": 0,
         "longest_not_ready_s": 0}]
    queues = {(r["site_id"], r["queue_id"]): r["agents_on_contact"]
              for r in table(scratch, q.QUEUES_NOW, values, NOW - timedelta(hours=6), NOW)}
    assert queues == {("s1", "billing"): 1, ("s1", "sales"): 1}


def colour(steps: list[dict], value: float) -> str:
    """The colour Grafana gives a value: the last step at or below it (the first step is the base)."""
    return [s["color"] for s in steps if s["value"] is None or value >= s["value"]][-1]


def test_wallboard_colours_are_the_threshold_rules():
    """Every service KPI on the wallboard is coloured by callqa.core.thresholds.RULES (the limits the
    alerts use), a value at, just past and beyond each limit as the core judges it."""
    coloured = {}
    for panel in boards()["callqa-live"]["panels"]:
        if panel["type"] == "stat" and "thresholds" in panel["fieldConfig"]["defaults"]:
            column = panel["options"]["reduceOptions"]["fields"].strip("/^$")
            coloured[(panel["title"], column)] = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert panel["options"]["colorMode"] == "background" and panel["fieldConfig"]["defaults"]["color"] == {
                "mode": "thresholds"}
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "thresholds":
                    coloured[(panel["title"], override["matcher"]["options"])] = prop["value"]["steps"]
    metric_of = lambda column: next(m for m in RULE if column.startswith(m))
    assert {metric_of(c) for _, c in coloured} == set(RULE)
    assert {c for _, c in coloured} >= {"service_level_today", "service_level_30m", "abandon_rate_30m", "asa_s_30m"}
    for (title, column), steps in coloured.items():
        rule = RULE[metric_of(column)]
        limits = [s["value"] for s in steps[1:]]
        if rule.worse < 0:
            assert limits == [rule.critical, rule.warning], (title, column)
        else:  # the next float above each limit: the core's limits are strict
            assert limits == pytest.approx([rule.warning, rule.critical], abs=0, rel=1e-15)
            assert limits[0] > rule.warning and limits[1] > rule.critical
        for limit in (rule.warning, rule.critical):
            for value in (limit * 0.5, limit - 1e-9, limit, limit + 1e-9, limit * 1.5, 0.0):
                assert colour(steps, value) == SEVERITY_COLOURS[severity(rule, value)], (title, column, value)
    # the service-level stat says its target in percent
    assert any(f"target {RULE['service_level'].warning:.0%}" in t for t, _ in coloured)


def table(store, sql: str, values: dict, start=START, end=END) -> list[dict]:
    columns, rows = run_panel(store, sql, start, end, values)
    return [dict(zip(columns, r)) for r in rows]


def test_panel_figures_agree_with_each_other_and_the_store(week):
    values = resolve_variables(week, boards()["callqa-drift"], START, END) | {"queue": []}
    values["queue"] = resolve_variables(week, boards()["callqa-live"], START, END)["queue"]
    # the same week three ways: 5-minute windows (live), the day rollup and the month rollup
    live = {r["site_id"]: r for r in table(week, q.LIVE_SITES, values)}
    sites = {r["site_id"]: r for r in table(week, q.SITE_COMPARISON, values)}
    months = {r["site_id"]: r for r in table(week, q.SITE_MONTHLY, values)}
    assert set(live) == set(sites) == set(months) == {"site-1", "site-2"}
    for site in live:
        assert live[site]["calls_offered"] == sites[site]["calls_offered"] == months[site]["calls_offered"] > 1000
        for k in ("service_level", "asa_s", "abandon_rate"):
            assert live[site][k] == sites[site][k], (site, k)
    # site-2's calls got 50% longer from day 4: its handle time per day rises
    aht = [r["aht_s"] for r in table(week, q.site_daily("aht_s"), values) if r["site_id"] == "site-2"]
    assert min(aht[4:7]) > 1.3 * max(aht[:3])

    # calibration: the evaluator who scores 9 points low leads the deviations
    evaluators = table(week, q.CALIBRATION_EVALUATORS, values)
    assert evaluators[0]["evaluator_id"] == "qa-03" and evaluators[0]["mean_deviation"] < -6
    assert evaluators[0]["flagged"] == max(e["flagged"] for e in evaluators)

    # the drifts raised alerts, and the drifting team's agents are reviewed more, with the reason
    alerts = table(week, q.DRIFT_ALERTS, values)
    assert any(a["entity_id"].startswith(("site-1/team-1", "site-1-a00")) and a["opened_at"] >= "2024-03-06" for a in alerts)
    assert any(a["entity_id"] == "site-2" and a["metric"] == "handle_s" for a in alerts)
    rates = table(week, q.SAMPLING_RATES_NOW, values)
    raised = [r for r in rates if r["team_id"] == "site-1/team-1" and r["cause"] == "raised"]
    assert raised and all(r["rate"] > PolicyConfig.base_rate for r in raised)

    # coverage counts every recorded call once
    coverage = table(week, q.COVERAGE, values)
    (recorded,), = week.query("SELECT count() FROM sampling_decisions FINAL")[1]
    assert sum(r["recorded"] for r in coverage) == recorded
    assert {r["target_share"] for r in coverage} == {PolicyConfig.base_rate}
    (human,), = week.query("SELECT count() FROM evaluations FINAL WHERE kind = 'human' "
                           "AND evaluated_at <= '2024-03-11 00:00:00'")[1]
    assert sum(r["evaluated"] for r in coverage) == human


def test_macros_expand_as_the_plugin_does():
    start, end = datetime(2024, 3, 4, 8, tzinfo=UTC), datetime(2024, 3, 4, 9, 30, tzinfo=UTC)
    sql = ("SELECT $__timeInterval(t) FROM x WHERE $__timeFilter(t) AND $__dateFilter(d) AND $__timeFilter_ms(t) "
           "AND s IN (${site:singlequote}) AND a = '$agent' AND $__fromTime < $__toTime_ms")
    assert macros.expand(sql, start, end, {"site": ["a", "b'c"], "agent": ["x"]}, interval_s=300) == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL 300 second) FROM x WHERE t >= toDateTime(1709539200) AND "
        "t <= toDateTime(1709544600) AND d >= toDate('2024-03-04') AND d <= toDate('2024-03-04') AND "
        "t >= fromUnixTimestamp64Milli(1709539200000) AND t <= fromUnixTimestamp64Milli(1709544600000) AND "
        "s IN ('a','b\\'c') AND a = 'x' AND toDateTime(1709539200) < fromUnixTimestamp64Milli(1709544600000)")
    for bad in ("$__timeGroup(t)", "$__timeFilter(a, b)", "${nope}", "${site:percentencode}"):
        with pytest.raises(macros.MacroError):
            macros.expand(bad, start, end, {"site": ["a"]})


# The Today board (callqa-today) -------------------------------------------------------------------------
DAY = date(2024, 3, 10)  # the week's last day: the board's range START..END decides on it


def panel(uid: str, title: str) -> dict:
    return next(p for p in boards()[uid]["panels"] if p["title"].startswith(title))


def target_rows(store, p: dict, values: dict, ref: str = "A", start=START, end=END) -> list[dict]:
    return table(store, next(t for t in p["targets"] if t["refId"] == ref)["rawSql"], values, start, end)


@pytest.fixture(scope="module")
def today(week):
    """The board's variables over the week, and the report's Today of its last day (callqa/report.py)."""
    values = resolve_variables(week, boards()[TODAY], START, END)
    return values, report.today(week, DAY, {"site": values["site"]}, report.Options())


def test_today_lists_the_reports_decisions_of_the_ranges_last_day(week, today):
    values, expected = today
    assert (q.INCIDENT_STATUS_WORDS, q.CHARTED_METRICS) == (report.STATUS_WORDS, report.MAX_CHARTED_METRICS)
    incidents = target_rows(week, panel(TODAY, "Quality incidents"), values)
    assert list(incidents[0]) == ["alert_id", "status", "scope", "site_id", "metrics", "opened", "minutes_open",
                                  "open_for", "evidence", "series", "series_params"]
    assert [(r["alert_id"], r["status"], r["scope"], r["opened"], r["open_for"], r["evidence"], r["series"])
            for r in incidents] == [
        (i["alert_id"], i["status_word"], f"{i['level']} {i['entity_id']}", report.minute(i["opened_at"]), i["open_for"],
         i["evidence_words"], ", ".join(i["series"])) for i in expected["incidents"]]
    # the three injected drifts, open; the series variable: every series of the day's incidents
    assert {r["metrics"] for r in incidents} == {"negative customers", "handle time", "human QA score"}
    assert {r["status"] for r in incidents} == {"open"}
    assert values["series"] == sorted({s for i in expected["incidents"] for s in i["series"]})
    assert all(r["series_params"] == "&".join(f"var-series={s}" for s in r["series"].split(", ")) for r in incidents)

    reviews = target_rows(week, panel(TODAY, "Who to review today"), values)
    assert list(reviews[0]) == ["call_id", "time", "agent_id", "team_id", "site_id", "method_words", "why", "risk",
                                "recording"]
    target = int(next(s.default for s in SETTINGS if s.env == "CALLQA_QA_MONTHLY_TARGET"))
    assert [(r["call_id"], r["time"], r["agent_id"], r["method_words"], r["why"], r["risk"], r["recording"])
            for r in reviews] == [
        (r["call_id"], report.minute(r["at"])[11:], r["agent_id"], report.METHOD_WORDS.get(r["method"], r["method"]),
         report.why(r, target), r["risk"], r["storage_uri"]) for r in expected["reviews"]]
    # every reason is there: an incident, an operational change, the coverage rule, the monthly minimum
    assert {r["why"].split(" ")[0] for r in reviews} >= {"incident", "operational", "coverage", "monthly"}

    behind = target_rows(week, panel(TODAY, "Agents behind their monthly target"), values)
    assert behind == expected["behind"] and behind
    assert list(behind[0]) == ["agent_id", "team_id", "site_id", "first_call", "evaluated", "due", "target",
                               "queued_today"]
    outliers = target_rows(week, panel(TODAY, "Calibration outliers"), values)
    assert outliers == expected["calibration"] and outliers[0]["evaluator_id"] == "qa-03"


def test_today_links_recordings_from_the_template_and_agents_to_their_page(week, today):
    values, expected = today
    reviews = panel(TODAY, "Who to review today")
    links = {o["matcher"]["options"]: p["value"] for o in reviews["fieldConfig"]["overrides"]
             for p in o["properties"] if p["id"] == "links"}
    assert links["call_id"][0]["url"] == "${__data.fields.recording:raw}"
    agent = links["agent_id"][0]["url"]  # the agent-quality board, its variables set to the row's agent
    assert agent.startswith("/d/callqa-agent-quality?") and {"site", "team", "agent"} == {
        v["name"] for v in boards()["callqa-agent-quality"]["templating"]["list"] if v["type"] != "constant"}
    assert all(f"var-{v}=${{__data.fields.{v}_id}}" in agent for v in ("site", "team", "agent"))
    incidents = panel(TODAY, "Quality incidents")
    chart = next(p["value"][0]["url"] for o in incidents["fieldConfig"]["overrides"] if o["matcher"]["options"] == "alert_id"
                 for p in o["properties"] if p["id"] == "links")
    assert chart.startswith(f"/d/{TODAY}?") and "${__data.fields.series_params:raw}" in chart

    # another template: each call's values put in, percent-encoded but for / and :, as the report links them
    template = "https://recordings.example/play?uri={storage_uri}&call={call_id}&id={recording_id}"
    found = target_rows(week, reviews, values | {"recording_url": [template]})
    by_call = {r["call_id"]: r for r in expected["reviews"]}
    assert found and all(r["recording"] == report.recording_link(template, by_call[r["call_id"]]) for r in found)
    assert found[0]["recording"].startswith("https://recordings.example/play?uri=s3://")
    odd = {"storage_uri": "s3://bucket/a b%é?&=.wav", "call_id": "c/1", "recording_id": "r:1#2"}
    literal = lambda v: "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    (link,), = week.query(macros.expand(
        f"SELECT {q.RECORDING_LINK} FROM (SELECT {', '.join(f'{literal(v)} AS {k}' for k, v in odd.items())})",
        START, END, {"recording_url": [template]}))[1]
    assert link == report.recording_link(template, odd)


def stored_states(store, series: list[str], start=START, end=END) -> dict[tuple, dict]:
    """detector_state rows by (series, time), the latest version of each, read without FINAL."""
    found = table(store, "SELECT series, metric, toString(time) AS time, argMax(tuple(value, expected, alarm_value, "
                         "statistic, decision_limit, ready, in_alarm, observations), version) AS s FROM detector_state "
                         f"WHERE series IN ({', '.join(repr(s) for s in series)}) AND time >= '{start:%Y-%m-%d %H:%M:%S}' "
                         f"AND time <= '{end:%Y-%m-%d %H:%M:%S}' GROUP BY series, metric, time", {})
    keys = ("value", "expected", "alarm_value", "statistic", "decision_limit", "ready", "in_alarm", "observations")
    return {(r["series"], r["time"]): {"metric": r["metric"], **dict(zip(keys, r["s"]))} for r in found}


def assert_draws_the_stored_state(store, p: dict, values: dict, series: list[str], min_calls: int) -> set[str]:
    """Every stored hour of the series is drawn once, by the query of its metric's scale, as stored: the value
    (a share of fewer than ``min_calls`` calls left out), the expected value once the chart is ready, the alarm
    line, the value again when in alarm; and the CUSUM against its limit. The scales drawn."""
    stored = stored_states(store, series)
    assert stored
    ref_of = {ref: scale for scale, (ref, _, _) in DETECTOR_AXES.items()}
    drawn: dict[tuple, dict] = {}
    for target in p["targets"]:
        for r in table(store, target["rawSql"], values):
            key = (r["series"], r["time"])
            if target["refId"] == "D":
                assert (r["statistic"], r["decision_limit"]) == (stored[key]["statistic"], stored[key]["decision_limit"])
                continue
            assert key not in drawn and stored[key]["metric"] in q.SCALES[ref_of[target["refId"]]], key
            drawn[key] = r
    assert set(drawn) == set(stored)
    for key, r in drawn.items():
        s = stored[key]
        value = None if s["metric"] in q.SCALES["binary"] and s["observations"] < min_calls else s["value"]
        assert (r["value"], r["expected"], r["alarm_value"], r["in_alarm_value"], r["observations"]) == (
            value, s["expected"] if s["ready"] else None, s["alarm_value"], value if s["in_alarm"] else None,
            s["observations"]), key
    return {next(sc for sc, ms in q.SCALES.items() if stored[k]["metric"] in ms) for k in drawn}


def test_incident_charts_draw_the_detectors_stored_state(week, today):
    values, _ = today
    chart = panel(TODAY, "${series}")
    assert chart["repeat"] == "series" and {t["refId"] for t in chart["targets"]} == {"A", "B", "C", "D"}
    units = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
             for o in chart["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byFrameRefID"}
    assert {ref: u["unit"] for ref, u in units.items()} == {"A": "percent", "B": "s", "C": "percentunit", "D": "none"}
    assert units["D"]["custom.axisPlacement"] == "right"
    min_calls = int(values["min_calls"][0])
    scales = assert_draws_the_stored_state(week, chart, values, values["series"], min_calls)
    assert scales == {"normal", "log", "binary"}  # QA, handle time and negative customers
    # a share of fewer calls than the minimum is not drawn: the site's small hours
    (few,), = week.query(f"SELECT count() FROM detector_state FINAL WHERE series IN "
                         f"({', '.join(repr(s) for s in values['series'])}) AND metric = 'sentiment_negative' "
                         f"AND observations < {min_calls}")[1]
    assert few > 0


def test_the_control_chart_is_the_detectors_state(week):
    p = panel("callqa-drift", "Human QA drift chart")
    assert p["repeat"] == "site"
    for target in p["targets"]:
        assert "FROM detector_state" in target["rawSql"] and "evaluations" not in target["rawSql"]
    sites = ["site-1", "site-2"]
    scales = assert_draws_the_stored_state(week, p, {"site": sites}, [f"site|{s}|{s}|qa_human" for s in sites], 0)
    assert scales == {"normal"}
    assert "upper_limit" not in json.dumps(boards())  # no limits of its own left anywhere


def test_no_ratio_is_drawn_from_fewer_calls_than_the_minimum(week):
    values = resolve_variables(week, boards()["callqa-live"], START, END)
    minimum = int(values["min_calls"][0])
    for title, ratios_drawn in (("Service level and abandonment", ("service_level", "abandon_rate")),
                                ("Speed of answer and longest wait", ("asa_s",))):
        p = panel("callqa-live", title)
        found = target_rows(week, p, values, start=datetime(2024, 3, 6, tzinfo=UTC), end=datetime(2024, 3, 7, tzinfo=UTC))
        few = [r for r in found if r["calls_offered"] < minimum]
        assert few and all(r[c] is None for r in few for c in ratios_drawn)
        assert all(r["service_level" if "service_level" in r else "asa_s"] is not None
                   for r in found if r["calls_offered"] >= minimum)
        # the threshold rules' limits drawn as dashed lines on the ratio's axis
        lines = {o["matcher"]["options"] for o in p["fieldConfig"]["overrides"]
                 for prop in o["properties"] if prop["id"] == "custom.thresholdsStyle"}
        assert lines == set(ratios_drawn)


def test_review_rates_chart_the_agents_with_the_highest_rate(week):
    values = resolve_variables(week, boards()["callqa-drift"], START, END)
    p = panel("callqa-drift", "Review-rate changes")
    found = target_rows(week, p, values)
    everyone = table(week, q.SAMPLING_RATE_TREND, values)
    top, of = report.top_rates(everyone, report.Options().top)
    assert of > report.Options().top and sorted(map(str, found)) == sorted(map(str, top))


# The wallboard's "now" per site: local days (CALLQA_SITE_TIMEZONES) and the minimum of calls -----------
ZONED = {"tz-bj": "Asia/Shanghai", "tz-utc": "UTC", "tz-la": "America/Los_Angeles", "tz-syd": "Australia/Sydney"}
NO_DAY_WINDOWS = {"tz-syd"}  # stored as with CALLQA_KPI_WINDOWS=900,3600: 5-minute buckets but no day windows
ZONED_QUEUES = ("sales", "billing")
FIVE_MINUTES = timedelta(minutes=5)


def zoned_calls(site: str, bucket: datetime) -> dict[str, int]:
    """Calls per queue in a 5-minute bucket: busier in the site's local working hours; tz-utc open 03-22 UTC
    only (so at 02:30 UTC it has had nothing yet today)."""
    hour = bucket.astimezone(ZoneInfo(ZONED[site])).hour
    if site == "tz-utc":
        return {"sales": 5, "billing": 2} if 3 <= hour < 22 else {}
    day = 9 <= hour < 18
    return {"sales": 4 if day else 1, "billing": 3 if day else 1}


@pytest.fixture
def zoned(week):
    """Four sites of their own in the week's store, each in its zone, with 5-minute queue and site buckets and
    (but tz-syd) day windows from the site's local midnight, as the KPI stage writes them
    (callqa.core.kpi with CALLQA_SITE_TIMEZONES), from 2024-03-04 to 2024-03-12. Yields each bucket's calls:
    (site, queue, bucket start) -> counters."""
    clock = SiteClock(ZONED)
    config = kpi.KpiConfig(window_sizes_s=(86400,), clock=clock)
    windows: dict[str, dict] = {}
    calls: dict[tuple, dict] = {}
    n = 0
    bucket = datetime(2024, 3, 4, tzinfo=UTC)
    while bucket < datetime(2024, 3, 12, tzinfo=UTC):
        for site in ZONED:
            for queue, count in zoned_calls(site, bucket).items():
                c = {"offered": 0, "answered": 0, "abandoned": 0, "sl_numerator": 0, "sl_denominator": 0,
                     "wait_answered_ms": 0}
                for _ in range(count):
                    n += 1
                    abandoned = n % 5 == 0
                    c["offered"] += 1
                    c["abandoned" if abandoned else "answered"] += 1
                    c["sl_denominator"] += 1
                    c["sl_numerator"] += not abandoned and n % 3 != 0
                    c["wait_answered_ms"] += 0 if abandoned else 1000 * (n % 47)
                calls[(site, queue, bucket)] = c
                at = int(bucket.timestamp() * 1000)
                sizes = [s for s in config.sizes("queue") if s != 86400 or site not in NO_DAY_WINDOWS]
                for level, entity in (("queue", queue), ("site", site)):
                    keys = [k for k in kpi.keys_at(config, at, [(level, site, entity)]) if int(k.split("|")[3]) in sizes]
                    kpi.add(windows, keys, c)
        bucket += FIVE_MINUTES
    week.insert("kpi_windows", [kpi.row(key, acc, clock) for key, acc in windows.items()])
    yield calls
    week.execute("ALTER TABLE kpi_windows DELETE WHERE site_id LIKE 'tz-%' SETTINGS mutations_sync = 2")


def expected_now(calls: dict, now: datetime, minimum: int, by_queue: bool) -> dict:
    """The wallboard's figures now, from the calls: 'today' each site's local day of ``now`` (zoneinfo), the
    last 30 minutes the six buckets before it; a ratio of fewer calls offered than ``minimum`` is None."""
    sums: dict[tuple, dict] = {}
    for (site, queue, bucket), c in calls.items():
        if bucket >= now:
            continue
        zone = ZoneInfo(ZONED[site])
        mine = sums.setdefault((site, queue) if by_queue else (), defaultdict(int))
        if bucket.astimezone(zone).date() == now.astimezone(zone).date():
            mine["offered_today"] += c["offered"]
            mine["sl_numerator_today"] += c["sl_numerator"]
            mine["sl_denominator_today"] += c["sl_denominator"]
        if bucket >= now - timedelta(minutes=30):
            for k, v in c.items():
                mine[f"{k}_30m"] += v
    ratio = lambda s, num, den, count, scale=1: (
        None if s[count] < minimum or not s[den] else s[num] / s[den] / scale)
    return {key: {"offered_today": s["offered_today"], "offered_30m": s["offered_30m"],
                  "service_level_today": ratio(s, "sl_numerator_today", "sl_denominator_today", "offered_today"),
                  "service_level_30m": ratio(s, "sl_numerator_30m", "sl_denominator_30m", "offered_30m"),
                  "abandon_rate_30m": ratio(s, "abandoned_30m", "offered_30m", "offered_30m"),
                  "asa_s_30m": ratio(s, "wait_answered_ms_30m", "answered_30m", "offered_30m", 1000)}
            for key, s in sums.items()}


def approx_row(row: dict) -> dict:
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}


ZONED_NOWS = (
    datetime(2024, 3, 6, 2, 30, tzinfo=UTC),  # Shanghai 10:30 on the 6th (since 16:00Z), LA 18:30 on the 5th; tz-utc: nothing yet
    datetime(2024, 3, 5, 20, 0, tzinfo=UTC),  # Shanghai 04:00 on the 6th, LA noon on the 5th
    datetime(2024, 3, 5, 16, 0, tzinfo=UTC),  # Shanghai's midnight: its new day has nothing yet
    datetime(2024, 3, 11, 6, 30, tzinfo=UTC),  # LA 23:30 on the 10th: the last hour of a 23-hour day (DST)
    datetime(2024, 3, 11, 7, 30, tzinfo=UTC),  # LA 00:30 on the 11th
)


def zoned_values(week) -> dict:
    return {"site": list(ZONED), "queue": list(ZONED_QUEUES), "agent": [""],
            "min_calls": resolve_variables(week, boards()["callqa-live"], START, END)["min_calls"]}


def test_wallboard_today_is_each_sites_local_day(week, zoned):
    """'Today' per site is its own local day (Asia/Shanghai, UTC, America/Los_Angeles across the DST change,
    and Australia/Sydney stored without day windows), not the UTC day: against zoneinfo on the buckets."""
    values = zoned_values(week)
    minimum = int(values["min_calls"][0])
    for now in ZONED_NOWS:
        expected = expected_now(zoned, now, minimum, by_queue=True)
        got = {(r["site_id"], r["queue_id"]): r for r in table(week, q.QUEUES_NOW, values, now, now)}
        assert set(got) <= set(expected), now
        for key, e in expected.items():  # a queue not listed has had nothing today
            mine = {k: got.get(key, {"offered_today": 0, "service_level_today": None})[k]
                    for k in ("offered_today", "service_level_today")}
            assert mine == approx_row({k: e[k] for k in mine}), (now, key)
        total, = table(week, q.LIVE_SERVICE_NOW, values, now, now)
        e = expected_now(zoned, now, minimum, by_queue=False)[()]
        assert {k: total[k] for k in ("offered_today", "service_level_today")} == approx_row(
            {k: e[k] for k in ("offered_today", "service_level_today")}), now
    # the cases the UTC day gets wrong are there: each site's today differs from the UTC day somewhere
    utc_day = lambda now, b: b.date() == now.date()
    local_day = lambda now, site, b: b.astimezone(ZoneInfo(ZONED[site])).date() == now.astimezone(ZoneInfo(ZONED[site])).date()
    for site in ("tz-bj", "tz-la", "tz-syd"):
        assert any(utc_day(now, b) != local_day(now, site, b) for now in ZONED_NOWS
                   for (s, _, b) in zoned if s == site and b < now)
    # at 02:30 UTC tz-utc has had no call yet today (its last ones yesterday evening): nothing today
    assert {k: e["offered_today"] for k, e in expected_now(zoned, ZONED_NOWS[0], minimum, True).items()
            if k[0] == "tz-utc"} == {("tz-utc", "sales"): 0, ("tz-utc", "billing"): 0}


def test_wallboard_now_draws_no_ratio_from_fewer_calls_than_the_minimum(week, zoned):
    """Service level, abandonment and speed of answer now (per queue and in the big numbers) are blank from
    fewer calls offered than min_calls; the calls offered are shown."""
    values = zoned_values(week)
    minimum = int(values["min_calls"][0])
    columns = ("offered_today", "offered_30m", "service_level_today", "service_level_30m", "abandon_rate_30m",
               "asa_s_30m")
    blank = shown = 0
    for now in ZONED_NOWS:
        expected = expected_now(zoned, now, minimum, by_queue=True)
        for r in table(week, q.QUEUES_NOW, values, now, now):
            e = expected[(r["site_id"], r["queue_id"])]
            assert {k: r[k] for k in columns} == approx_row({k: e[k] for k in columns}), (now, r["site_id"], r["queue_id"])
            blank += e["offered_30m"] and e["service_level_30m"] is None
            shown += e["service_level_30m"] is not None
        for sites in (list(ZONED), ["tz-bj"]):
            total, = table(week, q.LIVE_SERVICE_NOW, values | {"site": sites}, now, now)
            e = expected_now({k: v for k, v in zoned.items() if k[0] in sites}, now, minimum, by_queue=False)[()]
            assert {k: total[k] for k in columns} == approx_row({k: e[k] for k in columns}), (now, sites)
    assert blank and shown  # both sides of the minimum
    # the big numbers say why they are blank
    for p in boards()["callqa-live"]["panels"]:
        if p["type"] == "stat" and p["options"]["reduceOptions"]["fields"].strip("/^$") in columns:
            assert p["fieldConfig"]["defaults"]["noValue"] == f"fewer than {minimum} calls", p["title"]


def test_agent_quality_draws_no_csat_from_fewer_answers_than_the_minimum(week):
    """QA score and CSAT per day: CSAT blank from fewer survey answers than min_calls (summed over the chosen
    agents first); the answers counted are shown."""
    board = boards()["callqa-agent-quality"]
    minimum = int(next(v["query"] for v in board["templating"]["list"] if v["name"] == "min_calls"))
    days = {  # day: [(agent, answers, satisfied)]
        date(2024, 3, 4): [("tz-a1", 1, 0)],  # 0 % from one answer
        date(2024, 3, 5): [("tz-a1", 4, 1)],  # 25 % from four
        date(2024, 3, 6): [("tz-a1", minimum - 1, minimum - 2)],
        date(2024, 3, 7): [("tz-a1", minimum, minimum - 5)],
        date(2024, 3, 8): [("tz-a1", minimum // 2, 3), ("tz-a2", minimum - minimum // 2, 4)],  # enough together
    }
    rows = [{"level": "agent", "site_id": "tz-site", "entity_id": agent, "day": str(day), "hours": 8,
             "csat_responses": answers, "csat_satisfied": satisfied, "csat_sum": 4 * answers,
             "qa_human_score": 8.0, "qa_human_max": 10.0, "qa_auto_score": 7.0, "qa_auto_max": 10.0,
             "refreshed_at": "2024-03-12 00:00:00"} for day, found in days.items() for agent, answers, satisfied in found]
    week.insert("kpi_daily", rows)
    try:
        p = panel("callqa-agent-quality", "QA score and CSAT per day")
        got = target_rows(week, p, {"site": ["tz-site"], "agent": ["tz-a1", "tz-a2"], "min_calls": [str(minimum)]})
        expected = {}
        for day, found in days.items():
            answers, satisfied = sum(f[1] for f in found), sum(f[2] for f in found)
            expected[f"{day} 00:00:00"] = (answers, None if answers < minimum else round(100 * satisfied / answers, 1))
        assert {r["time"]: (r["surveys"], r["csat_pct"]) for r in got} == expected
        assert [r["qa_human_pct"] for r in got] == [80.0] * len(days)
        # the count is there on hover, not drawn on the percent axis
        hidden = {o["matcher"]["options"] for o in p["fieldConfig"]["overrides"] for prop in o["properties"]
                  if prop["id"] == "custom.hideFrom" and prop["value"]["viz"]}
        assert hidden == {"surveys"}
    finally:
        week.execute("ALTER TABLE kpi_daily DELETE WHERE site_id = 'tz-site' SETTINGS mutations_sync = 2")
