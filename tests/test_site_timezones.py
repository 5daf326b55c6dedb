"""Local time per site (CALLQA_SITE_TIMEZONES): shift bands, weekdays, day windows, review-queue days,
daily plans and test-call slots in each site's zone, the store in UTC. Oracles are Python's zoneinfo and
datetime on the instants, never the code under test."""
import json
import pickle
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callqa.config import Config, ConfigError
from callqa.core import agents, kpi
from callqa.core.clock import SiteClock
from callqa.core.plans import SLOT_HOURS, weekly_test_calls
from callqa.core.sampling import PolicyConfig, Sampler
from schemas import format_ms, time_ms
from tests.conftest import callqa_env, run_callqa

SHANGHAI, BERLIN = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")
CLOCK = SiteClock({"bj": "Asia/Shanghai", "de": "Europe/Berlin", "in": "Asia/Kolkata"})


def ms(text: str) -> int:
    return time_ms(text)


def utc_ms(local: datetime) -> int:
    return int(local.timestamp() * 1000)


def test_the_setting_is_validated_and_reaches_the_kpi_config():
    config = Config.from_env({"CALLQA_SITE_TIMEZONES": "site-1=Asia/Shanghai, site-2=Europe/Berlin",
                              "CALLQA_TIMEZONE": "America/New_York"})
    clock = config.kpi.clock
    assert (clock.name("site-1"), clock.name("site-2"), clock.name("site-9")) == (
        "Asia/Shanghai", "Europe/Berlin", "America/New_York")
    assert Config.from_env({}).kpi.clock.utc
    for env, named in (({"CALLQA_SITE_TIMEZONES": "site-1=Asia/Shanghia"}, "CALLQA_SITE_TIMEZONES"),
                       ({"CALLQA_SITE_TIMEZONES": "site-1"}, "CALLQA_SITE_TIMEZONES"),
                       ({"CALLQA_SITE_TIMEZONES": "a=UTC,a=UTC"}, "CALLQA_SITE_TIMEZONES"),
                       ({"CALLQA_TIMEZONE": "Mars/Olympus"}, "CALLQA_TIMEZONE")):
        with pytest.raises(ConfigError, match=named) as caught:
            Config.from_env(env)
        assert "\n" not in str(caught.value)


def test_day_windows_start_at_the_sites_local_midnight():
    t = ms("2024-03-04T17:00:00.000Z")
    config = kpi.KpiConfig(window_sizes_s=(900, 3600, 86400), clock=CLOCK)
    keys = kpi.keys_at(config, t, [("site", "bj", "bj"), ("site", "elsewhere", "elsewhere")])
    starts = {(k.split("|")[1], int(k.split("|")[3])): int(k.split("|")[4]) for k in keys}
    shanghai_midnight = utc_ms(datetime(2024, 3, 5, tzinfo=SHANGHAI))  # 17:00Z is 01:00 on the 5th in Shanghai
    assert format_ms(shanghai_midnight) == "2024-03-04T16:00:00.000Z"
    assert starts[("bj", 86400)] == shanghai_midnight
    assert starts[("elsewhere", 86400)] == utc_ms(datetime(2024, 3, 4, tzinfo=UTC))
    assert starts[("bj", 3600)] == t and starts[("bj", 900)] == t and starts[("bj", 300)] == t  # shorter: UTC-aligned
    # Kolkata (+05:30): the day starts at 18:30Z, the hour windows stay on the UTC hour
    t = ms("2024-03-04T19:10:00.000Z")
    assert CLOCK.window_start("in", 86400, t) == utc_ms(datetime(2024, 3, 5, tzinfo=ZoneInfo("Asia/Kolkata")))
    assert CLOCK.window_start("in", 3600, t) == ms("2024-03-04T19:00:00.000Z")
    # a week (7 days) counts days from 1970-01-01 as UTC weeks do, from local midnight
    week = CLOCK.window_start("bj", 7 * 86400, ms("2024-03-06T12:00:00.000Z"))
    local = datetime.fromtimestamp(week / 1000, SHANGHAI)
    assert (local.hour, local.minute) == (0, 0) and (local.date() - date(1970, 1, 1)).days % 7 == 0


def test_a_daylight_saving_day_is_23_hours_and_agent_time_splits_on_local_midnights():
    start = CLOCK.window_start("de", 86400, ms("2024-03-31T12:00:00.000Z"))
    end = CLOCK.window_end("de", 86400, start)
    assert (start, end) == (utc_ms(datetime(2024, 3, 31, tzinfo=BERLIN)), utc_ms(datetime(2024, 4, 1, tzinfo=BERLIN)))
    assert end - start == 23 * 3_600_000
    row = kpi.row(kpi.window_key("site", "de", "de", 86400, start), {"offered": 1}, CLOCK)
    assert (row["window_end"], row["local_day"]) == (format_ms(end), "2024-03-31")
    # logged in from 21:00 local on the 30th to 04:00 local on 1 April
    login, logout = utc_ms(datetime(2024, 3, 30, 21, tzinfo=BERLIN)), utc_ms(datetime(2024, 4, 1, 4, tzinfo=BERLIN))
    split = agents._split(kpi.KpiConfig(window_sizes_s=(86400,), clock=CLOCK), login, logout, "available",
                          [("agent", "de", "a1")])
    by_day = {datetime.fromtimestamp(int(k.rsplit("|", 1)[1]) / 1000, BERLIN).date().isoformat(): c["logged_in_ms"] // 3_600_000
              for k, c in split.items()}
    assert by_day == {"2024-03-30": 3, "2024-03-31": 23, "2024-04-01": 4}


def test_the_utc_clock_is_the_old_arithmetic():
    clock = SiteClock()
    for t in (0, ms("2024-03-04T17:00:00.123Z"), ms("2024-10-27T01:30:00.000Z")):
        for size in (300, 900, 3600, 86400, 7 * 86400):
            assert clock.window_start("s", size, t) == t - t % (size * 1000)
    assert pickle.loads(pickle.dumps(CLOCK)) == CLOCK and CLOCK != SiteClock()


def sampler(profiles: dict, clock: SiteClock, **policy) -> Sampler:
    return Sampler({}, {}, profiles, PolicyConfig(**policy), b"k", clock=clock)


def candidate(call: str, site: str, agent: str, answered: str) -> dict:
    t = ms(answered)
    return {"call_id": call, "recording_id": f"r-{call}", "agent_id": agent, "site_id": site, "queue_id": "q",
            "at_ms": t + 120_000, "answered_ms": t, "duration_ms": 120_000}


def band_oracle(local: datetime, start: int, end: int) -> str:
    into = (local.hour * 60 + local.minute - start * 60) % 1440
    length = ((end - start) * 60) % 1440
    if into >= length:  # outside: the nearer edge of the shift
        return "last_two_hours" if into - length < 1440 - into else "first_hour"
    return "first_hour" if into < 60 else "last_two_hours" if into >= length - 120 else "middle"


def test_shift_bands_weekdays_and_review_days_are_the_sites_local_time():
    shift = {"start": "09:00", "end": "18:00"}
    profiles = {"bj-a": {"site_id": "bj", "team_id": "t", "hire_date": "2020-01-01", "shift": shift},
                "utc-a": {"site_id": "elsewhere", "team_id": "t", "hire_date": "2020-01-01", "shift": shift}}
    s = sampler(profiles, CLOCK, base_rate=1.0, max_rate=1.0, rotation_factor=(1.0,),
                tier_factor={"high": 1.0, "middle": 1.0, "low": 1.0})  # every call selected
    for answered in ("2024-03-05T01:30:00.000Z", "2024-03-04T23:30:00.000Z", "2024-03-04T17:00:00.000Z",
                     "2024-03-05T08:30:00.000Z"):
        for agent, site, zone in (("bj-a", "bj", SHANGHAI), ("utc-a", "elsewhere", UTC)):
            out = s.decide(candidate(f"{agent}-{answered}", site, agent, answered))
            decision = out.decisions[0]
            local = datetime.fromtimestamp(ms(answered) / 1000, zone)
            assert decision["cell"] == f"{local:%a}-{band_oracle(local, 9, 18)}", (agent, answered)
            queued = [r for r in out.reviews if r["status"] == "queued"]
            at_local = datetime.fromtimestamp(ms(decision["at"]) / 1000, zone)
            assert [r["day"] for r in queued] == [at_local.date().isoformat()]
    # 01:30Z is 09:30 in Shanghai: the first hour of a 09:00-18:00 shift (in UTC: before the shift)
    first = s.decide(candidate("x1", "bj", "bj-a", "2024-03-05T01:30:00.000Z")).decisions[0]
    assert first["cell"] == "Tue-first_hour"
    # outside the 09:00-18:00 shift, the nearer edge: 18:30 and 00:32 (6.5 h after the end, 8.5 h before the
    # start) are overtime; 07:00 is an early start
    for call, answered, cell in (("o1", "2024-03-05T10:30:00.000Z", "Tue-last_two_hours"),
                                 ("o2", "2024-03-05T16:32:00.000Z", "Wed-last_two_hours"),
                                 ("o3", "2024-03-05T23:00:00.000Z", "Wed-first_hour")):
        assert s.decide(candidate(call, "bj", "bj-a", answered)).decisions[0]["cell"] == cell, call
    # a profile's shift in a zone of its own is read in that zone
    profiles["own"] = {"site_id": "bj", "team_id": "t", "hire_date": "2020-01-01",
                       "shift": {"start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}}
    own = s.decide(candidate("x2", "bj", "own", "2024-03-05T08:10:00.000Z")).decisions[0]  # 09:10 Berlin, 16:10 Shanghai
    assert own["cell"] == "Tue-first_hour"


def test_test_call_slots_are_local_weekdays_and_hours():
    agents_ = [{"agent_id": f"a{i:03d}", "site_id": "bj" if i % 2 else "elsewhere", "hours": list(range(8, 22))}
               for i in range(120)]
    plan = weekly_test_calls(date(2024, 3, 11), agents_, ["e-wallet"], [], 98, seed=1, clock=CLOCK)
    assert len(plan) == 98
    for p in plan:
        zone = SHANGHAI if p["site_id"] == "bj" else UTC
        local = datetime.fromtimestamp(ms(p["at"]) / 1000, zone)
        assert p["timezone"] == ("Asia/Shanghai" if p["site_id"] == "bj" else "UTC")
        assert f"{local:%Y-%m-%dT%H:%M}" == p["local"]
        assert date(2024, 3, 11) <= local.date() <= date(2024, 3, 17)
        day, hour = p["slot"].split("-")
        assert day == f"{local:%a}" and int(hour[:2]) <= local.hour <= int(hour[:2]) + 1 and int(hour[:2]) in SLOT_HOURS


def test_both_runners_take_the_zones_from_the_same_config(tmp_path, monkeypatch):
    """The faust worker's context and the embedded pipeline's are built from ``Config.kpi``."""
    import streams.app
    from callqa.cli.common import _embedded_pipeline
    from sinks.store import EmbeddedStore

    config = Config.from_env({"CALLQA_SITE_TIMEZONES": "site-1=Asia/Shanghai", "CALLQA_DATA_DIR": str(tmp_path),
                              "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CALLQA_CALLER_HASH_KEY": "k"})
    made = []

    class Reader:
        def __init__(self, *args):
            pass

        def close(self):
            pass

    real = streams.app.Context
    monkeypatch.setattr(streams.app, "ChangelogReplica", Reader)
    monkeypatch.setattr(streams.app, "LogProbe", Reader)
    monkeypatch.setattr(streams.app, "Context", lambda *args: made.append(real(*args)) or made[-1])
    streams.app.create_app(config)
    store = EmbeddedStore(tmp_path / "chdb")
    try:
        embedded = _embedded_pipeline(config, store)
    finally:
        store.close()
    assert made[0].kpi.clock == embedded.graph.ctx.kpi.clock == config.kpi.clock
    assert made[0].kpi.clock.name("site-1") == "Asia/Shanghai"


@pytest.fixture(scope="module")
def shanghai_store(tmp_path_factory):
    """Two simulated days: site-1 in Asia/Shanghai, site-2 in UTC, site-3 in America/Los_Angeles (whose
    working day straddles UTC midnight)."""
    from sinks.store import EmbeddedStore
    from sources.simulator import SimConfig, Simulator

    tmp = tmp_path_factory.mktemp("zones")
    env = callqa_env(tmp, CALLQA_SITE_TIMEZONES="site-1=Asia/Shanghai,site-3=America/Los_Angeles")
    done = run_callqa(["simulate", "--sites", "3", "--agents-per-site", "8", "--days", "2", "--seed", "4"], env,
                      timeout=600)
    assert done.returncode == 0, done.stderr
    shifts = {a.id: a.shift for a in Simulator(SimConfig(3, 8, 2, date(2024, 3, 4), 4)).agents}
    commands = {}  # the CLI's plans (run first: the embedded store takes one process at a time)
    for name, args, extra in (("plan", ["plan", "--day", "2024-03-05", "--json"], {}),
                              ("test-calls", ["test-calls", "--week", "2024-03-06", "--json"],
                               {"CALLQA_TEST_CALLS_PER_WEEK": "12"})):
        done = run_callqa(args, {**env, **extra})
        assert done.returncode == 0, done.stderr
        commands[name] = json.loads(done.stdout)
    commands["report"] = tmp / "report.html"
    done = run_callqa(["report", "--from", "2024-03-04", "--to", "2024-03-05", "--day", "2024-03-05",
                       "--out", str(commands["report"])], env)
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp / "data" / "chdb")
    yield commands, store, shifts
    store.close()


SITES = ("site-1", "site-2", "site-3")


def zone_of(site: str):
    return {"site-1": SHANGHAI, "site-3": ZoneInfo("America/Los_Angeles")}.get(site, UTC)


def test_the_simulated_shanghai_site_works_shanghai_daytime(shanghai_store):
    _, store, _ = shanghai_store
    offered = store.query("SELECT site_id, toUnixTimestamp64Milli(event_time) FROM raw_events FINAL "
                          "WHERE event_type = 'call.offered'")[1]
    hours = {site: {datetime.fromtimestamp(t / 1000, zone_of(site)).hour for s, t in offered if s == site}
             for site in SITES}
    assert all(hours[site] == set(range(8, 21)) for site in SITES)  # open 08:00-21:00 local everywhere


def test_shift_hour_shares_in_the_store_are_by_local_hour(shanghai_store):
    from callqa.report import rows
    from sinks import queries

    _, store, shifts = shanghai_store
    decided = store.query("SELECT d.site_id, d.agent_id, toUnixTimestamp64Milli(c.answered_at) FROM sampling_decisions "
                          "AS d FINAL JOIN call_records AS c FINAL ON d.call_id = c.call_id")[1]
    want = Counter()
    for site, agent, answered in decided:
        local = datetime.fromtimestamp(answered / 1000, zone_of(site))
        want[(site, band_oracle(local, *shifts[agent]))] += 1
    start, end = datetime(2024, 3, 3, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC)
    shares = rows(store, queries.SHIFT_BAND_SHARES, start, end, {"site": list(SITES)})
    assert {(r["site_id"], r["band"]): r["recorded"] for r in shares} == dict(want)
    assert {r["band"] for r in shares if r["site_id"] == "site-1"} == {"first_hour", "middle", "last_two_hours"}
    for site in SITES:
        mine = [r for r in shares if r["site_id"] == site]
        assert sum(r["recorded_share"] for r in mine) == pytest.approx(1, abs=0.01)
        assert {r["band"]: r["target_share"] for r in mine} == PolicyConfig().shift_share


def test_review_days_and_the_daily_plan_are_the_sites_local_day(shanghai_store):
    commands, store, _ = shanghai_store
    queued = store.query("SELECT site_id, toString(day), toUnixTimestamp64Milli(at) FROM review_queue FINAL "
                         "WHERE status = 'queued'")[1]
    assert queued and all(day == datetime.fromtimestamp(at / 1000, zone_of(site)).date().isoformat()
                          for site, day, at in queued)
    local_day = Counter((site, day) for site, day, _ in queued)
    # Los Angeles works past UTC midnight: some of its 5 March calls are on the 6th in UTC
    assert any(site == "site-3" and day == "2024-03-05" and datetime.fromtimestamp(at / 1000, UTC).day == 6
               for site, day, at in queued)
    plans = commands["plan"]["plans"]
    assert {p["timezone"] for p in plans if p["site_id"] == "site-1"} == {"Asia/Shanghai"}
    planned = Counter()
    for p in plans:
        planned[p["site_id"]] += p["target"]
    per_site = sum(local_day[(s, "2024-03-05")] for s in SITES)
    capacity = int(PolicyConfig().reviews_per_hour * PolicyConfig().review_hours) * PolicyConfig().reviewers
    assert sum(planned.values()) == min(per_site, capacity)
    if per_site <= capacity:
        assert planned == Counter({s: local_day[(s, "2024-03-05")] for s in SITES if local_day[(s, "2024-03-05")]})


def test_day_windows_and_the_day_rollup_are_the_sites_local_days(shanghai_store):
    _, store, _ = shanghai_store
    # the 15-minute windows (UTC-aligned, never across a local midnight at whole-hour offsets) by local date
    quarters = store.query("SELECT site_id, toUnixTimestamp64Milli(window_start), offered FROM kpi_windows FINAL "
                           "WHERE level = 'site' AND window_s = 900")[1]
    by_day = Counter()
    for site, t, n in quarters:
        by_day[(site, datetime.fromtimestamp(t / 1000, zone_of(site)).date().isoformat())] += n
    windows = store.query("SELECT site_id, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
                          "toString(local_day), offered FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 86400")[1]
    for site, start, end, day, n in windows:
        midnight = datetime.combine(date.fromisoformat(day), datetime.min.time(), zone_of(site))
        assert (start, end) == (utc_ms(midnight), utc_ms(midnight + timedelta(days=1)))
        assert n == by_day[(site, day)]
    assert {(s, d) for s, _, _, d, _ in windows} == set(by_day)
    from sinks import rollups

    rollups.refresh(store)
    daily = store.query("SELECT site_id, toString(day), sum(offered) FROM kpi_daily FINAL WHERE level = 'site' "
                        "GROUP BY site_id, day")[1]
    assert {(s, d): n for s, d, n in daily} == dict(by_day)


def test_test_calls_plan_in_local_slots_from_local_working_hours(shanghai_store):
    commands, store, _ = shanghai_store
    plan = commands["test-calls"]
    answered = store.query("SELECT agent_id, site_id, toUnixTimestamp64Milli(answered_at) FROM call_records FINAL "
                           "WHERE agent_id != ''")[1]
    worked: dict[str, set] = {}
    for agent, site, t in answered:
        worked.setdefault(agent, set()).add(datetime.fromtimestamp(t / 1000, zone_of(site)).hour)
    assert len(plan) == 12
    for p in plan:
        local = datetime.fromtimestamp(ms(p["at"]) / 1000, zone_of(p["site_id"]))
        slot = int(p["slot"].split("-")[1][:2])
        assert f"{local:%Y-%m-%dT%H:%M}" == p["local"] and slot in SLOT_HOURS
        assert slot in worked[p["agent_id"]] or slot + 1 in worked[p["agent_id"]]


def test_the_report_shows_shift_hour_shares_and_the_daily_plan_in_each_sites_local_time(shanghai_store):
    """The report as a reader sees it (headless Chromium): the shift-band table of the Shanghai site counts
    calls by the band of their answer on the Shanghai clock, and today's plan lists each reviewer's calls
    of the site's local day at their Shanghai times (both worked out here from the UTC store)."""
    from tests.test_report import chromium, rendered_tables

    commands, store, shifts = shanghai_store
    tables = rendered_tables(chromium("--dump-dom", commands["report"].as_uri()).stdout)
    decided = store.query("SELECT d.site_id, d.agent_id, toUnixTimestamp64Milli(c.answered_at) FROM sampling_decisions "
                          "AS d FINAL JOIN call_records AS c FINAL ON d.call_id = c.call_id "
                          "WHERE d.at >= '2024-03-04 00:00:00' AND d.at < '2024-03-06 00:00:00'")[1]  # the report's period
    want = Counter()
    for site, agent, answered in decided:
        want[(site, band_oracle(datetime.fromtimestamp(answered / 1000, zone_of(site)), *shifts[agent]))] += 1
    shown = {(r["site_id"][0], r["band"][0]): int(r["recorded"][0]) for r in tables["shift-shares"]}
    assert shown == dict(want)
    assert {r["timezone"][0] for r in tables["shift-shares"] if r["site_id"][0] == "site-1"} == {"Asia/Shanghai"}

    queued = store.query("SELECT site_id, agent_id, toUnixTimestamp64Milli(at) FROM review_queue FINAL "
                         "WHERE status = 'queued' AND day = '2024-03-05'")[1]
    local = defaultdict(list)
    for site, agent, at in queued:
        moment = datetime.fromtimestamp(at / 1000, zone_of(site))
        assert moment.date() == date(2024, 3, 5)  # the site's local day, whatever the UTC date
        local[(site, agent)].append(moment.strftime("%H:%M"))
    planned = defaultdict(list)
    for row in tables["today-plan"]:
        planned[(row["site_id"][0], row["agent_id"][0])] += row["local_times"][1].split(", ")
        assert row["timezone"][0] == {"site-1": "Asia/Shanghai", "site-3": "America/Los_Angeles"}.get(
            row["site_id"][0], "UTC")
    assert any(site == "site-1" for site, _ in planned)
    assert {k: sorted(v) for k, v in planned.items()} == {k: sorted(v) for k, v in local.items()}


def test_todays_review_list_gives_each_call_its_sites_local_time_like_the_plan(shanghai_store):
    """The review list of the report's Today (the sites' local day 5 March): each call's time on its site's
    clock with the zone, worked out here from the UTC store; the same times as the plan table below it."""
    from tests.test_report import chromium, rendered_tables

    commands, store, _ = shanghai_store
    tables = rendered_tables(chromium("--dump-dom", commands["report"].as_uri()).stdout)
    at = {call: (site, t) for call, site, t in store.query(
        "SELECT call_id, site_id, toUnixTimestamp64Milli(at) FROM review_queue FINAL "
        "WHERE status = 'queued' AND day = '2024-03-05'")[1]}
    rows = tables["today-reviews"]
    assert sorted(r["call_id"][0] for r in rows) == sorted(at)
    zones = {"site-1": "Asia/Shanghai", "site-3": "America/Los_Angeles"}
    shown = defaultdict(list)
    for r in rows:
        site, t = at[r["call_id"][0]]
        assert r["timezone"][1] == zones.get(site, "UTC")
        assert r["at"][1] == datetime.fromtimestamp(t / 1000, zone_of(site)).strftime("%H:%M"), r
        shown[(site, r["agent_id"][0])].append(r["at"][1])
    assert any(zones.get(site) for site, _ in shown)
    planned = defaultdict(list)
    for row in tables["today-plan"]:
        planned[(row["site_id"][0], row["agent_id"][0])] += row["local_times"][1].split(", ")
    assert {k: sorted(v) for k, v in planned.items()} == {k: sorted(v) for k, v in shown.items()}
