"""The pipeline health dashboard, its alert rules and the metrics they read.

- its store panels, expanded as Grafana and the plugin expand them, run on chdb against rows of known
  counts and times, and return those counts (the oracle: the rows this test inserted);
- every metric and label its PromQL (panels and rules) names is one ``callqa.metrics`` exports, as
  scraped from a real /metrics endpoint, and every exported metric is on the board;
- the worker's open-incident and review-queue gauges follow the rows the stages send, and agree with
  the store panels counting the same rows.
"""
import json
import re
import socket
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from callqa import metrics
from callqa.core.dead_letters import dead_letter, raw_event
from callqa.core.graph import Context, make_stage
from callqa.core.kpi import KpiConfig
from callqa.core.sampling import PolicyConfig
from callqa.partitions import partition_of
from dashboards import __main__ as generate
from dashboards.build import (
    LAG_FOR,
    LAG_LIMIT,
    PROMETHEUS_UID,
    STALE_AFTER_S,
    STALE_FOR,
)
from sinks import macros
from sinks import queries as q
from sinks.writer import BatchWriter
from streams.gauges import REVIEW_DAYS, WorkerGauges
from tests.conftest import ROOT

BOARD = json.loads((ROOT / "dashboards" / "json" / "callqa-pipeline.json").read_text())
RULES = yaml.safe_load(generate.ALERT_RULES.read_text())["groups"][0]["rules"]
PROM_RULES = [r for r in RULES if any(d["datasourceUid"] == PROMETHEUS_UID for d in r["data"])]
# the range end: a recent whole hour (rows older than the tables' TTL would be dropped on insert)
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = END - timedelta(hours=1)
INTERVAL_S = 300


def panel(title: str) -> dict:
    return next(p for p in BOARD["panels"] if p["title"] == title)


def run(store, title: str) -> list[dict]:
    (target,) = panel(title)["targets"]
    columns, rows = store.query(macros.expand(target["rawSql"], START, END, {}, interval_s=INTERVAL_S))
    return [dict(zip(columns, r)) for r in rows]


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def insert(store, table: str, rows: list[dict]) -> None:
    """Rows with the columns given (the others take their defaults); datetimes as UTC text."""
    columns = list(rows[0])
    values = ", ".join("(" + ", ".join(f"'{ts(v) if isinstance(v, datetime) else v}'" for v in r.values()) + ")"
                       for r in rows)
    store.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}")


REASONS = ["late event: 2024-03-04T08:00:00.000Z is more than 3600 s behind", "not valid JSON: unexpected character",
           "call.queued: data.queue_id must be string", "unknown event_type 'call.exploded'",
           "event of 2000000 bytes is over CALLQA_MAX_EVENT_BYTES (1000000)",
           "embedded ClickHouse refused the row: Cannot parse", "ClickHouse server refused: type mismatch",
           "event must be a JSON object, got list", "anonymous bank line 3: no such column",
           "some.thing with a space: is not a schema"]


def test_store_panels_count_the_rows_stored(embedded_store):
    store = embedded_store
    # dead letters: one every 7 minutes from 20 minutes before the range to after it, reasons in turn
    letters = [(START - timedelta(minutes=20) + timedelta(minutes=7 * i), REASONS[i % len(REASONS)]) for i in range(14)]
    insert(store, "dead_letters", [{"received_at": at.strftime("%Y-%m-%d %H:%M:%S.000"), "origin": "events/0",
                                    "position": str(i), "reason": reason.replace("'", "\\'"), "payload": "{}",
                                    "ingested_at": at} for i, (at, reason) in enumerate(letters)])
    # call records stored at known times: in the range, before it, and after its end
    stored = [END - timedelta(minutes=10), END - timedelta(minutes=30), END - timedelta(minutes=30),
              START - timedelta(hours=1), START - timedelta(seconds=1), END + timedelta(hours=1)]
    insert(store, "call_records", [{"call_id": f"c{i}", "site_id": "s1", "ingested_at": at} for i, at in enumerate(stored)])

    # dead letters per 5 minutes and kind of reason: as callqa.metrics.reason_kind labels them
    bucket = lambda t: t - timedelta(seconds=int(t.timestamp()) % INTERVAL_S, microseconds=t.microsecond)
    expected = Counter((ts(bucket(at)), metrics.reason_kind(reason)) for at, reason in letters if START <= at <= END)
    rows = run(store, "Dead letters by reason (store)")
    assert list(rows[0]) == ["time", "reason_kind", "dead_letters"]
    assert {(r["time"], r["reason_kind"]): r["dead_letters"] for r in rows} == expected
    assert len({kind for _, kind in expected}) >= 6
    # the store's classification is the metric's, reason by reason
    _, rows = store.query(f"SELECT reason, {q.DEAD_LETTER_KIND} FROM dead_letters")
    assert {reason: kind for reason, kind in rows} == {r: metrics.reason_kind(r) for r in REASONS}
    assert len(set(map(metrics.reason_kind, REASONS))) == 8  # every kind

    # rows stored per table and 5 minutes
    rows = run(store, "Rows stored per table (store)")
    assert list(rows[0]) == ["time", "table", "rows"]
    per_table = Counter()
    for r in rows:
        per_table[r["table"]] += r["rows"]
    assert per_table == {"call_records": sum(START <= at <= END for at in stored),
                         "dead_letters": sum(START <= at <= END for at, _ in letters)}

    # rows in the range, the last stored by the range's end, and how long before it
    rows = {r["table"]: r for r in run(store, "Tables: rows stored in the range, and freshness (store)")}
    assert set(rows) >= {"raw_events", "call_records", "kpi_windows", "evaluations", "alerts", "sampling_rates",
                         "sampling_decisions", "review_queue", "dead_letters"}
    calls = rows.pop("call_records")
    assert calls["rows_in_range"] == 3 and calls["last_stored"] == ts(END - timedelta(minutes=10))
    assert calls["seconds_since_last"] == 600
    last_letter = max(at for at, _ in letters if at <= END)
    assert rows.pop("dead_letters") == {"table": "dead_letters", "rows_in_range": sum(START <= at <= END for at, _ in letters),
                                        "last_stored": ts(last_letter), "seconds_since_last": (END - last_letter).seconds}
    assert all(r["rows_in_range"] == 0 and r["last_stored"] is None and r["seconds_since_last"] is None
               for r in rows.values())


def review_rows(end: datetime) -> tuple[list[dict], list[dict], int]:
    """Review-queue and evaluation rows around the range's end; the calls in the backlog."""
    day = lambda n: (end - timedelta(days=n)).date().isoformat()
    queue = [("c1", day(0), "queued", 1), ("c2", day(1), "queued", 1), ("c2", day(1), "dropped", 2),
             ("c3", day(2), "queued", 1), ("c4", day(3), "queued", 1), ("c5", day(REVIEW_DAYS), "queued", 1),
             ("c6", day(REVIEW_DAYS - 1), "queued", 1)]
    queue = [{"call_id": c, "site_id": "s1", "day": d, "at": f"{d} 09:00:00.000", "status": s, "version": v}
             for c, d, s, v in queue]
    evaluations = [{"evaluation_id": "e3", "kind": "human", "call_id": "c3", "site_id": "s1"},
                   {"evaluation_id": "e4", "kind": "auto", "call_id": "c4", "site_id": "s1"}]
    return queue, evaluations, 3  # c1, c4 (only scored automatically), c6; c5 is older than the week


def incident(alert_id: str, status: str, at: datetime, level: str, kind: str = "incident") -> dict:
    return {"alert_id": alert_id, "kind": kind, "status": status, "at": at.strftime("%Y-%m-%d %H:%M:%S.000"),
            "level": level, "site_id": "s1", "entity_id": "e", "metric": "qa_human"}


def incident_rows(end: datetime) -> list[dict]:
    h = lambda n: end - timedelta(hours=n)
    return [incident("i1", "open", h(3), "team"), incident("i1", "widened", h(2), "site"),  # open, now on its site
            incident("i2", "open", h(3), "agent"), incident("i2", "updated", h(2), "agent"),
            incident("i2", "closed", h(1), "agent"),
            incident("i3", "open", h(4), "site"), incident("i3", "merged", h(0.5), "site"),
            incident("i4", "open", h(0.3), "agent"), incident("i4", "open", h(0.3), "agent"),  # sent again
            incident("d1", "open", h(1), "agent", kind="drift")]  # a series alarm, not an incident


def test_store_and_worker_count_the_same_review_backlog_and_open_incidents(embedded_store):
    queue, evaluations, backlog = review_rows(END)
    later = {"call_id": "c7", "site_id": "s1", "day": (END + timedelta(days=1)).date().isoformat(),
             "at": ts(END + timedelta(days=1)), "status": "queued", "version": 1}  # after the range: not counted
    insert(embedded_store, "review_queue", queue + [later])
    insert(embedded_store, "evaluations", evaluations)
    alerts = incident_rows(END)
    insert(embedded_store, "alerts", alerts + [incident("i5", "open", END + timedelta(hours=1), "team")])

    assert run(embedded_store, "Review backlog (store)") == [{"review_backlog": backlog}]
    by_level = {r["level"]: r["open_incidents"] for r in run(embedded_store, "Open incidents by level (store)")}
    assert by_level == {"site": 1, "agent": 1}  # i1 (widened to its site), i4

    gauges = WorkerGauges()  # the same rows as the stages send them
    gauges.observe("sampler/2", {"review_queue": queue})
    gauges.observe("events/2", {"evaluations": evaluations})
    gauges.observe("monitor/1", {"alerts": alerts})
    assert gauges.review_queue() == backlog
    assert gauges.open_incidents() == {"agent": 1, "team": 0, "site": 1}


def test_worker_gauges_follow_incidents_and_the_review_queue():
    value = lambda name, **labels: REGISTRY.get_sample_value(name, labels)
    gauges = WorkerGauges()
    assert not gauges.observe("events/0", {"call_records": [{"call_id": "x"}]})  # nothing it counts
    t = datetime(2024, 3, 6, 12, tzinfo=UTC)
    gauges.observe("monitor/0", {"alerts": [incident("i1", "open", t, "team")]})
    gauges.observe("monitor/1", {"alerts": [incident("i2", "open", t, "agent"), incident("i3", "open", t, "agent")]})
    metrics.publish_worker(gauges)
    assert [value("callqa_open_incidents", level=lv) for lv in ("agent", "team", "site")] == [2, 1, 0]
    gauges.observe("monitor/0", {"alerts": [incident("i1", "widened", t, "site"), incident("i1", "updated", t, "site")]})
    gauges.observe("monitor/1", {"alerts": [incident("i2", "closed", t, "agent"), incident("i3", "merged", t, "agent")]})
    gauges.observe("monitor/1", {"alerts": [incident("i2", "closed", t, "agent")]})  # sent again after a restart
    metrics.publish_worker(gauges)
    assert [value("callqa_open_incidents", level=lv) for lv in ("agent", "team", "site")] == [0, 0, 1]

    review = lambda call, day, status: {"call_id": call, "day": day, "status": status}
    gauges.observe("sampler/0", {"review_queue": [review("c1", "2024-03-06", "queued"), review("c2", "2024-03-06", "queued"),
                                                  review("c3", "2024-03-06", "queued")]})
    gauges.observe("sampler/1", {"review_queue": [review("c4", "2024-03-06", "queued")]})
    metrics.publish_worker(gauges)
    assert value("callqa_review_queue") == 4
    gauges.observe("sampler/0", {"review_queue": [review("c5", "2024-03-06", "queued"), review("c2", "2024-03-06", "dropped")]})
    gauges.observe("events/0", {"evaluations": [{"kind": "human", "call_id": "c1"}, {"kind": "auto", "call_id": "c3"}]})
    gauges.observe("events/1", {"evaluations": [{"kind": "calibration", "call_id": "c4"}]})
    assert gauges.review_queue() == 2  # c3 (scored automatically only), c5
    # a week of queue days later the unreviewed calls are let go
    gauges.observe("sampler/0", {"review_queue": [review("c6", "2024-03-13", "queued")]})
    assert gauges.queue == {0: {"c6": "2024-03-13"}, 1: {}}

    # a rebalance: only what this worker still has counts
    gauges.keep(incidents=[1], queue=[1])
    metrics.publish_worker(gauges)
    assert value("callqa_review_queue") == 0 and value("callqa_open_incidents", level="site") == 0


def test_a_monitor_partition_built_from_its_state_counts_the_incidents_it_holds_open():
    """After a restart or a rebalance the incidents are in the stage's saved state, not in new rows."""
    ctx = Context(KpiConfig(), PolicyConfig(), b"k", 4, partition_of, {})
    held = {"team|s1|t1|1": {"id": "team|s1|t1|1", "level": "team"}, "site|s1|s1|2": {"id": "site|s1|s1|2", "level": "site"}}
    state = {"meta": {"state": {"charts": {"incidents": {"open": held, "of_series": {}}}, "order": {}, "seq": 0}}}
    gauges = WorkerGauges()
    gauges.observe("monitor/3", {"alerts": [incident("gone", "open", datetime(2024, 3, 6, tzinfo=UTC), "agent")]})
    gauges.seed("monitor", 3, make_stage("monitor", ctx, 3, state))
    gauges.seed("sampler", 3, make_stage("sampler", ctx, 3, {}))  # nothing to take from a sampler's state
    assert gauges.incidents == {3: {"team|s1|t1|1": "team", "site|s1|s1|2": "site"}}
    assert gauges.open_incidents() == {"agent": 0, "team": 1, "site": 1}


# PromQL: the metric names and the labels it groups, joins or labels by ------------------------------
NAME = re.compile(r"\bcallqa_\w+")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
PROMETHEUS_LABELS = {"instance", "job", "le"}  # added by the scrape, and the histogram's bucket bound


def prometheus_queries() -> list[tuple[str, str, str]]:
    """(where, expression, label templates) of every PromQL query of the board and the rules."""
    out = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in BOARD["panels"] for t in p["targets"] if "expr" in t]
    out += [(r["uid"], d["model"]["expr"], r["annotations"]["summary"])
            for r in PROM_RULES for d in r["data"] if d["datasourceUid"] == PROMETHEUS_UID]
    return out


@pytest.fixture
def scraped(embedded_store) -> dict[str, set[str]]:
    """Sample names and their label names, scraped over HTTP from callqa.metrics after the writer stored
    events and dead letters and the worker's gauges moved (the Kafka-facing ones set as the worker and
    the sink set them)."""
    writer = BatchWriter(embedded_store, max_rows=1000, max_seconds=60)
    event = {"event_id": "m1", "event_type": "call.offered", "site_id": "S", "source": "t",
             "event_time": "2024-03-04T09:00:00.000Z", "call_id": "c1"}
    writer.submit("raw_events", raw_event(event, "{}"))
    writer.submit("dead_letters", dead_letter("not valid JSON: x", "{", "t", "1"))
    writer.flush()
    gauges = WorkerGauges()
    gauges.observe("monitor/0", {"alerts": [incident("i1", "open", datetime(2024, 3, 6, tzinfo=UTC), "team")]})
    metrics.publish_worker(gauges)
    metrics.LAG.labels("callqa.events", "0").set(0)  # as KafkaSink.lag
    metrics.STAGE_LAG.labels("events", "0").set(0)  # as the worker's watch_inputs
    metrics.STAGE_MESSAGES.labels("events").inc(0)  # as a stage agent
    metrics.REFUSED.labels("raw_events").inc(0)  # as the writer, when the store refuses a row
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics.serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("callqa_"):
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_every_prometheus_query_names_metrics_and_labels_callqa_exports(scraped):
    queries = prometheus_queries()
    assert len(queries) >= 14 and len(PROM_RULES) == 5
    failures, used = [], set()
    for where, query, labels in queries:
        if where == "callqa-target-down":  # reads Prometheus's own `up` series of each scrape target
            assert query == 'up{job="callqa-worker"}'.join(["1 - ", ""]) and "instance" in labels
            continue
        names = set(NAME.findall(query))
        used |= names
        if not names:
            failures.append(f"{where}: no callqa metric in {query}")
        missing = names - set(scraped)
        if missing:
            failures.append(f"{where}: {sorted(missing)} not exported (exported: {sorted(scraped)})")
        known = set().union(*(scraped.get(n, set()) for n in names)) | PROMETHEUS_LABELS
        grouped = {label.strip() for group in GROUPING.findall(query) for label in group.split(",") if label.strip()}
        templated = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", labels)) | set(re.findall(r"\$labels\.(\w+)", labels))
        if grouped - known or templated - known - grouped:
            failures.append(f"{where}: labels {sorted((grouped | templated) - known)} are not on {sorted(names)}")
    assert not failures, "\n".join(failures)
    # and the board shows every metric callqa exports (a new one gets a panel)
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in scraped}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families - shown == set()


def operating_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Operating callqa")
    return readme[start:readme.index("\n## ", start)]


def test_the_pipeline_rules_alert_on_lag_and_freshness_at_their_documented_thresholds():
    rules = {r["uid"]: r for r in PROM_RULES}
    assert set(rules) == {"callqa-sink-lag", "callqa-stage-lag", "callqa-sink-stale", "callqa-worker-stalled",
                          "callqa-target-down"}
    limit = lambda r: next(d for d in r["data"] if d["refId"] == "C")["model"]["conditions"][0]["evaluator"]
    query = lambda r: next(d for d in r["data"] if d["refId"] == "A")["model"]
    for uid, (metric, threshold, hold) in {"callqa-sink-lag": ("callqa_consumer_lag", LAG_LIMIT, LAG_FOR),
                                           "callqa-stage-lag": ("callqa_stage_lag", LAG_LIMIT, LAG_FOR),
                                           "callqa-sink-stale": ("callqa_last_write_timestamp_seconds", STALE_AFTER_S,
                                                                 STALE_FOR),
                                           "callqa-worker-stalled": ("callqa_stage_messages_total", 0, "2m"),
                                           "callqa-target-down": ('up{job="callqa-worker"}', 0, "1m")}.items():
        rule = rules[uid]
        assert limit(rule) == {"type": "gt", "params": [threshold]} and rule["for"] == hold, uid
        assert metric in query(rule)["expr"] and query(rule)["instant"] is True, uid
        assert rule["condition"] == "C" and rule["annotations"]["__dashboardUid__"] == BOARD["uid"], uid
    # stale: no write for the limit while the same sink process has input waiting
    assert "callqa_consumer_lag" in query(rules["callqa-sink-stale"])["expr"]
    operating = operating_section()
    for number in (f"{LAG_LIMIT:,}", f"{STALE_AFTER_S} s", LAG_FOR.replace("m", " min")):
        assert number in operating, number


def test_the_board_fits_grafanas_grid_and_marks_its_store_panels():
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in BOARD["panels"])
    for p in BOARD["panels"]:  # the store's panels say so (they show without Prometheus)
        assert p["title"].endswith("(store)") == (p["datasource"]["uid"] != PROMETHEUS_UID), p["title"]


def test_the_readme_lists_every_metric(scraped):
    operating = operating_section()
    families = {re.sub(r"_(created|bucket|sum|count)$", "", n) for n in scraped}
    assert {f for f in families if f not in operating} == set()


@pytest.mark.services
def test_a_running_worker_serves_every_metric_the_board_reads(kafka, tmp_path):
    """`callqa run` (the faust worker and its in-process sink) on real Kafka, scraped over HTTP once it has
    caught up with a day of events: the stages' counts and lag, the sink's, and every metric the
    pipeline board and rules name."""
    from tests.conftest import callqa_env
    from tests.test_worker_kafka import Worker, produce, settled

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CALLQA_METRICS_PORT=str(port))
    worker = Worker(env, tmp_path / "worker.log")
    try:
        lines = produce(kafka, env["CALLQA_TOPIC_EVENTS"])
        settled(kafka, env, timeout=300)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        worker.stop()
    samples = [s for f in text_string_to_metric_families(body) for s in f.samples if s.name.startswith("callqa_")]
    value = lambda name, **labels: sum(s.value for s in samples if s.name == name
                                       and all(s.labels.get(k) == v for k, v in labels.items()))
    assert value("callqa_stage_messages_total", stage="events") >= lines
    assert {s.labels["stage"] for s in samples if s.name == "callqa_stage_messages_total"} >= {"events", "windows"}
    assert {s.labels["stage"] for s in samples if s.name == "callqa_stage_lag"} >= {"events", "monitor", "sampler"}
    assert value("callqa_stage_lag") == 0 and value("callqa_consumer_lag") == 0  # caught up
    assert value("callqa_events_total") >= 62 and value("callqa_dead_letters_total", reason="not valid JSON") >= 1
    assert value("callqa_store_up") == 1 and value("callqa_last_write_timestamp_seconds") > 1.7e9
    assert {s.labels["level"] for s in samples if s.name == "callqa_open_incidents"} == {"agent", "team", "site"}
    assert any(s.name == "callqa_review_queue" for s in samples)
    names = {s.name for s in samples}
    for where, query, _ in prometheus_queries():
        assert set(NAME.findall(query)) <= names | {"callqa_rows_refused_total"}, where  # nothing refused here
