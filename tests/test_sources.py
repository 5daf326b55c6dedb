"""Adapters: every file in ../shared/data converts without loss; malformed input never stops a run."""
import csv
import json
import threading
import time
from collections import Counter

import pytest

from callqa.ingest import follow
from sinks.store import EmbeddedStore
from sources import FORMATS
from sources.base import IngestSummary
from sources.pii import CallerHasher
from tests.conftest import FIXTURES, SHARED_DATA, callqa_env, run_callqa

BANK = SHARED_DATA / "anonymous-bank" / "calls-august.csv"
ASTERISK = SHARED_DATA / "asterisk" / "queue_log.csv"
CTR = SHARED_DATA / "amazon-connect" / "ctr-record.json"
AGENT_EVENT = SHARED_DATA / "amazon-connect" / "agent-event.json"
HASHER = CallerHasher("test-key")


def convert(fmt, path_or_lines, name="input"):
    lines = path_or_lines.open(newline="") if hasattr(path_or_lines, "open") else path_or_lines
    units = list(FORMATS[fmt](lines, name, "s1", HASHER))
    summary = IngestSummary()
    for unit in units:
        summary.add(unit)
    return units, summary


def totals(data_dir):
    store = EmbeddedStore(data_dir / "chdb")
    try:
        kpi = store.query("SELECT sum(offered), sum(answered), sum(abandoned) + sum(short_abandoned), "
                          "sum(unanswered_other) FROM kpi_windows FINAL WHERE level = 'site' AND window_s = 900")[1][0]
        outcomes = dict(store.query("SELECT outcome, count() FROM call_records FINAL GROUP BY outcome")[1])
        dead = store.query("SELECT position, reason, payload FROM dead_letters FINAL ORDER BY position")[1]
        return kpi, outcomes, dead
    finally:
        store.close()


@pytest.mark.shared_data
def test_anonymous_bank_month_converts_without_loss(ingested):
    rows = list(csv.DictReader(BANK.open()))
    served = sum(r["outcome"] == "AGENT" for r in rows)
    queue_hangs = sum(r["outcome"] == "HANG" and int(r["q_time"]) > 0 for r in rows)
    ivr_hangs = sum(r["outcome"] == "HANG" and int(r["q_time"]) == 0 for r in rows)
    phantoms = sum(r["outcome"] == "PHANTOM" for r in rows)
    # a 10-hour call: closed as incomplete at the 4-hour timeout, then its end (within the re-delivery
    # time) updates it: answered, nothing lost
    stuck = sum(r["outcome"] == "AGENT" and int(r["ser_time"]) > 4 * 3600 for r in rows)
    data_dir, done = ingested("anonymous-bank", BANK, "bank")
    assert "42078 input units" in done.stdout
    (offered, answered, left, other), outcomes, dead = totals(data_dir)
    assert len(rows) == 42078 and dead == []
    assert (answered, left, other) == (served, queue_hangs, 0)
    assert offered == len(rows) - ivr_hangs - phantoms  # PHANTOM: documented as calls to ignore
    assert f"PHANTOM                      │ {phantoms}" in done.stdout and phantoms == 310
    assert stuck == 1
    assert outcomes == {"answered": served, "abandoned": queue_hangs + ivr_hangs}


@pytest.mark.shared_data
def test_asterisk_table_converts_without_loss(ingested):
    rows = list(csv.DictReader(ASTERISK.open()))
    verbs = Counter(r["event"] for r in rows)
    calls = {r["callid"] for r in rows if r["event"] in ("ENTERQUEUE", "CONNECT", "ABANDON", "EXITWITHTIMEOUT")}
    data_dir, done = ingested("asterisk-queue-log-table", ASTERISK, "pbx")
    (offered, answered, left, other), outcomes, dead = totals(data_dir)
    assert dead == []
    assert offered == len(calls)
    assert answered == len({r["callid"] for r in rows if r["event"] == "CONNECT"}) == verbs["CONNECT"]
    assert left == verbs["ABANDON"] and other == verbs["EXITWITHTIMEOUT"]
    assert outcomes["timeout"] == verbs["EXITWITHTIMEOUT"]
    # every row is mapped or reported: nothing silently dropped
    _, summary = convert("asterisk-queue-log-table", ASTERISK)
    mapped = sum(n for verb, n in verbs.items() if verb not in summary.skipped)
    assert summary.units == len(rows) and sum(summary.skipped.values()) + mapped == len(rows)
    assert set(summary.skipped) == {"QUEUESTART", "CONFIGRELOAD", "OUTTRANSFER"}
    assert "QUEUESTART" in done.stdout
    # the PBX's outbound calls are agent work: an answered outbound call per OUTANSWER, with its talk
    # time (ttime) in the agent's windows, and never offered
    store = EmbeddedStore(data_dir / "chdb")
    try:
        (n, talk), = store.query("SELECT count(), sum(talk_ms) FROM call_records FINAL "
                                 "WHERE direction = 'outbound' AND outcome = 'answered'")[1]
        (agent_talk, site_talk), = store.query(
            "SELECT sumIf(talk_ms, level = 'agent'), sumIf(talk_ms, level = 'site') FROM kpi_windows FINAL "
            "WHERE window_s = 86400")[1]
    finally:
        store.close()
    outbound = [r for r in rows if r["event"] == "OUTANSWER"]
    assert n == len(outbound) == 77 and talk == 1000 * sum(int(r["ttime"]) for r in outbound)
    assert agent_talk >= site_talk + talk


def test_asterisk_pipe_format_maps_every_verb(tmp_path):
    units, summary = convert("asterisk-queue-log", FIXTURES / "queue_log.txt", "queue_log.txt")
    assert summary.errors == ["queue_log.txt:16: not a queue_log line (expected epoch|callid|queue|agent|event|params...)"]
    assert summary.skipped == {"QUEUESTART": 1, "CONFIGRELOAD": 1}
    events = [e for u in units for e in u.events]
    abandons = {e["call_id"].split(":")[1]: e.get("reason") for e in events if e["event_type"] == "call.abandoned"}
    assert abandons == {"1709542910.4": "caller_hangup", "1709542950.5": "timeout",
                        "1709543020.6": "key_pressed", "1709543030.7": "empty_queue"}
    states = [(e["agent_id"], e["state"], e.get("reason")) for e in events if e["event_type"] == "agent.state_changed"]
    assert states == [("2001", "logged_in", None), ("2002", "logged_in", None), ("2001", "not_ready", "lunch"),
                      ("2001", "available", None), ("2001", "logged_out", None), ("2002", "logged_out", None)]
    rings = [(e["agent_id"], e["answered"], e.get("ring_ms")) for e in events if e["event_type"] == "call.agent_offered"]
    assert rings[:2] == [("2001", False, 6000), ("2002", True, 4000)]
    transfers = [e["transfer_type"] for e in events if e["event_type"] == "call.transferred"]
    assert transfers == ["blind", "attended"]
    # a repeat caller keeps one hash (8613800138000 twice, 8613600136000 three times); 'anonymous' gets none
    hashes = [e.get("caller_hash") for e in events if e["event_type"] == "call.offered"]
    assert hashes[0] == hashes[1] != hashes[2] and hashes[3] is None
    assert len(set(hashes[4:])) == 2 and hashes.count(hashes[-1]) == 3
    # event ids are stable across runs and unique
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert ids == [e["event_id"] for u in convert("asterisk-queue-log", FIXTURES / "queue_log.txt")[0] for e in u.events]


def test_caller_numbers_never_leave_the_adapter():
    units, _ = convert("asterisk-queue-log", FIXTURES / "queue_log.txt")
    text = json.dumps([e for u in units for e in u.events])
    for number in ("8613800138000", "8613900139000", "8613600136000"):
        assert number not in text
    assert CallerHasher("a")("+86 138 0013 8000") == CallerHasher("a")("8613800138000")
    assert CallerHasher("a")("8613800138000") != CallerHasher("b")("8613800138000")


@pytest.mark.shared_data
def test_malformed_lines_go_to_dead_letters_and_the_rest_goes_through(tmp_path):
    lines = BANK.read_text().splitlines()[:201]
    lines.insert(50, "garbage,line")
    lines.insert(100, lines[99].replace("AGENT", "LOST").replace("HANG", "LOST").replace("PHANTOM", "LOST"))
    lines.insert(150, lines[149].replace(",2010-08-", ",2010-13-"))
    bad = tmp_path / "bank.csv"
    bad.write_text("\n".join(lines) + "\n")
    done = run_callqa(["ingest", "--format", "anonymous-bank", str(bad)], callqa_env(tmp_path))
    assert done.returncode == 0
    assert "3 unreadable" in done.stderr and "bank.csv:51" in done.stderr and "bank.csv:101" in done.stderr
    _, outcomes, dead = totals(tmp_path / "data")
    phantoms = sum(",PHANTOM," in line for line in lines)
    assert phantoms == 1 and sum(outcomes.values()) == 200 - phantoms
    assert [d[0] for d in dead] == ["bank.csv:101", "bank.csv:151", "bank.csv:51"]
    assert dead[2][2] == "garbage,line" and "unknown outcome" in dead[0][1]


@pytest.mark.shared_data
def test_amazon_connect_records():
    units, summary = convert("amazon-connect-ctr", CTR, "ctr-record.json")
    record = json.loads(CTR.read_text())
    assert summary.errors == [] and summary.events == {"call.offered": 1, "call.abandoned": 1}
    assert units[0].events[0]["caller_hash"] == HASHER(record["CustomerEndpoint"]["Address"])
    units, summary = convert("amazon-connect-agent-events", AGENT_EVENT, "agent-event.json")
    (event,) = units[0].events
    # named by the snapshot's Username, as contact records name their agent (not by the ARN's id)
    assert (event["state"], event["agent_id"]) == ("on_call", "P12345678")


@pytest.mark.shared_data
def test_amazon_connect_keeps_the_newest_record_per_contact():
    old = json.loads(CTR.read_text())
    new = dict(old, LastUpdateTimestamp="2019-01-30T15:20:00Z",
               Queue={"Name": "Sales", "EnqueueTimestamp": "2019-01-30T15:11:36Z",
                      "DequeueTimestamp": "2019-01-30T15:11:50Z"},
               Agent={"Username": "amy", "ConnectedToAgentTimestamp": "2019-01-30T15:11:50Z", "NumberOfHolds": 2,
                      "CustomerHoldDuration": 30, "AfterContactWorkStartTimestamp": "2019-01-30T15:15:00Z",
                      "AfterContactWorkEndTimestamp": "2019-01-30T15:16:00Z"})
    for lines in ([json.dumps(new) + "\n", json.dumps(old) + "\n", "{broken\n"], [json.dumps([old, new])]):
        units, summary = convert("amazon-connect-ctr", lines, "ctr.json")
        assert summary.skipped == {"superseded CTR": 1}
        kinds = Counter(e["event_type"] for u in units for e in u.events)
        assert kinds == {"call.offered": 1, "call.queued": 1, "call.answered": 1, "call.held": 2,
                         "call.resumed": 2, "call.ended": 1, "call.wrapup_ended": 1}
    assert summary.errors == [] and len(convert("amazon-connect-ctr", ["{broken"])[1].errors) == 1


def test_follow_reads_lines_as_they_are_written(tmp_path):
    path = tmp_path / "queue_log"
    path.write_text("")
    source = (FIXTURES / "queue_log.txt").read_text().splitlines(keepends=True)
    stop, idles = threading.Event(), []

    def writer():
        with path.open("a") as out:
            for line in source:
                out.write(line)
                out.flush()
                time.sleep(0.002)
        time.sleep(0.3)
        stop.set()

    threading.Thread(target=writer).start()
    with path.open() as handle:
        got = list(follow(handle, lambda: idles.append(1), stop.is_set, interval_s=0.05))
    assert got == source and idles


def test_a_file_with_no_event_of_its_format_is_an_error(tmp_path):
    """The original Anonymous Bank distribution is tab-separated with YYMMDD dates: refused as a whole
    (exit 2, with the first reasons), its lines kept as dead letters."""
    original = tmp_path / "august.txt"
    original.write_text("vru+line\tcall_id\tcustomer_id\tpriority\ttype\tdate\n"
                        "AA0101\t44749\t27644400\t2\tPS\t990801\n")
    done = run_callqa(["ingest", "--format", "anonymous-bank", str(original)], callqa_env(tmp_path))
    assert done.returncode == 2 and "no anonymous-bank events" in done.stderr and "unexpected header" in done.stderr
    assert "Traceback" not in done.stderr
    _, _, dead = totals(tmp_path / "data")
    assert len(dead) == 1
