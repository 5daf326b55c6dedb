"""Grafana provisioning and dashboards: every panel's SQL, expanded as Grafana and the ClickHouse plugin
expand it, runs on chdb against a simulated week and returns the columns and rows the panel needs."""
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from callqa.core.dead_letters import dead_letter
from callqa.core.sampling import PolicyConfig
from dashboards import __main__ as generate
from dashboards.build import DASHBOARDS, DATASOURCE_UID, PLUGIN, PROMETHEUS_UID
from sinks import macros
from sinks import queries as q
from sinks.store import EmbeddedStore
from tests.conftest import ROOT, callqa_env, run_callqa

PROVISIONING = ROOT / "dashboards" / "provisioning"
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
    assert set(boards()) == set(DASHBOARDS) == {"callqa-live", "callqa-agent-quality", "callqa-drift",
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
        used += [v["datasource"] for v in board["templating"]["list"]]
        used += [a["datasource"] for a in board.get("annotations", {}).get("list", [])]
        # the pipeline board reads Prometheus and the store; the others the store only
        assert used and all(d in ((CLICKHOUSE_REF, PROMETHEUS_REF) if uid == PIPELINE else (CLICKHOUSE_REF,))
                            for d in used), uid
        for panel in board["panels"]:  # one datasource per panel, as Grafana runs it
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {panel["datasource"]["uid"]}, panel["title"]
        assert uid == PIPELINE or "site" in {v["name"] for v in board["templating"]["list"]}
    assert {d["uid"] for p in boards()[PIPELINE]["panels"] for d in [p["datasource"]]} == {DATASOURCE_UID, PROMETHEUS_UID}
    variables = {v["name"] for b in boards().values() for v in b["templating"]["list"]}
    assert variables == {"site", "queue", "team", "agent"}
    for rule in rules():
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs and rule["annotations"]["__dashboardUid__"] in uids
        assert {d["datasourceUid"] for d in rule["data"]} in ({DATASOURCE_UID, "__expr__"}, {PROMETHEUS_UID, "__expr__"})
    assert {r["uid"] for r in rules()} == {"callqa-service-level", "callqa-abandon-rate", "callqa-asa-s",
                                           "callqa-quality-drift", "callqa-sink-lag", "callqa-stage-lag",
                                           "callqa-sink-stale"}


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
        for title, panel, target in targets:
            columns, rows = run_panel(week, target["rawSql"], start, end, values)
            where = f"{uid} / {title}"
            if not rows:
                failures.append(f"{where}: no rows")
            if target["format"] == 0 and columns[0] != "time":
                failures.append(f"{where}: a time series must start with a time column, got {columns}")
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                if override["matcher"]["options"] not in columns:
                    failures.append(f"{where}: unit for missing column {override['matcher']['options']}")
            fields = panel.get("options", {}).get("reduceOptions", {}).get("fields")
            if fields and not any(re.fullmatch(fields.strip("/"), c) for c in columns):
                failures.append(f"{where}: no column matches {fields}")
    assert not failures, "\n".join(failures)


def test_alert_rules_query_the_kpis_and_open_drifts(week):
    values = {}
    for rule in rules():
        query = next(d for d in rule["data"] if d["refId"] == "A")
        if query["datasourceUid"] == PROMETHEUS_UID:  # PromQL: tests/test_pipeline_dashboard.py
            continue
        at = datetime(2024, 3, 4, 11, 0, tzinfo=UTC) if rule["uid"] != "callqa-quality-drift" else END
        columns, rows = run_panel(week, query["model"]["rawSql"], at - timedelta(seconds=query["relativeTimeRange"]["from"]),
                                  at, values)
        labels, value = columns[:-1], columns[-1]
        assert rows and labels[:3] == ["level", "site_id", "entity_id"], rule["uid"]
        assert all(isinstance(r[-1], (int, float)) for r in rows), rule["uid"]  # the number Grafana compares
        if rule["uid"] == "callqa-quality-drift":
            # the injected longer calls: one incident of site-2, still open
            assert [(r[0], r[1], r[2]) for r in rows if "handle_s" in r[3].split(",")] == [("site", "site-2", "site-2")]
        else:  # per site, the latest quarter-hour of the last half hour with enough calls to judge
            windows = week.query(f"SELECT site_id, window_end, offered, {value} FROM kpi_windows FINAL WHERE "
                                 "level = 'site' AND window_s = 900 AND window_end > '2024-03-04 10:30:00' AND "
                                 "window_end <= '2024-03-04 11:00:00' ORDER BY window_end")[1]
            expected = {site: v for site, _, offered, v in windows if offered >= 20}
            assert {r[1]: r[3] for r in rows if r[0] == "site"} == expected and len(expected) == 2


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
