"""Daily and hourly KPIs from `callqa ingest` on real data equal a tally taken straight from the raw rows.

The tallies below read the CSV files directly and apply the KPI definitions of the README
(arrival = queue entry; wait = answer or hang-up minus arrival; short abandons under 5 s left out;
service level = answered within 20 s over answered + abandoned; AHT = talk + hold + ACW over handled).
"""
import csv
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from sinks.store import EmbeddedStore
from tests.conftest import SHARED_DATA

BANK = SHARED_DATA / "anonymous-bank" / "calls-august.csv"
ASTERISK = SHARED_DATA / "asterisk" / "queue_log.csv"
FIELDS = ("offered", "answered", "abandoned", "short_abandoned", "sl_numerator", "sl_denominator", "handled")


def new_window():
    return {f: 0 for f in FIELDS} | {"wait_answered_s": 0, "handle_s": 0}


def bucket(epoch_s: int, size: int) -> str:
    return datetime.fromtimestamp(epoch_s - epoch_s % size, UTC).strftime("%Y-%m-%d %H:%M:%S.000")


def count(windows, size, arrival, wait, outcome, talk=None):
    w = windows[(size, bucket(arrival, size))]
    w["offered"] += 1
    if outcome == "answered":
        w["answered"] += 1
        w["wait_answered_s"] += wait
        w["sl_numerator"] += wait <= 20
        w["sl_denominator"] += 1
        if talk is not None:
            w["handled"] += 1
            w["handle_s"] += talk
    elif outcome == "abandoned":
        if wait < 5:
            w["short_abandoned"] += 1
        else:
            w["abandoned"] += 1
            w["sl_denominator"] += 1


def bank_tally():
    windows = defaultdict(new_window)
    for r in csv.DictReader(BANK.open()):
        q_time, ser_time = int(r["q_time"]), int(r["ser_time"])
        if r["outcome"] == "PHANTOM" or (r["outcome"] == "HANG" and q_time == 0):
            continue  # documented as calls to ignore; hung up in the IVR: not offered
        day = int(datetime.strptime(r["date"], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        entry = sum(int(x) * m for x, m in zip(r["vru_entry"].split(":"), (3600, 60, 1)))

        def at(clock):
            t = sum(int(x) * m for x, m in zip(clock.split(":"), (3600, 60, 1)))
            return day + t + (86400 if t < entry - 43200 else 0)

        queued = at(r["q_start"]) if q_time > 0 else at(r["vru_exit"])
        if r["outcome"] == "AGENT":
            answered = queued + q_time  # the documented wait: q_time
            talk = ser_time  # longer than the call timeout: closed as incomplete, then its end updates it
            for size in (3600, 86400):
                count(windows, size, queued, answered - queued, "answered", talk)
        else:
            for size in (3600, 86400):
                count(windows, size, queued, at(r["q_exit"]) - queued, "abandoned")
    return windows


def asterisk_tally():
    calls = defaultdict(dict)
    for r in csv.DictReader(ASTERISK.open()):
        calls[r["callid"]].setdefault(r["event"], int(r["date_time"]))
    windows = defaultdict(new_window)
    for events in calls.values():
        start = events.get("ENTERQUEUE")
        if "CONNECT" in events:
            arrival = start if start is not None else events["CONNECT"]
            end = min((events[v] for v in ("COMPLETEAGENT", "COMPLETECALLER", "BLINDTRANSFER", "ATTENDEDTRANSFER")
                       if v in events), default=None)
            for size in (3600, 86400):
                count(windows, size, arrival, events["CONNECT"] - arrival, "answered",
                      None if end is None else end - events["CONNECT"])
        elif "ABANDON" in events or "EXITWITHTIMEOUT" in events:
            left = events.get("ABANDON", events.get("EXITWITHTIMEOUT"))
            outcome = "abandoned" if "ABANDON" in events else "other"
            for size in (3600, 86400):
                count(windows, size, start if start is not None else left, left - (start or left), outcome)
        elif start is not None:
            for size in (3600, 86400):  # still waiting when the sample ends: offered only
                windows[(size, bucket(start, size))]["offered"] += 1
    return windows


def stored(data_dir):
    store = EmbeddedStore(data_dir / "chdb")
    try:
        columns, rows = store.query(
            f"SELECT window_s, toString(window_start) AS start, {', '.join(FIELDS)}, wait_answered_ms, "
            "talk_ms + hold_ms + acw_ms AS handle_ms, asa_s, aht_s, service_level "
            "FROM kpi_windows FINAL WHERE level = 'site' AND window_s IN (3600, 86400)")
        return {(r[0], r[1]): dict(zip(columns, r)) for r in rows}
    finally:
        store.close()


@pytest.mark.parametrize("fmt,path,tally", [("anonymous-bank", BANK, bank_tally),
                                            ("asterisk-queue-log-table", ASTERISK, asterisk_tally)])
@pytest.mark.shared_data
def test_daily_and_hourly_kpis_equal_the_raw_tally(ingested, fmt, path, tally):
    data_dir, _ = ingested(fmt, path, "bank" if fmt == "anonymous-bank" else "pbx")
    got, want = stored(data_dir), tally()
    # hours with agents logged in but no calls have rows too (logged-in time); compare those with calls
    got = {key: g for key, g in got.items() if any(g[f] for f in FIELDS)}
    assert set(got) == set(want)
    assert sum(1 for size, _ in want if size == 86400) >= (31 if fmt == "anonymous-bank" else 2)
    for key, w in want.items():
        g = got[key]
        assert {f: g[f] for f in FIELDS} == {f: w[f] for f in FIELDS}, key
        if w["answered"]:
            asa = w["wait_answered_s"] / w["answered"]
            assert g["asa_s"] == pytest.approx(asa, rel=1e-3, abs=1e-3), key
        if w["handled"]:
            assert g["aht_s"] == pytest.approx(w["handle_s"] / w["handled"], rel=1e-3), key
        if w["sl_denominator"]:
            assert g["service_level"] == pytest.approx(w["sl_numerator"] / w["sl_denominator"], abs=1e-6), key


@pytest.mark.shared_data
def test_callqa_query_shows_a_sites_hourly_kpis_for_a_day(ingested):
    from sinks.queries import SITE_HOURLY
    from tests.conftest import callqa_env, run_callqa

    data_dir, _ = ingested("anonymous-bank", BANK, "bank")
    env = callqa_env(data_dir.parent) | {"CALLQA_DATA_DIR": str(data_dir)}
    done = run_callqa(["query", SITE_HOURLY.format(site="bank", day="2010-08-02", timezone="UTC")], env)
    assert done.returncode == 0, done.stderr
    for column in ("hour", "service_level", "asa_s", "abandon_rate", "aht_s"):
        assert column in done.stdout
    want = {k[1][11:16]: w for k, w in bank_tally().items() if k[0] == 3600 and k[1].startswith("2010-08-02")}
    lines = [line for line in done.stdout.splitlines() if line[2:4].isdigit() and line[4:7] == ":00"]
    assert len(lines) == len(want)
    assert all(f"│ {w['offered']}" in line for line, w in zip(lines, (want[h] for h in sorted(want))))
