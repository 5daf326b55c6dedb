"""`callqa demo` and `callqa report`: the summary, and the HTML report loaded in headless Chromium
(Debian's, started here): no script errors, the charts render, the figures equal the store's; "Today"
lists the injected incidents first, each charted with the detector's stored state; review rows link to
their recordings (CALLQA_RECORDING_URL) and agents; ratios of too few calls are left out."""
import json
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from sinks.store import EmbeddedStore
from tests.conftest import callqa_env, run_callqa

END = "2024-03-09 00:00:00"  # the end of the demo's five days (from Monday 2024-03-04)
TODAY = "2024-03-08"  # the report's "Today": the period's last day
CHARTS = {"sl", "asa", "qa-site-1", "qa-site-2", "qa_sites", "rates", "coverage", "evaluations", "calibration"}
RECORDING_URL = "https://recordings.example/play?uri={storage_uri}&call={call_id}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    env = callqa_env(tmp, CALLQA_RECORDING_URL=RECORDING_URL)
    done = run_callqa(["demo", "--sites", "2", "--agents-per-site", "15", "--days", "5", "--json",
                       "--report", str(tmp / "report.html")], env, timeout=300)
    assert done.returncode == 0, done.stderr
    return env, json.loads(done.stdout), tmp / "report.html", tmp / "data" / "demo"


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Debian's chromium is needed (scripts/test.sh installs it)"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=20000", *args], capture_output=True, text=True, timeout=timeout)


class Tables(HTMLParser):
    """The report's tables: id -> rows of {column: (raw value, shown text)}; ``links``: id -> rows of
    {column: href}; ``ids``: every element id on the page."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.links: dict[str, list[dict]] = {}
        self.ids: set[str] = set()
        self._table = self._cell = self._name = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table":
            self._name = a["id"].removeprefix("table-")
            self._table = self.tables.setdefault(self._name, [])
            self.links.setdefault(self._name, [])
        elif tag == "tr" and self._table is not None:
            self._table.append({})
            self.links[self._name].append({})
        elif tag == "td" and self._table is not None:
            self._cell = [a["data-column"], a["data-value"], ""]
        elif tag == "a" and self._cell is not None:
            self.links[self._name][-1][self._cell[0]] = a["href"]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            column, value, text = self._cell
            self._table[-1][column] = (value, text)
            self._cell = None
        elif tag == "table":
            self._table = None


def rendered_tables(dom: str) -> dict[str, list[dict]]:
    parser = Tables()
    parser.feed(dom)
    return {name: [r for r in rows if r] for name, rows in parser.tables.items()}


def rendered_links(dom: str) -> tuple[dict[str, list[dict]], set[str]]:
    """Per table, each data row's links by column; and every element id of the page."""
    parser = Tables()
    parser.feed(dom)
    return ({name: [links for links, row in zip(parser.links[name], rows) if row] for name, rows in parser.tables.items()},
            parser.ids)


def plotted(dom: str) -> dict[str, list[dict]]:
    """Each chart's traces as the page hands them to Plotly.newPlot (chart name -> traces)."""
    decoder, found = json.JSONDecoder(), {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"chart-([^"]+)",\s*', dom):
        found[match.group(1)], _ = decoder.raw_decode(dom, match.end())
    return found


def drawn_charts(dom: str) -> dict[str, bool]:
    """Each chart's div: whether it drew its SVG and at least one trace."""
    drawn = {}
    for chunk in dom.split('id="chart-')[1:]:  # each chart's div, up to the next one
        name = chunk.split('"', 1)[0]
        drawn[name] = chunk.count('class="main-svg"') >= 2 and re.search(r'class="trace (scatter|bars)', chunk) is not None
    return drawn


@pytest.fixture(scope="module")
def dom(demo) -> str:
    """The report as headless Chromium leaves it once its scripts ran."""
    done = chromium("--dump-dom", demo[2].as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def store(demo):
    store = EmbeddedStore(demo[3] / "chdb")
    yield store
    store.close()


def test_demo_finds_the_injected_drifts_and_says_what_it_did(demo):
    _, summary, report, store_dir = demo
    found = {d["kind"]: d for d in summary["drifts"]}
    assert found["qa"]["detected_at"] and 0 < found["qa"]["delay_hours"] < 48
    assert found["aht"]["detected_at"] and found["aht"]["detected_by"].endswith("handle_s")
    assert found["apology"]["detected_at"] and found["apology"]["detected_by"].endswith("item:waiting.apology_after_hold")
    assert all(d["incidents"] >= 1 and d["notices_per_incident"] <= 3 for d in summary["drifts"])
    assert [s["site_id"] for s in summary["sites"]] == ["site-1", "site-2"]
    assert summary["review_queue"] > 0 and summary["alerts_opened"]["drift"] > 0 and summary["alerts_opened"]["incident"] > 0
    assert summary["rate_changes"] and all(r["cause"] != "initial" and r["factors_changed"] for r in summary["rate_changes"])
    assert report.exists() and (store_dir / "chdb").exists()


def script_errors(dom: str) -> str | None:
    """What the page's error hook recorded on <html data-errors=...>, if anything."""
    found = re.search(r'<html[^>]*\sdata-errors="([^"]*)"', dom)
    return found.group(1) if found else None


def test_a_failing_script_would_be_seen(demo, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(demo[2].read_text().replace("</body>", "<script>noSuchFunction()</script></body>"))
    assert "noSuchFunction" in script_errors(chromium("--dump-dom", broken.as_uri()).stdout)


def test_the_report_loads_and_its_charts_render_in_chromium(demo, tmp_path):
    report = demo[2]
    dom = chromium("--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert script_errors(dom.stdout) is None, "a script failed on the page"
    incidents = {f"incident-{i + 1}" for i in range(len(rendered_tables(dom.stdout)["today-incidents"]))}
    assert incidents  # the demo's drifts are open on its last day
    # every chart drew its SVG and at least one trace
    assert drawn_charts(dom.stdout) == {name: True for name in CHARTS | incidents}
    shot = tmp_path / "report.png"
    done = chromium("--window-size=1280,3000", f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # the PNG header
    assert (width, height) == (1280, 3000) and shot.stat().st_size > 100_000  # a page with charts, not a blank one


def test_the_figures_shown_equal_the_store(demo):
    report, store_dir = demo[2], demo[3]
    tables = rendered_tables(chromium("--dump-dom", report.as_uri()).stdout)
    value = lambda row, column: row[column][0]
    store = EmbeddedStore(store_dir / "chdb")
    try:
        # the sites, from the daily rollup in the report; here from the core's own day windows
        days = store.query("SELECT site_id, sum(offered), round(sum(sl_numerator) / sum(sl_denominator), 3), "
                           "round(sum(abandoned) / sum(offered), 3) FROM kpi_windows FINAL WHERE level = 'site' "
                           "AND window_s = 86400 GROUP BY site_id ORDER BY site_id")[1]
        shown = [(value(r, "site_id"), int(value(r, "calls_offered")), float(value(r, "service_level")),
                  float(value(r, "abandon_rate"))) for r in tables["sites"]]
        assert shown == days
        for row in tables["sites"]:
            raw, text = row["service_level"]
            assert text == f"{100 * float(raw):.1f}%"
        (recorded,), = store.query("SELECT count() FROM sampling_decisions FINAL")[1]
        assert sum(int(value(r, "recorded")) for r in tables["coverage"]) == recorded
        (queued,), = store.query("SELECT count() FROM review_queue FINAL WHERE status = 'queued'")[1]
        assert sum(int(value(r, "queued")) for r in tables["queue"]) == queued == demo[1]["review_queue"]
        calibrated = dict(store.query("SELECT evaluator_id, count() FROM evaluations FINAL WHERE kind = 'calibration' "
                                      f"AND evaluated_at <= '{END}' GROUP BY evaluator_id")[1])
        assert {value(r, "evaluator_id"): int(value(r, "calls")) for r in tables["calibration"]} == calibrated
        opened = dict(store.query("SELECT kind, countDistinct(alert_id) FROM alerts FINAL WHERE status = 'open' "
                                  f"AND at <= '{END}' GROUP BY kind")[1])
        shown_alerts: dict[str, int] = {}
        for r in tables["alerts"]:
            shown_alerts[value(r, "kind")] = shown_alerts.get(value(r, "kind"), 0) + int(value(r, "opened"))
        assert shown_alerts == opened
    finally:
        store.close()


def test_report_from_a_store_for_a_period(demo, tmp_path):
    env, summary, _, store_dir = demo
    env = dict(env, CALLQA_DATA_DIR=str(store_dir))
    out = tmp_path / "week.html"
    done = run_callqa(["report", "--out", str(out)], env)  # default: the last seven days with data
    calls = sum(s["calls_offered"] for s in summary["sites"])
    assert done.returncode == 0 and f"2024-03-02 to 2024-03-08, 2 sites, {calls} calls" in done.stdout
    assert out.stat().st_size > 1_000_000
    empty = run_callqa(["report", "--from", "2030-01-01", "--to", "2030-01-07"], env)
    assert empty.returncode == 2 and "no calls between 2030-01-01" in empty.stderr
    fresh = run_callqa(["report"], callqa_env(tmp_path))
    assert fresh.returncode == 2 and "no KPI history" in fresh.stderr and "Traceback" not in fresh.stderr


def _incidents_of_the_day(store) -> dict[str, dict]:
    """Oracle: the incidents open at the end of TODAY or closed during it, from the alerts table's rows."""
    found: dict[str, list] = {}
    for alert_id, at, status, level, entity, metric in store.query(
            "SELECT alert_id, toString(at), status, level, entity_id, metric FROM alerts FINAL "
            f"WHERE kind = 'incident' AND at < '{END}' ORDER BY alert_id, at")[1]:
        found.setdefault(alert_id, []).append((at, status, level, entity, metric))
    day = {}
    for alert_id, history in found.items():
        at, status, level, entity, metric = history[-1]
        if status not in ("closed", "merged") or (status == "closed" and at >= TODAY):
            day[alert_id] = {"status": status, "level": level, "entity": entity, "metrics": metric.split(","),
                             "opened": history[0][0][:16]}
    return day


def test_today_lists_the_injected_incidents_first_each_with_its_chart(demo, dom, store):
    summary = demo[1]
    assert f'data-day="{TODAY}"' in dom and dom.index('id="today"') < dom.index('id="table-sites"')  # Today first
    rows = rendered_tables(dom)["today-incidents"]
    value = lambda row, column: row[column][0]
    expected = _incidents_of_the_day(store)
    assert {value(r, "alert_id") for r in rows} == set(expected) and len(rows) == len(expected)
    for r in rows:
        want = expected[value(r, "alert_id")]
        assert r["status_word"][1] == ("cleared" if want["status"] == "closed" else "open")
        assert value(r, "level") == want["level"] and value(r, "entity_id") == want["entity"]
        assert value(r, "metric").split(",") == want["metrics"]
        assert r["opened_at"][1] == want["opened"] and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", r["opened_at"][1])
    # the simulator's truth: each injected drift is an incident opened when callqa detected it, on the
    # metric that detected it; they come before any other incident of the day
    positions = []
    for drift in summary["drifts"]:
        metric = drift["detected_by"].split(":", 2)[2]
        match = [i for i, r in enumerate(rows) if r["opened_at"][1] == drift["detected_at"][:16].replace("T", " ")
                 and metric in value(r, "metric").split(",")]
        assert match, f"{drift['kind']} drift ({drift['detected_by']} at {drift['detected_at']}) not in Today"
        positions.append(match[0])
    assert sorted(positions) == list(range(len(summary["drifts"])))
    # each incident's chart drew, below its row, the series the incident holds
    drawn, charts = drawn_charts(dom), plotted(dom)
    for i, r in enumerate(rows, 1):
        assert drawn[f"incident-{i}"], f"incident {i}'s chart did not draw"
        evidence = json.loads(store.query(f"SELECT argMax(evidence, at) FROM alerts FINAL WHERE alert_id = "
                                          f"'{value(r, 'alert_id')}'")[1][0][0])
        assert {t["meta"]["series"] for t in charts[f"incident-{i}"]} <= set(evidence["series"])
        assert dom.index(f'id="incident-{i}"') > dom.index('id="table-today-incidents"')


def test_each_incident_chart_draws_the_detectors_own_state(dom, store):
    charts = {name: traces for name, traces in plotted(dom).items() if name.startswith(("incident-", "qa-site"))}
    assert any(name.startswith("incident-") for name in charts)
    stored: dict[str, dict] = {}
    for series, t, expected, limit, alarm, statistic, ready in store.query(
            "SELECT series, formatDateTime(time, '%Y-%m-%d %H:%i'), expected, decision_limit, alarm_value, statistic, "
            "ready FROM detector_state FINAL")[1]:
        stored.setdefault(series, {})[t] = {"expected": expected if ready else None, "decision limit": limit,
                                            "alarm line": alarm, "CUSUM statistic": statistic}
    compared = 0
    for name, traces in charts.items():
        for trace in traces:
            role, series = trace["meta"]["role"], trace["meta"]["series"]
            if role == "observed":
                continue
            assert trace["x"], f"{name}: {role} of {series} is empty"
            for x, y in zip(trace["x"], trace["y"]):
                want = stored[series][x][role]
                assert (y is None and want is None) or y == pytest.approx(want, rel=1e-12), (name, series, role, x)
                compared += 1
    assert compared > 100
    # the stored state is the detector's own: the hour an alarm opened holds the statistic and limit the
    # alarm carried (its evidence in the alerts table), past the limit
    alarms = store.query("SELECT concat(level, '|', site_id, '|', entity_id, '|', metric), "
                         "formatDateTime(toStartOfHour(opened_at), '%Y-%m-%d %H:%i'), evidence FROM alerts FINAL "
                         "WHERE kind = 'drift' AND status = 'open'")[1]
    assert alarms
    for series, hour, evidence in alarms:
        e, state = json.loads(evidence), stored[series][hour]
        assert state["CUSUM statistic"] == pytest.approx(e["statistic"], abs=1e-4)
        assert state["decision limit"] == pytest.approx(e["limit"], abs=1e-4)
        assert state["CUSUM statistic"] > state["decision limit"]


def test_review_rows_link_their_recordings_and_agents_and_say_why(dom, store):
    rows, (links, ids) = rendered_tables(dom)["today-reviews"], rendered_links(dom)
    value = lambda row, column: row[column][0]
    queued = {call: (uri, agent, reason) for call, uri, agent, reason in store.query(
        f"SELECT call_id, storage_uri, agent_id, reason FROM review_queue FINAL WHERE status = 'queued' AND day = '{TODAY}'")[1]}
    assert queued and sorted(value(r, "call_id") for r in rows) == sorted(queued)
    incidents = {value(r, "alert_id"): i for i, r in enumerate(rendered_tables(dom)["today-incidents"], 1)}
    changes: dict[str, list] = {}  # agent -> their rate changes (time, signal kind, incident), in time order
    for agent, at, kind, evidence in store.query("SELECT agent_id, toString(at), signal_kind, evidence FROM "
                                                 "sampling_rates FINAL ORDER BY at")[1]:
        changes.setdefault(agent, []).append((at, kind, json.loads(evidence)["incident"] if kind.startswith("drift:") else ""))
    at_of = dict(store.query(f"SELECT call_id, toString(at) FROM review_queue FINAL WHERE day = '{TODAY}'")[1])
    named = 0
    for row, link in zip(rows, links["today-reviews"]):
        uri, agent, reason = queued[value(row, "call_id")]
        assert link["call_id"] == RECORDING_URL.format(storage_uri=uri, call_id=value(row, "call_id"))
        assert link["agent_id"] == f"#agent-{agent}" and f"agent-{agent}" in ids  # the agent's row in the report
        why = row["why"][1]
        if reason == "coverage":
            assert why.startswith("coverage rule: the first review this month on a ")
        elif reason == "pace":
            assert why.startswith("monthly minimum")
        else:  # the rate in force at the call (its latest change) and the signal that set it
            _, kind, incident = [c for c in changes[agent] if c[0] <= at_of[value(row, "call_id")]][-1]
            if incident:  # an incident raised it: named by its number in Today, with its metrics and since when
                opened = datetime.fromtimestamp(int(incident.rsplit("|", 1)[1]) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                assert why.startswith(f"incident #{incidents[incident]} on ") and f"since {opened}" in why, why
                named += 1
            else:
                assert why.startswith("operational change" if kind.startswith("ops:") else "random draw"), why
    assert named


def test_agents_behind_target_and_calibration_outliers(dom, store):
    tables = rendered_tables(dom)
    value = lambda row, column: row[column][0]
    end = datetime.fromisoformat(END).replace(tzinfo=UTC)
    first = {a: datetime.fromisoformat(t).replace(tzinfo=UTC) for a, t in store.query(
        f"SELECT agent_id, toString(min(at)) FROM sampling_decisions FINAL WHERE at < '{END}' GROUP BY agent_id")[1]}
    evaluated = dict(store.query("SELECT agent_id, count() FROM evaluations FINAL WHERE kind = 'human' "
                                 f"AND evaluated_at >= '2024-03-01' AND evaluated_at < '{END}' GROUP BY agent_id")[1])
    due = {a: round(30 * (end - t).total_seconds() / (31 * 86400), 1) for a, t in first.items()}
    behind = {a for a in first if evaluated.get(a, 0) < due[a]}
    assert behind and {value(r, "agent_id") for r in tables["today-behind"]} == behind
    for r in tables["today-behind"]:
        assert float(value(r, "due")) == pytest.approx(due[value(r, "agent_id")], abs=0.051)
    # an evaluator is an outlier when a calibration score lies more than 6 points from its call's mean
    outliers = {who for (who,) in store.query(
        "SELECT DISTINCT evaluator_id FROM (SELECT evaluator_id, pct - avg(pct) OVER (PARTITION BY call_id) AS deviation, "
        "count() OVER (PARTITION BY call_id) AS raters FROM evaluations FINAL WHERE kind = 'calibration' "
        f"AND evaluated_at < '{END}') WHERE raters > 1 AND abs(deviation) > 6")[1]}
    assert {value(r, "evaluator_id") for r in tables.get("today-calibration", [])} == outliers


def test_ratios_of_too_few_calls_are_left_out(demo, dom, tmp_path):
    # a report of the last day alone, with a minimum set above some agents' calls of the day
    env, _, _, store_dir = demo
    out = tmp_path / "day.html"
    done = run_callqa(["report", "--day", TODAY, "--from", TODAY, "--out", str(out)],
                      dict(env, CALLQA_DATA_DIR=str(store_dir), CALLQA_MIN_CALLS_FOR_RATIO="45"))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(store_dir / "chdb")  # (the embedded store takes one process at a time)
    try:
        hourly = {(site, t): (offered, sl) for site, t, offered, sl in store.query(
            "SELECT site_id, formatDateTime(window_start, '%Y-%m-%d %H:%i'), offered, "
            "round(sl_numerator / sl_denominator, 3) FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 3600")[1]}
        handled = dict(store.query(f"SELECT entity_id, sum(handled) FROM kpi_daily FINAL WHERE level = 'agent' "
                                   f"AND day = '{TODAY}' GROUP BY entity_id")[1])
    finally:
        store.close()
    # the demo's report (minimum 20): an hour of fewer calls is no point of the service-level charts
    points = 0
    for trace in plotted(dom)["sl"]:
        for x, y in zip(trace["x"], trace["y"]):
            offered, sl = hourly[(trace["meta"]["site"], x)]
            assert (y is None) == (offered < 20), (trace["meta"]["site"], x, offered, y)
            assert y is None or y == sl
            points += y is not None
    assert points and any(offered < 20 for offered, _ in hourly.values())
    # the day's report (minimum 45): an agent's ratios of fewer calls are blank cells
    agents = rendered_tables(out.read_text())["agents"]
    assert {r["agent_id"][0] for r in agents} == set(handled)
    assert any(h < 45 for h in handled.values()) and any(h >= 45 for h in handled.values())
    for r in agents:
        few = handled[r["agent_id"][0]] < 45
        assert (r["aht_s"] == ("", "")) == few and (r["transfer_rate"] == ("", "")) == few


def test_plan_explains_a_focus_agent_by_the_incident(demo):
    env, _, _, store_dir = demo
    done = run_callqa(["plan", "--day", TODAY, "--json"], dict(env, CALLQA_DATA_DIR=str(store_dir)))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(store_dir / "chdb")
    try:
        incidents = {alert_id: (metric, opened) for alert_id, metric, opened in store.query(
            "SELECT alert_id, argMin(metric, at), formatDateTime(min(opened_at), '%Y-%m-%d %H:%i') FROM alerts FINAL "
            "WHERE kind = 'incident' GROUP BY alert_id")[1]}
    finally:
        store.close()
    found = json.loads(done.stdout)
    plans = found["plans"] if isinstance(found, dict) else found
    explained = [p for p in plans if "incident " in p["why"]]
    assert explained  # e.g. "side_by_side; selected by incident site|site-1|site-1|… on site site-1: negative customers, since …"
    for p in explained:
        alert_id = re.search(r"incident (\S+) on ", p["why"]).group(1)
        assert alert_id in incidents and f"since {incidents[alert_id][1]}" in p["why"]


def test_recording_links_follow_the_template_and_a_bad_template_is_refused():
    from callqa.config import Config, ConfigError
    from callqa.report import recording_link

    call = {"storage_uri": "s3://bucket/site 1/call#7.wav", "call_id": "c 7", "recording_id": "r&7"}
    assert recording_link("{storage_uri}", call) == call["storage_uri"]  # the default: the storage URI itself
    assert (recording_link("https://rec.example/p?u={storage_uri}&c={call_id}&r={recording_id}", call)
            == "https://rec.example/p?u=s3://bucket/site%201/call%237.wav&c=c%207&r=r%267")
    assert Config.from_env({"CALLQA_RECORDING_URL": "https://rec.example/{call_id}"}).recording_url.endswith("{call_id}")
    for bad in ("https://rec.example/{uri}", "https://rec.example/", "https://rec.example/{storage_uri"):
        with pytest.raises(ConfigError, match="CALLQA_RECORDING_URL"):
            Config.from_env({"CALLQA_RECORDING_URL": bad})


# -- the period, Today's local times, the plan's unassigned calls, reviewers' targets, one rounding, words ----
def _day_windows(store, first: str, last: str) -> dict[str, tuple]:
    """Oracle: per site, calls offered and human QA (%) over the core's own day windows of the local days
    ``first`` to ``last`` (not the day rollup the report reads)."""
    return {site: (offered, qa) for site, offered, qa in store.query(
        "SELECT site_id, sum(offered), round(100 * sum(qa_human_score) / nullIf(sum(qa_human_max), 0), 1) "
        f"FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 86400 AND local_day >= '{first}' "
        f"AND local_day <= '{last}' GROUP BY site_id")[1]}


def test_the_report_expands_its_queries_for_exactly_its_days(store):
    """The report hands the macros Grafana's inclusive end (the period's last millisecond), to the millisecond:
    the instants and days of the period count, the next midnight and the next day do not."""
    from datetime import date

    from callqa import report

    start, end = report.bounds(date(2024, 3, 8), date(2024, 3, 8))
    instants = ["2024-03-07 23:59:59.999", "2024-03-08 00:00:00.000", "2024-03-08 23:59:59.500",
                "2024-03-08 23:59:59.999", "2024-03-09 00:00:00.000"]
    sql = ("SELECT countIf($__timeFilter(t)) AS in_range, countIf(t <= $__toTime) AS to_end, "
           "countIf($__dateFilter(d)) AS on_days FROM (SELECT arrayJoin(["
           + ", ".join(f"toDateTime64('{i}', 3, 'UTC')" for i in instants) + "]) AS t, toDate(t) AS d)")
    assert report.rows(store, sql, start, end, {}) == [{"in_range": 3, "to_end": 4, "on_days": 3}]


def test_daily_figures_count_exactly_the_period(demo, dom, tmp_path):
    env, _, _, store_dir = demo
    # the repro: Today the 8th, the period to the 9th; the store holds evaluations of the 9th and 10th
    out = tmp_path / "to-9th.html"
    done = run_callqa(["report", "--day", TODAY, "--to", "2024-03-09", "--out", str(out)],
                      dict(env, CALLQA_DATA_DIR=str(store_dir)))
    assert done.returncode == 0, done.stderr
    short = tmp_path / "to-7th.html"
    shorter = run_callqa(["report", "--from", "2024-03-04", "--to", "2024-03-07", "--out", str(short)],
                         dict(env, CALLQA_DATA_DIR=str(store_dir)))
    assert shorter.returncode == 0, shorter.stderr
    store = EmbeddedStore(store_dir / "chdb")
    try:
        (after,), = store.query("SELECT count() FROM kpi_daily FINAL WHERE level = 'site' AND day = '2024-03-10' "
                                "AND qa_human_max > 0")[1]
        assert after  # the day after the period holds human QA: it must not count
        page = out.read_text()
        first = re.search(r"(\d{4}-\d\d-\d\d) 00:00 to 2024-03-10 00:00 \(UTC\)", page).group(1)  # the header
        period, four_days = _day_windows(store, first, "2024-03-09"), _day_windows(store, "2024-03-04", "2024-03-07")
        demo_days = _day_windows(store, "2024-03-04", "2024-03-08")
    finally:
        store.close()
    shown = {r["site_id"][0]: (int(r["calls_offered"][0]), float(r["qa_human_pct"][0])) for r in rendered_tables(page)["sites"]}
    assert shown == period  # the days of the header: not the 10th
    # the success line and the Sites table of four days: their calls, not the fifth day's
    shown = {r["site_id"][0]: (int(r["calls_offered"][0]), float(r["qa_human_pct"][0]))
             for r in rendered_tables(short.read_text())["sites"]}
    assert shown == four_days
    calls = sum(n for n, _ in four_days.values())
    assert f"2024-03-04 to 2024-03-07, 2 sites, {calls} calls" in shorter.stdout
    # the demo's report (the 4th to the 8th): its sites, and the QA chart has no point after the 8th
    shown = {r["site_id"][0]: (int(r["calls_offered"][0]), float(r["qa_human_pct"][0])) for r in rendered_tables(dom)["sites"]}
    assert shown == demo_days
    days = {x[:10] for trace in plotted(dom)["qa_sites"] for x in trace["x"]}
    assert days == {"2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"}


def test_a_day_outside_the_data_is_refused_naming_day(demo):
    env, _, _, store_dir = demo
    for day in ("2024-03-20", "2023-01-01"):
        done = run_callqa(["report", "--day", day, "--out", "/dev/null"], dict(env, CALLQA_DATA_DIR=str(store_dir)))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert f"--day {day}" in lines[0] and "2024-03-04 to 2024-03-08" in lines[0], lines[0]
        assert "--to" not in lines[0] and "--from" not in lines[0] and "Traceback" not in done.stderr


def test_drift_alarms_and_todays_evidence_round_once_with_units(dom, store):
    from callqa.core.monitor import BY_LEVEL, METRICS

    tables = rendered_tables(dom)
    latest = {}  # (level, scope, metric, opened to the minute) -> the alarm's latest evidence
    for level, entity, metric, opened, evidence in store.query(
            "SELECT any(level), any(entity_id), any(metric), formatDateTime(min(opened_at), '%Y-%m-%d %H:%i'), "
            f"argMaxIf(evidence, at, evidence != '') FROM alerts FINAL WHERE kind = 'drift' AND at < '{END}' "
            "GROUP BY alert_id")[1]:
        latest[(level, entity, metric, opened)] = json.loads(evidence)
    assert len(tables["drifts"]) == len(latest)
    for r in tables["drifts"]:
        level, entity, metric = r["level"][0], r["entity_id"][0], r["metric"][0]
        e = latest[(level, entity, metric, r["opened_at"][1])]
        scale = BY_LEVEL.get((level, metric), METRICS.get(metric)).scale
        unit = {"binary": lambda v: f"{100 * v:.0f}%", "log": lambda v: f"{v:,.0f} s", "normal": lambda v: f"{v:.1f} %"}[scale]
        assert (r["value"][1], r["baseline"][1]) == (unit(e["value"]), unit(e["baseline_mean"])), r
        assert (r["statistic"][1], r["limit"][1]) == (f"{e['statistic']:.1f}", f"{e['limit']:.1f}")
        assert float(r["limit"][0]) == e["limit"]  # the raw value, not one rounded before
    assert {"binary", "log"} <= {BY_LEVEL.get((lv, m), METRICS.get(m)).scale for lv, _, m, _ in latest}
    # Today's evidence of an incident and the drift table's alarm on its series in the hour it opened: the same limit
    compared = 0
    for incident in tables["today-incidents"]:
        limit = re.search(r"past its limit ([\d.]+)$", incident["evidence_words"][1]).group(1)
        same = [d for d in tables["drifts"] if d["opened_at"][1] == incident["opened_at"][1]
                and d["level"][0] == incident["level"][0] and d["entity_id"][0] == incident["entity_id"][0]]
        for d in same:
            assert d["limit"][1] == limit, (incident, d)
            compared += 1
    assert compared


def test_the_page_speaks_words_not_codes(dom, store):
    tables = rendered_tables(dom)
    codes = re.compile(r"\b[a-z]+_[a-z_]+\b|\w+\|[\w-]+\|")  # snake_case codes, incident ids (site|site-1|…)
    for name in ("today-incidents", "today-reviews", "today-plan", "today-unassigned", "today-behind",
                 "today-reviewers", "today-calibration", "drifts", "alerts", "rates", "queue", "shift-shares", "agents"):
        for row in tables.get(name, []):
            for column, (_, text) in row.items():
                assert not codes.search(text), (name, column, text)
    # the plan names incidents by their number in Today, as the review list above it
    numbered = [r for r in tables["today-plan"] if "incident " in r["reasons"][1]]
    assert numbered and all(re.search(r"incident #\d+ on ", r["reasons"][1]) for r in numbered)
    # shares in percent, as the next columns
    for r in tables["shift-shares"]:
        raw, text = r["recorded_share"]
        assert text == f"{100 * float(raw):.1f}%"
    # a calibration outlier's call links to its recording
    uris = dict(store.query("SELECT call_id, argMax(JSONExtractString(payload, 'storage_uri'), event_time) FROM raw_events "
                            "WHERE event_type = 'recording.completed' GROUP BY call_id")[1])
    links, _ = rendered_links(dom)
    rows = tables["today-calibration"]
    assert rows
    for row, link in zip(rows, links["today-calibration"]):
        call = row["call_id"][0]
        assert link.get("call_id") == (RECORDING_URL.format(storage_uri=uris[call], call_id=call) if call in uris else None)


def test_a_summary_comes_before_the_review_list(dom, store):
    found = re.search(r'<p class="summary" id="today-reviews-summary">([^<]*)</p>', dom)
    assert found and dom.index('id="today-reviews-summary"') < dom.index('id="table-today-reviews"')
    summary = found.group(1).replace("&#39;", "'")
    reasons = dict(store.query(f"SELECT reason, count() FROM review_queue FINAL WHERE status = 'queued' AND day = '{TODAY}' "
                               "GROUP BY reason")[1])
    methods = dict(store.query(f"SELECT method, count() FROM review_queue FINAL WHERE status = 'queued' "
                               f"AND day = '{TODAY}' GROUP BY method")[1])
    assert summary.startswith(f"{sum(reasons.values())} calls to review, queued on each site's local day {TODAY}")
    count = lambda words: int(m.group(1)) if (m := re.search(rf"(\d+) {words}", summary)) else 0
    assert count("by the coverage rule") == reasons.get("coverage", 0)
    assert count("for the monthly minimum") == reasons.get("pace", 0)
    assert (count("for incidents") + count("for operational changes") + count("drawn at random")
            == reasons.get("rate", 0))
    words = {"side_by_side": "side by side", "live_remote": "live remote listening", "recording_review": "recording review"}
    assert all(count(words[m]) == n for m, n in methods.items())
    assert f"{sum(reasons.values())} of {sum(reasons.values())} calls planned, 0 unassigned" in summary


def test_unassigned_calls_and_reviewers_behind_their_target(demo, dom, tmp_path):
    """One reviewer of 8 reviews a day (CALLQA_QA_REVIEWERS × CALLQA_QA_REVIEWS_PER_HOUR × CALLQA_QA_REVIEW_HOURS):
    each day's plan places 8 calls, the rest of Today's queue is unassigned, with the reason; the reviewer's
    target so far is 8 a day on the month's days with a queue before Today, against their human evaluations."""
    env, _, _, store_dir = demo
    out = tmp_path / "one-reviewer.html"
    done = run_callqa(["report", "--day", TODAY, "--from", TODAY, "--out", str(out)],
                      dict(env, CALLQA_DATA_DIR=str(store_dir), CALLQA_QA_REVIEWERS="1", CALLQA_QA_REVIEWS_PER_HOUR="1",
                           CALLQA_QA_REVIEW_HOURS="8"))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(store_dir / "chdb")
    try:
        queued = dict(store.query("SELECT toString(day), count() FROM review_queue FINAL WHERE status = 'queued' "
                                  "GROUP BY day")[1])
        per_agent = dict(store.query(f"SELECT agent_id, count() FROM review_queue FINAL WHERE status = 'queued' "
                                     f"AND day = '{TODAY}' GROUP BY agent_id")[1])
        (evaluated,), = store.query("SELECT count() FROM evaluations FINAL WHERE kind = 'human' AND evaluator_id = 'qa-01' "
                                    f"AND evaluated_at >= '2024-03-01' AND evaluated_at < '{END}'")[1]
    finally:
        store.close()
    page = out.read_text()
    tables = rendered_tables(page)
    planned, today = 8, queued[TODAY]
    summary = re.search(r'id="today-plan-summary">([^<]*)<', page).group(1)
    assert f"{planned} of {today} calls planned, {today - planned} unassigned" in summary
    assert sum(int(r["target"][0]) for r in tables["today-plan"]) == planned
    unassigned = tables["today-unassigned"]
    assert sum(int(r["calls"][0]) for r in unassigned) == today - planned
    assert all(r["reason"][1].startswith("capacity exhausted") for r in unassigned)
    placed: dict[str, int] = {}
    for r in tables["today-plan"] + unassigned:
        n = int(r["target"][0] if "target" in r else r["calls"][0])
        placed[r["agent_id"][0]] = placed.get(r["agent_id"][0], 0) + n
    assert placed == per_agent
    due = sum(min(n, planned) for day, n in queued.items() if "2024-03-01" <= day < TODAY)
    behind = tables.get("today-reviewers", [])
    if evaluated < due:
        assert [(r["reviewer"][0], int(r["evaluated"][0]), int(r["due"][0]), int(r["behind_by"][0])) for r in behind] == [
            ("qa-01", evaluated, due, due - evaluated)]
        assert int(behind[0]["assigned_today"][0]) == planned and int(behind[0]["capacity"][0]) == planned
    else:
        assert behind == []
    assert due > evaluated  # the demo's qa-01 is behind (the test means something)


def test_reviewers_behind_their_target_in_the_demo(dom, store):
    """The demo's 12 reviewers (qa-01…qa-12; the simulator's evaluators are qa-01…qa-06): each one shown has
    fewer human evaluations this month than the reviews their plans gave them; the plans of the days before
    Today placed every queued call (capacity 1008 a day)."""
    rows = rendered_tables(dom)["today-reviewers"]
    evaluated = dict(store.query("SELECT evaluator_id, count() FROM evaluations FINAL WHERE kind = 'human' "
                                 f"AND evaluated_at >= '2024-03-01' AND evaluated_at < '{END}' GROUP BY evaluator_id")[1])
    (before,), = store.query(f"SELECT count() FROM review_queue FINAL WHERE status = 'queued' AND day < '{TODAY}'")[1]
    assert rows and {r["reviewer"][0] for r in rows} >= {f"qa-{i:02d}" for i in range(7, 13)}  # they evaluate nothing
    for r in rows:
        who, due = r["reviewer"][0], int(r["due"][0])
        assert int(r["evaluated"][0]) == evaluated.get(who, 0) < due <= before
        assert int(r["behind_by"][0]) == due - evaluated.get(who, 0)
