"""`callqa demo` and `callqa report`: the summary, and the HTML report loaded in headless Chromium
(Debian's, started here): no script errors, the charts render, the figures equal the store's."""
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from sinks.store import EmbeddedStore
from tests.conftest import callqa_env, run_callqa

END = "2024-03-09 00:00:00"  # the end of the demo's five days (from Monday 2024-03-04)
CHARTS = {"sl", "asa", "qa-site-1", "qa-site-2", "qa_sites", "rates", "coverage", "evaluations", "calibration"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    env = callqa_env(tmp)
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
    """The report's tables: id -> rows of {column: (raw value, shown text)}."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a["id"].removeprefix("table-"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append({})
        elif tag == "td" and self._table is not None:
            self._cell = [a["data-column"], a["data-value"], ""]

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
    drawn = {}
    for chunk in dom.stdout.split('id="chart-')[1:]:  # each chart's div, up to the next one
        name = chunk.split('"', 1)[0]
        drawn[name] = chunk.count('class="main-svg"') >= 2 and re.search(r'class="trace (scatter|bars)', chunk) is not None
    assert drawn == {name: True for name in CHARTS}  # every chart drew its SVG and at least one trace
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
