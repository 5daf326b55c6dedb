"""ClickHouse history on the embedded engine (the server's DDL): migrations, retention, rollups, raw events."""
import json
from datetime import UTC, datetime, timedelta

import pytest

from sinks import retention, rollups
from sinks.migrate import MIGRATIONS, migrate
from sinks.store import EmbeddedStore
from tests.conftest import callqa_env, run_callqa

SCHEMA = "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() ORDER BY name"


def test_migrations_apply_twice_without_change(tmp_path):
    env = callqa_env(tmp_path)
    first = run_callqa(["migrate"], env)
    names = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))
    assert first.returncode == 0 and f"applied {', '.join(names)}" in first.stdout, first.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    before = store.query(SCHEMA)[1]
    store.close()
    second = run_callqa(["migrate"], env)
    assert second.returncode == 0 and "schema up to date" in second.stdout
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        assert store.query(SCHEMA)[1] == before
        assert store.query("SELECT name FROM schema_migrations ORDER BY name")[1] == [(n,) for n in names]
        created = dict(before)
        assert set(created) >= {"raw_events", "dead_letters", "call_records", "kpi_windows", "evaluations",
                                "sampling_rates", "sampling_decisions", "review_queue", "alerts", "agents",
                                "kpi_daily", "kpi_monthly", "kpi_daily_refresh", "kpi_monthly_refresh"}
        for table in retention.RAW + retention.HISTORY:
            assert "Replacing" in created[table] and "TTL ingested_at" in created[table], table
        for table in ("raw_events", "call_records", "kpi_windows", "evaluations", "alerts", "kpi_daily"):
            assert "PARTITION BY toYYYYMM(" in created[table] and "LowCardinality(String)" in created[table]
    finally:
        store.close()


def test_retention_is_configurable_and_counts_from_ingestion(embedded_store):
    store = embedded_store  # migrated with the default retention
    assert migrate(store) == []
    changed = migrate(store, raw_days=30, history_days=400)
    assert sorted(changed) == sorted([f"{t} keeps 30 days" for t in retention.RAW]
                                     + [f"{t} keeps 400 days" for t in retention.HISTORY])
    assert migrate(store, raw_days=30, history_days=400) == []
    engines = dict(store.query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()")[1])
    assert "TTL ingested_at + toIntervalDay(30)" in engines["raw_events"]
    assert "TTL ingested_at + toIntervalDay(400)" in engines["kpi_monthly"]

    def row(event_id, event_time, ingested):
        return {"event_id": event_id, "event_type": "call.offered", "site_id": "s", "source": "test",
                "event_time": event_time, "call_id": "c", "agent_id": "", "payload": "{}",
                "ingested_at": ingested.strftime("%Y-%m-%d %H:%M:%S")}

    now = datetime.now(UTC)
    store.insert("raw_events", [row("old-history", "2010-01-04T09:00:00.000Z", now),
                                row("stored-long-ago", "2026-01-04T09:00:00.000Z", now - timedelta(days=31))])
    store.execute("OPTIMIZE TABLE raw_events FINAL")
    # 2010 history replayed today is kept; a row stored 31 days ago is gone under a 30-day retention
    assert store.query("SELECT event_id FROM raw_events")[1] == [("old-history",)]


@pytest.fixture(scope="module")
def month_end(tmp_path_factory):
    """Three simulated days across a month end (1 site, 6 agents), as a file and replayed into a store."""
    tmp = tmp_path_factory.mktemp("history")
    env = callqa_env(tmp)
    events = tmp / "events.jsonl"
    done = run_callqa(["simulate", "--sites", "1", "--agents-per-site", "6", "--days", "3", "--start", "2024-03-30",
                       "--out", str(events)], env)
    assert done.returncode == 0, done.stderr
    done = run_callqa(["replay", str(events)], env)
    assert done.returncode == 0, done.stderr
    return env, events, tmp / "data" / "chdb"


DAILY = ("SELECT level, site_id, entity_id, day, hours, offered, answered, wait_answered_ms, handled, qa_auto_n, "
         "qa_human_score FROM kpi_daily FINAL ORDER BY ALL")


def test_day_and_month_rollups_add_up_the_hourly_windows(month_end):
    store = EmbeddedStore(month_end[2])
    try:
        daily = store.query(DAILY)[1]
        from_hours = store.query(
            "SELECT level, site_id, entity_id, toDate(window_start) AS day, count(), sum(offered), sum(answered), "
            "sum(wait_answered_ms), sum(handled), sum(qa_auto_n), sum(qa_human_score) FROM kpi_windows FINAL "
            "WHERE window_s = 3600 GROUP BY level, site_id, entity_id, day ORDER BY ALL")[1]
        assert daily == from_hours and {r[0] for r in daily} == {"site", "queue", "team", "agent"}
        assert {str(r[3])[:7] for r in daily} == {"2024-03", "2024-04"}
        # the site's day equals the core's own 86,400 s window, computed independently of the hours
        site_days = store.query("SELECT toString(day), offered, answered FROM kpi_daily FINAL WHERE level = 'site' "
                                "ORDER BY day")[1]
        windows = store.query("SELECT toString(toDate(window_start)), offered, answered FROM kpi_windows FINAL "
                              "WHERE level = 'site' AND window_s = 86400 ORDER BY window_start")[1]
        assert site_days == windows  # the two days after carry late evaluations only
        assert [d for d, offered, _ in site_days if offered] == ["2024-03-30", "2024-03-31", "2024-04-01"]
        monthly = store.query("SELECT level, entity_id, toString(day), offered, answered, handled FROM kpi_monthly "
                              "FINAL ORDER BY ALL")[1]
        from_days = store.query("SELECT level, entity_id, toString(toStartOfMonth(day)) AS m, sum(offered), "
                                "sum(answered), sum(handled) FROM kpi_daily FINAL GROUP BY level, entity_id, m "
                                "ORDER BY ALL")[1]
        assert monthly == from_days and {r[2] for r in monthly} == {"2024-03-01", "2024-04-01"}
        agents = store.query("SELECT agent_id, team_id FROM agents FINAL ORDER BY agent_id")[1]
        assert [a for a, _ in agents] == [f"site-1-a{i:04d}" for i in range(1, 7)] and all(t for _, t in agents)
    finally:
        store.close()


def test_a_replay_never_double_counts_history(month_end):
    env, events, path = month_end
    store = EmbeddedStore(path)
    try:
        daily, appended = store.query(DAILY)[1], store.query("SELECT count() FROM kpi_daily")[1][0][0]
        # the sink replays a batch after a crash: the same hourly rows arrive again
        store.execute("INSERT INTO kpi_windows SELECT * REPLACE (now() AS ingested_at) FROM kpi_windows FINAL "
                      "WHERE window_s = 3600")
        rollups.refresh(store)
        assert store.query("SELECT count() FROM kpi_daily")[1][0][0] > appended  # the rollup did run again
        assert store.query(DAILY)[1] == daily
    finally:
        store.close()
    # the whole file again: raw events land on the same rows, one per event id
    assert run_callqa(["replay", str(events)], env).returncode == 0
    ids = {json.loads(line)["event_id"] for line in events.read_text().splitlines()}
    store = EmbeddedStore(path)
    try:
        assert store.query("SELECT count() FROM raw_events FINAL")[1][0][0] == len(ids)
        assert store.query("SELECT count(DISTINCT event_id) FROM raw_events")[1][0][0] == len(ids)
        assert store.query(DAILY)[1] == daily
    finally:
        store.close()
