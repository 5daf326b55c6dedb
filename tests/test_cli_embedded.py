"""`callqa replay` / `query` on the embedded default (chdb), run as a user runs them."""
import json

from sinks import queries, rollups
from sinks.store import EmbeddedStore
from tests.conftest import FIXTURES, callqa_env, run_callqa
from tests.events import expected_site_windows

DAY = FIXTURES / "day.jsonl"


def store_snapshot(data_dir):
    """Everything the pipeline stored, without the store's own bookkeeping (versions, ingestion times)."""
    store = EmbeddedStore(data_dir / "chdb")
    mine = "EXCEPT (version, ingested_at)"
    try:
        rollups.refresh(store)
        return {
            "kpi": store.query(f"SELECT * {mine} FROM kpi_windows FINAL ORDER BY level, site_id, entity_id, "
                               "window_s, window_start")[1],
            "site": store.query("SELECT site_id, toString(window_start), offered, answered, abandoned, wait_answered_ms "
                                "FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 900")[1],
            "daily": store.query("SELECT * EXCEPT (refreshed_at, ingested_at) FROM kpi_daily FINAL ORDER BY ALL")[1],
            "calls": store.query("SELECT * EXCEPT ingested_at FROM call_records FINAL ORDER BY ALL")[1],
            "raw": store.query("SELECT * EXCEPT ingested_at FROM raw_events FINAL ORDER BY event_id")[1],
            "dead": store.query("SELECT origin, position, reason, payload FROM dead_letters FINAL ORDER BY ALL")[1],
            "evaluations": store.query(f"SELECT * {mine} FROM evaluations FINAL ORDER BY evaluation_id")[1],
            "alerts": store.query("SELECT * EXCEPT ingested_at FROM alerts FINAL ORDER BY ALL")[1],
            "sampling": store.query(f"SELECT * {mine} FROM sampling_decisions FINAL ORDER BY call_id")[1],
            "reviews": store.query(f"SELECT * {mine} FROM review_queue FINAL ORDER BY call_id")[1],
            "rates": store.query("SELECT * EXCEPT (change_id, ingested_at) FROM sampling_rates FINAL "
                                 "ORDER BY agent_id, at, new_rate")[1],
            "detector": store.query(f"SELECT * {mine} FROM detector_state FINAL ORDER BY site_id, series, time")[1],
        }
    finally:
        store.close()


def test_replay_prints_results_and_stores_exact_kpis(tmp_path):
    env = callqa_env(tmp_path)
    done = run_callqa(["replay", str(DAY)], env)
    assert done.returncode == 0, done.stderr
    assert "2 dead letters" in done.stdout and "KPIs per site" in done.stdout
    snap = store_snapshot(tmp_path / "data")
    site_rows = {(r[0], r[1]): r[2:] for r in snap["site"]}
    expected = expected_site_windows(DAY, 900)
    assert set(site_rows) == set(expected)
    for key, want in expected.items():
        assert site_rows[key] == (want["offered"], want["answered"], want["abandoned"], want["wait_answered_ms"])
    assert len(snap["calls"]) == 13
    # the poison lines are kept with their reason and their exact raw payload
    raw = DAY.read_text().splitlines()
    dead = {int(r[1]): r for r in snap["dead"]}
    assert set(dead) == {6, 10}
    assert dead[6][3] == raw[5] and "not valid JSON" in dead[6][2]
    assert dead[10][3] == raw[9] and "stage" in dead[10][2]


def test_replaying_twice_changes_nothing(tmp_path):
    env = callqa_env(tmp_path)
    assert run_callqa(["replay", str(DAY)], env).returncode == 0
    first = store_snapshot(tmp_path / "data")
    assert run_callqa(["replay", str(DAY)], env).returncode == 0
    assert store_snapshot(tmp_path / "data") == first


def test_query_prints_a_table(tmp_path):
    env = callqa_env(tmp_path)
    run_callqa(["replay", str(DAY)], env)
    done = run_callqa(["query", queries.CALL_OUTCOMES], env)
    assert done.returncode == 0
    assert "answered" in done.stdout and "abandoned" in done.stdout


def test_query_is_read_only_and_takes_a_format_clause(tmp_path):
    env = callqa_env(tmp_path)
    run_callqa(["replay", str(DAY)], env)
    before = run_callqa(["query", "SELECT count() FROM alerts"], env).stdout
    victim = tmp_path / "victim.txt"
    for statement in ("DROP TABLE alerts", "TRUNCATE TABLE alerts", "INSERT INTO alerts SELECT * FROM alerts",
                      "ALTER TABLE alerts DELETE WHERE 1", "SELECT 1 SETTINGS readonly = 0", "KILL QUERY WHERE 1",
                      "/* a read */ DROP TABLE alerts", "WITH 1 AS x INSERT INTO alerts SELECT * FROM alerts",
                      "SELECT * FROM file('/etc/hostname', 'LineAsString')", "SELECT 1; DROP TABLE alerts",
                      "DESCRIBE TABLE file('/etc/passwd', 'TSVWithNames')", "DESC url('http://127.0.0.1:9/x.csv', 'CSV')",
                      "SELECT * FROM remoteSecure('h:9440', system.one)", "EXPLAIN SELECT * FROM s3('http://h/b/k')",
                      f"SELECT 'x' INTO OUTFILE '{victim}' FORMAT TSVRaw", "SELECT 1; SELECT 2", ""):
        done = run_callqa(["query", statement], env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, statement
        assert any(word in done.stderr for word in ("readonly", "reads only", "one statement", "OUTFILE", "empty",
                                                    "outside the store")), statement
        assert "root:" not in done.stdout + done.stderr, statement
    assert not victim.exists()
    assert run_callqa(["query", "SELECT count() FROM alerts"], env).stdout == before
    done = run_callqa(["query", "SELECT outcome, count() AS n FROM call_records FINAL GROUP BY outcome "
                                "ORDER BY outcome FORMAT JSONEachRow"], env)
    assert done.returncode == 0 and all(json.loads(line)["n"] > 0 for line in done.stdout.splitlines())
    # a ';', '--' or '/*' inside a string is text, not syntax
    done = run_callqa(["query", "--json", "SELECT 'a; b' AS s, 'c--d' AS t, '/* e */' AS u; -- the end"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"s": "a; b", "t": "c--d", "u": "/* e */"}]


def test_user_errors_say_what_to_do_without_traceback_and_exit_codes_mean_something(tmp_path):
    missing = str(tmp_path / "missing.jsonl")
    cases = [  # (arguments, settings, what the message says, exit code: 2 input/option/setting, 3 unreachable)
        (["query", "SELECT nope"], {}, "UNKNOWN_IDENTIFIER", 2),
        (["replay", missing], {}, "no such file", 2),
        (["ingest", "--format", "nope", str(DAY)], {}, "unknown format 'nope'; choose one of: asterisk-queue-log", 2),
        (["replay", str(DAY)], {"CALLQA_SINK_BATCH_ROWS": "lots"}, "CALLQA_SINK_BATCH_ROWS='lots' is not a whole number", 2),
        (["replay", str(DAY)], {"CALLQA_KPI_WINDOWS": "900"}, "must include 3600", 2),
        (["report", "--from", "March"], {}, "--from 'March' is not a date", 2),
        (["report"], {}, "no KPI history yet: replay, ingest or simulate", 2),
        (["run"], {}, "KAFKA_BOOTSTRAP_SERVERS is not set", 2),
        (["replay", str(DAY)], {"CLICKHOUSE_URL": "clickhouse://default@127.0.0.1:1/default"},
         "ClickHouse server 127.0.0.1:1 unreachable", 3),
        (["replay", str(DAY)], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "Check KAFKA_BOOTSTRAP_SERVERS", 3),
        (["check"], {"CLICKHOUSE_URL": "clickhouse://default:secret@127.0.0.1:1/default"}, "unreachable", 3),
        (["check"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CALLQA_CALLER_HASH_KEY": ""},
         "CALLQA_CALLER_HASH_KEY must be set when Kafka or a ClickHouse server is configured", 2),
        (["evaluations", "--month", "2024-13"], {}, "use YYYY-MM (a month 01 to 12", 2),
        (["report", "--from", "0001-01-01", "--to", "9999-12-31"], {}, "a date from 2000 to 2099", 2),
        (["replay", str(DAY)], {"CALLQA_BATCH_SECONDS": "nan"}, "must be a positive finite number", 2),
        (["replay", str(DAY)], {"CALLQA_MAX_EVENT_BYTES": "10"}, "CALLQA_MAX_EVENT_BYTES='10' must be at least 1024", 2),
    ]
    for args, extra, message, code in cases:
        done = run_callqa(args, callqa_env(tmp_path, **extra))
        assert done.returncode == code, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr and "secret" not in done.stderr, done.stderr


def quiet_blocks(stdout: str) -> list[list[str]]:
    """``--quiet`` output: the result lines, then each table (tab-separated lines, a blank line between two)."""
    first, *tables = [block.splitlines() for block in stdout.strip("\n").split("\n\n")]
    header = next((i for i, line in enumerate(first) if "\t" in line), len(first))
    return [first[:header], *([first[header:]] if header < len(first) else []), *tables]


def test_quiet_and_json_output(tmp_path):
    env = callqa_env(tmp_path)
    quiet = run_callqa(["--quiet", "replay", str(DAY)], env)
    assert quiet.returncode == 0 and quiet.stderr == ""  # no progress bar
    # the results without decoration: the summary, then the tables as tab-separated lines, no titles or borders
    summary, sites, outcomes = quiet_blocks(quiet.stdout)
    assert summary[0].startswith("63 events (") and len(summary) == 1
    assert sites[0].split("\t") == ["site_id", "calls_offered", "calls_answered", "calls_abandoned", "asa_s",
                                    "abandon_rate"] and {r.split("\t")[0] for r in sites[1:]} == {"A", "B"}
    assert outcomes[0].split("\t") == ["site_id", "outcome", "calls"] and len(outcomes) == 5
    assert "KPIs per site" not in quiet.stdout and not set("┃━│┏└") & set(quiet.stdout)
    again = json.loads(run_callqa(["replay", "--json", str(DAY)], env).stdout)
    assert again["events"] == 63 and again["duplicates"] == 62  # a replay: every event already applied
    assert {s["site_id"] for s in again["sites"]} == {"A", "B"}


def test_fixture_is_canonical_json_lines():
    lines = DAY.read_text().splitlines()
    assert sum(1 for line in lines if line.startswith("{") and line.endswith("}")) == len(lines) - 1
    assert json.loads(lines[0])["schema_version"] == 1


def test_live_last_30_minutes_sums_the_latest_six_5_minute_buckets(tmp_path):
    from sinks.queries import LIVE_LAST_30_MINUTES

    env = callqa_env(tmp_path)
    assert run_callqa(["replay", str(DAY)], env).returncode == 0
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        columns, rows = store.query(LIVE_LAST_30_MINUTES)
    finally:
        store.close()
    buckets = expected_site_windows(DAY, 300)
    latest = max(start for _, start in buckets)
    from datetime import datetime, timedelta

    since = (datetime.fromisoformat(latest) - timedelta(minutes=25)).isoformat(sep=" ")
    want = {}
    for (site, start), w in buckets.items():
        if start >= since:
            want[site] = want.get(site, 0) + w["offered"]
    got = {r[1]: r[3] for r in rows if r[0] == "site"}
    assert got == want and set(got) == {"A", "B"}
