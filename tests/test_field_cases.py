"""Calls as the field counts them: transfers, overflow, re-entry, queue membership, Connect contact
chains and callbacks, outbound work, re-delivery, documented empty times.

The shared field cases (``../shared/field-cases``, written by others with their right answers) go
through ``callqa ingest`` and are checked on the stored tables. The cases below them were written
here from the formats' documentation (Asterisk "Queue Logs" and app_queue's transfer lines per
version, Amazon Connect's contact records data model and queued-callback example, the Anonymous Bank
description) and run the adapter and the stage graph in process.
"""
from __future__ import annotations

import io
import json
import random

import pytest

from callqa.core.kpi import KpiConfig
from callqa.core.local import LocalGraph
from schemas import format_ms, time_ms
from sinks.store import EmbeddedStore
from sources import BATCH_FORMATS, FORMATS
from sources.pii import CallerHasher
from tests.conftest import SHARED_DATA, callqa_env, run_callqa

FIELD_CASES = SHARED_DATA.parent / "field-cases"
HASHER = CallerHasher("test-key")
DAY = KpiConfig(window_sizes_s=(86400,))


# ---- the shared field cases, through `callqa ingest`, checked on the stored tables ----------------

def ingest_case(tmp_path, fmt: str, name: str):
    path = FIELD_CASES / name
    if not path.exists():
        pytest.skip(f"{path} is not here (a clone without ../shared): the shared field cases are not run")
    done = run_callqa(["ingest", "--format", fmt, "--site", "s", str(path)], callqa_env(tmp_path))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        cols, rows = store.query("SELECT * FROM call_records FINAL ORDER BY call_id")
        records = [dict(zip(cols, r)) for r in rows]
        cols, rows = store.query("SELECT * FROM kpi_windows FINAL WHERE window_s = 86400")
        windows = {(r[cols.index("level")], r[cols.index("entity_id")]): dict(zip(cols, r)) for r in rows}
        dead = store.query("SELECT reason FROM dead_letters FINAL")[1]
    finally:
        store.close()
    assert dead == []
    return records, windows


def test_attended_transfer_into_a_queue_logged_under_the_consultation_leg(tmp_path):
    records, w = ingest_case(tmp_path, "asterisk-queue-log", "01-attended-transfer-into-queue.queue_log")
    (call,) = records  # the consultation leg is not a call of its own
    assert call["outcome"] == "answered" and call["agent_id"] == "2001" and call["wait_ms"] == 12_000
    assert call["transfer_count"] == 1
    assert call["segment_agent_ids"] == ["2001", "2002"] and call["segment_transferred"] == [1, 0]
    assert call["segment_talk_ms"] == [120_000, 173_000]
    site = w[("site", "s")]
    assert (site["offered"], site["answered"], site["incomplete"], site["transferred"]) == (1, 1, 0, 1)
    assert site["sl_numerator"] == site["sl_denominator"] == 1
    assert (w[("queue", "509")]["offered"], w[("queue", "509")]["asa_s"], w[("queue", "509")]["transferred_in"]) == (1, 7.0, 1)


def test_blind_transfer_to_a_second_queue(tmp_path):
    records, w = ingest_case(tmp_path, "asterisk-queue-log", "02-blind-transfer-to-second-queue.queue_log")
    (call,) = records
    assert call["segment_agent_ids"] == ["2001", "2003"] and call["segment_talk_ms"] == [90_000, 240_000]
    assert call["segment_transferred"] == [1, 0] and call["talk_ms"] + call["hold_ms"] + call["acw_ms"] == 330_000
    site = w[("site", "s")]
    assert (site["offered"], site["answered"], site["sl_numerator"], site["asa_s"]) == (1, 1, 1, 8.0)
    assert site["aht_s"] == 330.0
    support = w[("queue", "support")]
    assert (support["offered"], support["answered"], support["asa_s"], support["transferred_in"]) == (1, 1, 15.0, 1)
    assert w[("agent", "2003")]["talk_ms"] == 240_000


def test_member_of_two_queues_is_logged_in_until_the_last_one(tmp_path):
    _, w = ingest_case(tmp_path, "asterisk-queue-log", "05-member-of-two-queues-session.queue_log")
    agent = w[("agent", "2005")]
    assert (agent["logged_in_ms"], agent["not_ready_ms"]) == (28_800_000, 1_800_000)


def test_connect_transfer_to_a_queue_is_one_customer_call(tmp_path):
    records, w = ingest_case(tmp_path, "amazon-connect-ctr", "06-connect-transfer-to-queue.ctr.jsonl")
    (call,) = records
    assert call["segment_agent_ids"] == ["agent-01", "agent-02"] and call["stint_queue_ids"] == ["Billing", "Technical"]
    site = w[("site", "s")]
    assert (site["offered"], site["answered"], site["sl_numerator"], site["asa_s"]) == (1, 1, 1, 20.0)
    assert site["transfer_rate"] == 1.0
    agent2 = w[("agent", "agent-02")]
    assert (agent2["offered"], agent2["transferred_in"], agent2["handled"]) == (0, 1, 1)


def test_anonymous_bank_documented_empty_time(tmp_path):
    records, w = ingest_case(tmp_path, "anonymous-bank", "11-anonymous-bank-doc-zero-time.csv")
    assert [(r["outcome"], r["wait_ms"], r["talk_ms"]) for r in records] == [("answered", 90_000, 0), ("answered", 60_000, 0)]
    assert w[("site", "s")]["asa_s"] == 75.0


# ---- cases written from the formats' documentation, in process ----------------------------------

def through(fmt: str, text: str, config: KpiConfig = DAY, state: dict | None = None, day: str = "", **reader):
    """Records (newest version), the newest row of every window (of ``day`` when given), dead-letter
    reasons and the graph's counts, for one input."""
    units = list(FORMATS[fmt](io.StringIO(text), "input", "s", HASHER, **reader))
    assert [u.error for u in units if u.error] == []
    events = [e for u in units for e in u.events]
    if fmt in BATCH_FORMATS:
        events.sort(key=lambda e: e["event_time"])
    graph = LocalGraph({} if state is None else state, config)
    for e in events:
        graph.feed(e, "test", e["event_id"])
    out = graph.flush()
    records, rows = {}, {}
    for r in out.rows.get("call_records", []):
        if r["call_id"] not in records or records[r["call_id"]]["version"] < r["version"]:
            records[r["call_id"]] = r
    for r in out.rows.get("kpi_windows", []):
        if r["window_s"] != max(config.window_sizes_s) or not r["window_start"].startswith(day):
            continue  # site and queue also have 5-minute buckets
        key = (r["level"], r["entity_id"])
        if key not in rows or rows[key]["version"] < r["version"]:
            rows[key] = r
    return records, rows, [d["reason"] for d in out.rows.get("dead_letters", [])], out.counts


def queue_log(*lines: str, t0: int = 1_710_324_000) -> str:
    """Pipe lines with ``+N`` seconds in place of the epoch."""
    return "".join(f"{t0 + int(line.split('|', 1)[0])}|{line.split('|', 1)[1]}\n" for line in lines)


def test_overflow_after_a_timeout_is_one_call_with_two_stints():
    text = queue_log("0|c1|sales|NONE|ENTERQUEUE||5550100|1", "60|c1|sales|NONE|EXITWITHTIMEOUT|1|1|60",
                     "60|c1|overflow|NONE|ENTERQUEUE||5550100|1", "70|c1|overflow|PJSIP/2001|CONNECT|10|c1.9|3",
                     "170|c1|overflow|PJSIP/2001|COMPLETECALLER|10|100|1")
    records, w, dead, _ = through("asterisk-queue-log", text)
    (call,) = records.values()
    assert call["stint_queue_ids"] == ["sales", "overflow"] and call["stint_outcomes"] == ["timeout", "answered"]
    assert (call["outcome"], call["wait_ms"], call["talk_ms"]) == ("answered", 70_000, 100_000)
    assert (w[("site", "s")]["offered"], w[("site", "s")]["answered"], w[("site", "s")]["unanswered_other"]) == (1, 1, 0)
    assert (w[("queue", "sales")]["offered"], w[("queue", "sales")]["unanswered_other"]) == (1, 1)
    assert (w[("queue", "overflow")]["answered"], w[("queue", "overflow")]["asa_s"]) == (1, 10.0)
    # the multi-stint reading counts the call once, in the queue it first entered
    _, once, _, _ = through("asterisk-queue-log", text, KpiConfig(window_sizes_s=(86400,), queue_reading="multi_stint"))
    assert (once[("queue", "sales")]["offered"], once[("queue", "sales")]["answered"]) == (1, 1)
    assert ("queue", "overflow") not in once and once[("site", "s")] == w[("site", "s")]


def test_multi_stint_reading_follows_queuemetrics():
    """QueueMetrics' multi-stint mode: the first queue, answered if the last stint was, the sum of the
    stints' waits, the last answered stint's talk; the site keeps the caller's first answer."""
    text = queue_log("0|c7|sales|NONE|ENTERQUEUE||5550107|1", "8|c7|sales|PJSIP/2001|CONNECT|8|c7.1|3",
                     "98|c7|sales|PJSIP/2001|BLINDTRANSFER|600|from-internal|8|90|1",
                     "99|c7|support|NONE|ENTERQUEUE||5550107|1", "114|c7|support|PJSIP/2003|CONNECT|15|c7.2|4",
                     "354|c7|support|PJSIP/2003|COMPLETECALLER|15|240|1",
                     "400|c8|sales|NONE|ENTERQUEUE||5550108|1", "405|c8|sales|PJSIP/2001|CONNECT|5|c8.1|3",
                     "465|c8|sales|PJSIP/2001|BLINDTRANSFER|600|from-internal|5|60|1",
                     "466|c8|support|NONE|ENTERQUEUE||5550108|1", "526|c8|support|NONE|ABANDON|1|1|60")
    config = KpiConfig(window_sizes_s=(86400,), queue_reading="multi_stint")
    _, w, _, _ = through("asterisk-queue-log", text, config)
    sales = w[("queue", "sales")]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (2, 1, 1)  # c8: its last stint was lost
    assert (sales["asa_s"], sales["talk_ms"]) == (23.0, 240_000)  # c7: 8 + 15 s, the last taken talk
    site = w[("site", "s")]
    assert (site["offered"], site["answered"], site["abandoned"], site["asa_s"]) == (2, 2, 0, 6.5)


def test_transfer_back_into_the_same_queue_and_a_hang_up_there():
    text = queue_log("0|c2|help|NONE|ENTERQUEUE||5550101|1", "5|c2|help|PJSIP/2001|CONNECT|5|c2.1|2",
                     "65|c2|help|PJSIP/2001|BLINDTRANSFER|600|from-internal|5|60|1",
                     "66|c2|help|NONE|ENTERQUEUE||5550101|1", "126|c2|help|NONE|ABANDON|1|1|60")
    records, w, _, _ = through("asterisk-queue-log", text)
    (call,) = records.values()
    assert call["stint_queue_ids"] == ["help", "help"] and call["stint_outcomes"] == ["answered", "caller_hangup"]
    assert call["outcome"] == "answered"  # served by 2001: the site counts no abandon
    site, help_ = w[("site", "s")], w[("queue", "help")]
    assert (site["offered"], site["answered"], site["abandoned"]) == (1, 1, 0)
    assert (help_["offered"], help_["answered"], help_["abandoned"], help_["transferred_in"]) == (2, 1, 1, 1)


@pytest.mark.parametrize("line", ["TRANSFER|2005|from-internal|5|60",  # Asterisk 1.4-11
                                  "BLINDTRANSFER|2005|from-internal|5|60|1",  # 12+: to an extension
                                  "ATTENDEDTRANSFER|BRIDGE|b7d1|5|60|1",  # 12+, under the caller's id
                                  "ATTENDEDTRANSFER|LINK|PJSIP/2001-01|PJSIP/2005-02|5|60|1"])
def test_a_transfer_out_of_the_queues_ends_the_agents_segment_and_the_call(line):
    text = queue_log("0|c3|help|NONE|ENTERQUEUE||5550102|1", "5|c3|help|Agent/2001|CONNECT|5|c3.1|2",
                     f"65|c3|help|Agent/2001|{line}")
    records, w, _, _ = through("asterisk-queue-log", text)
    (call,) = records.values()
    assert (call["outcome"], call["segment_talk_ms"], call["segment_transferred"]) == ("answered", [60_000], [1])
    assert (w[("site", "s")]["handled"], w[("site", "s")]["transferred"], w[("site", "s")]["incomplete"]) == (1, 1, 0)


def test_attended_transfer_under_the_consultation_leg_with_agent_channels_and_a_later_timeout():
    # the field case's kind with another channel type, a caller already waiting in the target queue,
    # and input long after it: the consultation leg never becomes an incomplete call
    text = queue_log("0|cust|billing|NONE|ENTERQUEUE||5550103|1", "9|cust|billing|Agent/7|CONNECT|9|x.1|2",
                     "30|other|tech|NONE|ENTERQUEUE||5550104|1",
                     "100|leg|tech|NONE|ENTERQUEUE||7|2", "104|leg|billing|Agent/7|ATTENDEDTRANSFER|APP|Queue|9|95|1",
                     "110|other|tech|Agent/8|CONNECT|80|x.2|2", "150|other|tech|Agent/8|COMPLETECALLER|80|40|1",
                     "160|cust|tech|Agent/9|CONNECT|60|x.3|2", "400|cust|tech|Agent/9|COMPLETEAGENT|60|240|1",
                     "30000|late|tech|NONE|ENTERQUEUE||5550105|1", "30010|late|tech|NONE|ABANDON|1|1|10")
    records, w, _, _ = through("asterisk-queue-log", text)
    assert set(records) == {"s:cust", "s:other", "s:late"}
    cust = records["s:cust"]
    assert cust["segment_agent_ids"] == ["7", "9"] and cust["segment_talk_ms"] == [95_000, 240_000]
    assert cust["stint_queue_ids"] == ["billing", "tech"] and cust["stint_wait_ms"] == [9_000, 60_000]
    assert (w[("site", "s")]["offered"], w[("site", "s")]["incomplete"]) == (3, 0)
    assert w[("queue", "tech")]["offered"] == 3  # other, the customer's stint, late


def test_attended_transfer_whose_consultation_was_answered_or_abandoned_in_the_target_queue():
    # the target queue's agent answered the consultation leg before the transfer completed: from the
    # transfer on they talk to the customer, and the leg's later lines (its end) are the customer's
    answered = queue_log("0|cu|501|NONE|ENTERQUEUE||5550005|1", "12|cu|501|PJSIP/2001|CONNECT|12|cu.2|11",
                         "100|leg|509|NONE|ENTERQUEUE||2001|1", "110|leg|509|PJSIP/2002|CONNECT|10|leg.6|9",
                         "140|leg|501|PJSIP/2001|ATTENDEDTRANSFER|APP|Queue|12|128|1",
                         "400|leg|509|PJSIP/2002|COMPLETECALLER|10|290|1")
    records, w, _, _ = through("asterisk-queue-log", answered)
    (call,) = records.values()
    assert call["segment_agent_ids"] == ["2001", "2002"] and call["segment_talk_ms"] == [128_000, 260_000]
    # the customer's wait in 509 is the leg's own (ENTERQUEUE to CONNECT), not the agents' consultation
    assert call["stint_queue_ids"] == ["501", "509"] and call["stint_wait_ms"] == [12_000, 10_000]
    assert w[("agent", "2002")]["talk_ms"] == 260_000 and w[("site", "s")]["offered"] == 1
    # the customer hangs up waiting in the target queue; the ABANDON is logged under the leg's id
    abandoned = queue_log("0|cu|501|NONE|ENTERQUEUE||5550004|1", "12|cu|501|SIP/2001-0001|CONNECT|12|cu.2|11",
                          "100|leg|509|NONE|ENTERQUEUE||2001|1", "132|leg|501|SIP/2001-0001|ATTENDEDTRANSFER|APP|Queue|12|120|1",
                          "190|leg|509|NONE|ABANDON|1|1|90")
    records, w, _, _ = through("asterisk-queue-log", abandoned)
    (call,) = records.values()
    assert call["stint_outcomes"] == ["answered", "caller_hangup"] and call["outcome"] == "answered"
    q509 = w[("queue", "509")]
    assert (q509["offered"], q509["abandoned"], q509["incomplete"]) == (1, 1, 0)


def test_consultation_legs_under_either_call_id_and_consultations_that_are_not_transfers():
    # the ATTENDEDTRANSFER under the customer's id; the leg's id goes on (the target agent's end)
    under_customer = queue_log("0|cu|501|NONE|ENTERQUEUE||5561|1", "10|cu|501|PJSIP/2001|CONNECT|10|x|2",
                               "100|leg|509|NONE|ENTERQUEUE||2001|1", "105|leg|509|PJSIP/2002|CONNECT|5|x|2",
                               "130|cu|501|PJSIP/2001|ATTENDEDTRANSFER|BRIDGE|abc|10|120|1",
                               "300|leg|509|PJSIP/2002|COMPLETECALLER|5|195|1")
    records, w, _, _ = through("asterisk-queue-log", under_customer)
    assert list(records) == ["s:cu"] and records["s:cu"]["segment_talk_ms"] == [120_000, 170_000]
    assert (w[("site", "s")]["offered"], w[("queue", "509")]["transferred_in"]) == (1, 1)
    # the agent takes a new call in the same second as the transfer line of the previous one: the
    # line's calltime (120 s) names the call it transfers
    same_second = queue_log("0|c1|501|NONE|ENTERQUEUE||5555|1", "10|c1|501|PJSIP/2001|CONNECT|10|x|2",
                            "100|leg|509|NONE|ENTERQUEUE||2001|1", "105|leg|509|PJSIP/2002|CONNECT|5|x|2",
                            "129|c2|501|NONE|ENTERQUEUE||5556|1", "130|c2|501|PJSIP/2001|CONNECT|1|x|2",
                            "130|leg|501|PJSIP/2001|ATTENDEDTRANSFER|APP|Queue|10|120|1",
                            "300|leg|509|PJSIP/2002|COMPLETECALLER|5|170|1", "400|c2|501|PJSIP/2001|COMPLETECALLER|1|270|1")
    records, _, _, _ = through("asterisk-queue-log", same_second)
    assert records["s:c1"]["segment_agent_ids"] == ["2001", "2002"] and records["s:c1"]["segment_talk_ms"] == [120_000, 170_000]
    assert records["s:c2"]["segment_agent_ids"] == ["2001"] and records["s:c2"]["talk_ms"] == 270_000
    # a consultation answered and hung up without a transfer: an internal call, agent work, never offered
    internal = queue_log("0|c5|501|NONE|ENTERQUEUE||5557|1", "10|c5|501|PJSIP/2001|CONNECT|10|x|2",
                         "100|in|501|NONE|ENTERQUEUE||2001|1", "105|in|501|PJSIP/2003|CONNECT|5|x|2",
                         "160|in|501|PJSIP/2003|COMPLETECALLER|5|55|1", "300|c5|501|PJSIP/2001|COMPLETEAGENT|10|290|1")
    records, w, _, _ = through("asterisk-queue-log", internal)
    assert records["s:in"]["direction"] == "internal" and not records["s:in"]["caller_hash"]
    assert (w[("site", "s")]["offered"], w[("queue", "501")]["offered"]) == (1, 1)
    assert (w[("agent", "2003")]["handled"], w[("agent", "2003")]["talk_ms"], w[("agent", "2003")]["offered"]) == (1, 55_000, 0)


def test_order_of_arrival_does_not_change_a_multi_stint_call():
    text = queue_log("0|c4|sales|NONE|ENTERQUEUE||5550106|1", "8|c4|sales|PJSIP/2001|CONNECT|8|c4.1|3",
                     "98|c4|sales|PJSIP/2001|BLINDTRANSFER|600|from-internal|8|90|1",
                     "99|c4|support|NONE|ENTERQUEUE||5550106|1", "114|c4|support|PJSIP/2003|CONNECT|15|c4.2|4",
                     "354|c4|support|PJSIP/2003|COMPLETECALLER|15|240|1")
    units = list(FORMATS["asterisk-queue-log"](io.StringIO(text), "input", "s", HASHER))
    events = [e for u in units for e in u.events]
    results = []
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        graph = LocalGraph({}, DAY)
        for e in shuffled:
            graph.feed(e, "test", e["event_id"])
        rows = graph.flush().rows
        final = max(rows["call_records"], key=lambda r: r["version"])
        windows = {}
        for r in rows["kpi_windows"]:
            key = (r["level"], r["entity_id"], r["window_s"], r["window_start"])
            if key not in windows or windows[key]["version"] < r["version"]:
                windows[key] = r
        results.append(({k: v for k, v in final.items() if k != "version"},
                         {k: {c: v for c, v in r.items() if c != "version"} for k, r in windows.items()}))
    assert all(r == results[0] for r in results)


def test_realtime_queue_log_table_in_local_time():
    text = ("id,time,callid,queuename,agent,event,data1,data2,data3,data4,data5\n"
            "1,2024-03-13 11:00:00.250000,c5,sales,NONE,ENTERQUEUE,,5550142,1,,\n"
            "2,2024-03-13 11:00:08.000000,c5,sales,PJSIP/2001,CONNECT,8,c5.1,3,,\n"
            "3,2024-03-13 11:01:38.000000,c5,sales,PJSIP/2001,BLINDTRANSFER,600,from-internal,8,90,1\n"
            "4,2024-03-13 11:01:39.000000,c5,support,NONE,ENTERQUEUE,,5550142,1,,\n"
            "5,2024-03-13 11:01:54.000000,c5,support,PJSIP/2003,CONNECT,15,c5.2,4,,\n"
            "6,2024-03-13 11:05:54.000000,c5,support,PJSIP/2003,COMPLETECALLER,15,240,1,,\n")
    records, w, _, _ = through("asterisk-queue-log-realtime", text, timezone="Europe/Berlin")
    (call,) = records.values()
    assert call["arrived_at"] == "2024-03-13T10:00:00.250Z"  # CET is UTC+1
    assert call["segment_agent_ids"] == ["2001", "2003"] and call["segment_talk_ms"] == [90_000, 240_000]
    assert (w[("queue", "support")]["offered"], w[("queue", "support")]["asa_s"]) == (1, 15.0)
    # the single `data` column (parameters joined by |), tab-separated
    tabbed = "time\tcallid\tqueuename\tagent\tevent\tdata\n" + "".join(
        f"{t}\tc6\tq\t{agent}\t{verb}\t{data}\n" for t, agent, verb, data in [
            ("2024-03-13 09:00:00", "NONE", "ENTERQUEUE", "|5550150|1"),
            ("2024-03-13 09:00:04", "PJSIP/2002", "CONNECT", "4|c6.1|2"),
            ("2024-03-13 09:02:04", "PJSIP/2002", "COMPLETEAGENT", "4|120|1")])
    records, _, _, _ = through("asterisk-queue-log-realtime", tabbed)
    assert [(r["wait_ms"], r["talk_ms"]) for r in records.values()] == [(4_000, 120_000)]


def test_realtime_queue_log_refuses_an_unknown_header():
    units = list(FORMATS["asterisk-queue-log-realtime"](io.StringIO("a,b,c\n1,2,3\n"), "input", "s", HASHER))
    assert len(units) == 1 and "expected time,callid,queuename,agent,event" in units[0].error


def test_queue_membership_and_pauses_are_per_queue():
    a = lambda t, queue, verb, *p: f"{t}|x{t}{queue}|{queue}|PJSIP/2006|{verb}|{'|'.join(p)}"
    text = queue_log(a(0, "sales", "ADDMEMBER"), a(0, "support", "ADDMEMBER"),
                     a(3600, "sales", "PAUSE", "coaching"),  # paused in one queue only: still takes support calls
                     a(5400, "sales", "UNPAUSE"),
                     a(7200, "NONE", "PAUSEALL", "lunch"), a(9000, "NONE", "UNPAUSEALL"),  # every queue
                     a(10800, "support", "REMOVEMEMBER"), a(14400, "sales", "PAUSE", "break"),  # now its only queue
                     a(15300, "sales", "UNPAUSE"), a(18000, "sales", "REMOVEMEMBER"),
                     a(20000, "sales", "ADDMEMBER"), a(21800, "NONE", "AGENTLOGOFF"))  # log-off: every queue
    _, w, _, _ = through("asterisk-queue-log", text)
    agent = w[("agent", "2006")]
    assert agent["logged_in_ms"] == (18000 + 1800) * 1000
    assert agent["not_ready_ms"] == (1800 + 900) * 1000


T10 = time_ms("2024-03-18T10:00:00.000Z")


def ctr(contact, method, start, end, queue=None, agent=None, previous=None, initial=None, following=None,
        transfer=None, updated=None, acw_end=None):
    """A contact record (2017-03-10 layout) with times as offsets in seconds from 10:00:00."""
    at = lambda s: None if s is None else format_ms(T10 + s * 1000).replace(".000Z", "Z")
    record = {"AWSContactTraceRecordFormatVersion": "2017-03-10", "Channel": "VOICE", "ContactId": contact,
              "InitialContactId": initial, "PreviousContactId": previous, "NextContactId": following,
              "InitiationMethod": method, "InitiationTimestamp": at(start), "DisconnectTimestamp": at(end),
              "LastUpdateTimestamp": at(updated if updated is not None else end + 60),
              "CustomerEndpoint": {"Address": "+445550100300", "Type": "TELEPHONE_NUMBER"},
              "Queue": None, "Agent": None, "TransferCompletedTimestamp": at(transfer)}
    if queue:
        record["Queue"] = {"Name": queue[0], "EnqueueTimestamp": at(queue[1]), "DequeueTimestamp": at(queue[2])}
    if agent:
        record["Agent"] = {"Username": agent[0], "ConnectedToAgentTimestamp": at(agent[1]), "NumberOfHolds": 0,
                           "CustomerHoldDuration": 0, "AfterContactWorkStartTimestamp": at(end),
                           "AfterContactWorkEndTimestamp": at(acw_end)}
    return json.dumps(record) + "\n"


def test_connect_queued_callback_is_neither_an_abandon_nor_a_second_inbound_call():
    text = (ctr("in-1", "INBOUND", 0, 130, queue=("Sales", 5, 125), following="cb-1")
            + ctr("cb-1", "CALLBACK", 125, 600, queue=("CallbackQueue", 224, 245), agent=("agent-03", 250),
                  previous="in-1", initial="in-1", acw_end=630))
    records, w, _, _ = through("amazon-connect-ctr", text)
    assert (records["in-1"]["outcome"], records["in-1"]["direction"]) == ("callback", "inbound")
    assert (records["cb-1"]["outcome"], records["cb-1"]["direction"]) == ("answered", "callback")
    site = w[("site", "s")]
    assert (site["offered"], site["abandoned"], site["unanswered_other"]) == (1, 0, 0)
    assert (site["callbacks_queued"], site["callbacks_handled"]) == (1, 1)
    assert site["sl_denominator"] == 0  # neither answered nor abandoned
    assert w[("queue", "CallbackQueue")]["offered"] == 0 and w[("queue", "CallbackQueue")]["callbacks_handled"] == 1
    agent = w[("agent", "agent-03")]
    assert (agent["offered"], agent["answered"], agent["handled"], agent["talk_ms"], agent["acw_ms"]) == \
        (0, 0, 1, 350_000, 30_000)


def test_connect_records_of_one_chain_delivered_in_separate_batches():
    """Connect writes each contact's record when that contact ends: the next contact of a queue transfer
    or a callback often comes in a later delivery. Either order gives what one file gives."""
    queue_transfer = [ctr("in-8", "INBOUND", 0, 60, queue=("Billing", 3, 60), following="qt-8"),
                      ctr("qt-8", "QUEUE_TRANSFER", 60, 300, queue=("Tech", 60, 80), agent=("agent-08", 82),
                          previous="in-8", initial="in-8")]  # enqueued in Tech in the second it left Billing
    callback = [ctr("in-9", "INBOUND", 0, 130, queue=("Sales", 5, 125), following="cb-9"),
                ctr("cb-9", "CALLBACK", 125, 600, queue=("CallbackQueue", 224, 245), agent=("agent-09", 250),
                    previous="in-9", initial="in-9")]
    for records in (queue_transfer, callback):
        together = through("amazon-connect-ctr", "".join(records))
        strip = lambda rows: {k: {c: v for c, v in r.items() if c != "version"} for k, r in rows.items()}
        for order in (records, records[::-1]):
            state: dict = {}
            first = through("amazon-connect-ctr", order[0], state=state)
            second = through("amazon-connect-ctr", order[1], state=state)
            assert first[2] == second[2] == []
            assert strip(first[1] | second[1]) == strip(together[1])  # the newest row of every window
            assert {**first[0], **second[0]}.keys() == together[0].keys()
    records, w, _, _ = through("amazon-connect-ctr", "".join(queue_transfer))
    billing, tech = w[("queue", "Billing")], w[("queue", "Tech")]
    assert (billing["unanswered_other"], billing["callbacks_queued"], billing["abandoned"]) == (1, 0, 0)
    assert (tech["answered"], tech["asa_s"], tech["transferred_in"]) == (1, 22.0, 1)
    assert records["in-8"]["stint_outcomes"] == ["transferred", "answered"] and records["in-8"]["talk_ms"] == 218_000


def test_connect_holds_of_a_transfer_leg_and_agents_named_alike_in_both_streams():
    text = (ctr("in-10", "INBOUND", 0, 100, queue=("Sales", 2, 12), agent=("agent-01", 14), following="tr-10",
                transfer=100)
            + ctr("tr-10", "TRANSFER", 100, 500, agent=("agent-02", 104), previous="in-10", initial="in-10")
            .replace('"NumberOfHolds": 0, "CustomerHoldDuration": 0', '"NumberOfHolds": 1, "CustomerHoldDuration": 30'))
    records, w, _, _ = through("amazon-connect-ctr", text)
    assert records["in-10"]["segment_hold_ms"] == [0, 30_000]
    assert (w[("agent", "agent-02")]["hold_ms"], w[("agent", "agent-02")]["talk_ms"]) == (30_000, 366_000)
    # the agent event stream names the agent by the snapshot's Username, as contact records do
    event = {"AWSAccountId": "000000000000", "AgentARN": "arn:aws:connect:eu-west-2:0:instance/i/agent/agent-02-id",
             "EventId": "e1", "EventTimestamp": "2024-03-18T09:00:00.000Z", "EventType": "LOGIN",
             "CurrentAgentSnapshot": {"Configuration": {"Username": "agent-02"}}}
    units = list(FORMATS["amazon-connect-agent-events"](io.StringIO(json.dumps(event)), "input", "s", HASHER))
    assert units[0].events[0]["agent_id"] == "agent-02"


def test_connect_abandon_without_a_next_contact_is_still_an_abandon():
    _, w, _, _ = through("amazon-connect-ctr", ctr("in-2", "INBOUND", 0, 90, queue=("Sales", 5, 90)))
    assert (w[("site", "s")]["offered"], w[("site", "s")]["abandoned"]) == (1, 1)


def test_connect_transfer_to_an_agent_and_a_queue_transfer():
    text = (ctr("in-3", "INBOUND", 0, 100, queue=("Sales", 2, 12), agent=("agent-01", 14), following="tr-3",
                transfer=100, acw_end=110)
            + ctr("tr-3", "TRANSFER", 100, 400, agent=("agent-02", 104), previous="in-3", initial="in-3")
            # a queue transfer by the flow: the customer waits in Sales, is moved to Overflow, answered there
            + (ctr("in-4", "INBOUND", 0, 60, queue=("Sales", 3, 60), following="qt-4")
               + ctr("qt-4", "QUEUE_TRANSFER", 60, 300, queue=("Overflow", 61, 80), agent=("agent-04", 82),
                     previous="in-4", initial="in-4")).replace("+445550100300", "+445550100400"))
    settle = ctr("in-9", "INBOUND", 4 * 86400, 4 * 86400 + 60, queue=("Sales", 4 * 86400 + 1, 4 * 86400 + 5))
    settle = settle.replace("+445550100300", "+445550100999")  # two later contacts move event time on
    records, w, _, _ = through("amazon-connect-ctr", text + settle + settle.replace("in-9", "in-8"), day="2024-03-18")
    assert set(records) == {"in-3", "in-4", "in-9", "in-8"}
    assert records["in-3"]["segment_agent_ids"] == ["agent-01", "agent-02"]
    assert records["in-3"]["segment_talk_ms"] == [86_000, 296_000]
    assert records["in-4"]["stint_outcomes"] == ["transferred", "answered"] and records["in-4"]["wait_ms"] == 79_000
    site = w[("site", "s")]
    assert (site["offered"], site["answered"], site["abandoned"], site["transferred"]) == (2, 2, 0, 1)
    # the same customer's transfer leg is not a repeat call: both calls resolved at first contact (the
    # FCR verdicts are final once a later contact moved event time past the 72 h horizon)
    assert (site["fcr_eligible"], site["fcr_resolved"]) == (2, 2)
    assert (w[("queue", "Sales")]["offered"], w[("queue", "Sales")]["unanswered_other"]) == (2, 1)
    assert w[("agent", "agent-02")]["transferred_in"] == 1 and w[("agent", "agent-02")]["offered"] == 0


def test_outbound_work_counts_for_the_agent_not_as_offered():
    text = ctr("out-5", "OUTBOUND", 0, 300, agent=("agent-05", 20), acw_end=345)
    records, w, _, _ = through("amazon-connect-ctr", text)
    assert records["out-5"]["direction"] == "outbound"
    assert ("site", "s") not in w or w[("site", "s")]["offered"] == 0
    agent = w[("agent", "agent-05")]
    assert (agent["offered"], agent["answered"], agent["handled"], agent["talk_ms"], agent["acw_ms"]) == \
        (0, 0, 1, 280_000, 45_000)


def test_a_redelivered_record_is_a_duplicate_and_a_newer_version_updates_the_call():
    config = KpiConfig(window_sizes_s=(86400,), allowed_lateness_s=600)
    first = ctr("in-6", "INBOUND", 0, 200, queue=("Sales", 2, 12), agent=("agent-06", 14))
    later = ctr("in-7", "INBOUND", 3 * 3600, 3 * 3600 + 60, queue=("Sales", 3 * 3600 + 2, 3 * 3600 + 9),
                agent=("agent-06", 3 * 3600 + 10))  # moves event time three hours on: in-6 is settled
    state: dict = {}
    through("amazon-connect-ctr", first, config, state)
    _, before, _, _ = through("amazon-connect-ctr", later, config, state)
    _, again, dead, counts = through("amazon-connect-ctr", first, config, state)  # delivered again
    assert dead == [] and again == {} and counts["duplicates"] == 4
    # a newer version of the record: the after-call work has ended
    newer = ctr("in-6", "INBOUND", 0, 200, queue=("Sales", 2, 12), agent=("agent-06", 14), updated=400, acw_end=230)
    records, rows, dead, _ = through("amazon-connect-ctr", newer, config, state)
    assert dead == [] and records["in-6"]["acw_ms"] == 30_000
    assert rows[("site", "s")]["offered"] == before[("site", "s")]["offered"] == 2
    assert rows[("site", "s")]["acw_ms"] == 30_000 and rows[("site", "s")]["handled"] == 2


@pytest.mark.parametrize("empty", ["00:00:00", "0:00:00"])
def test_anonymous_bank_empty_times_and_phantoms(empty):
    head = "vru+line,call_id,customer_id,priority,type,date,vru_entry,vru_exit,vru_time,q_start,q_exit,q_time,outcome,ser_start,ser_exit,ser_time,server\n"
    text = head + (f"AA01,1,0,2,NE,2010-08-04,14:47:57,14:48:03,6,14:48:03,14:49:33,90,AGENT,{empty},{empty},0,AGENT-04\n"
                   f"AA01,2,0,2,NE,2010-08-04,15:00:00,15:00:06,6,15:00:06,15:00:46,40,AGENT,15:00:45,15:03:45,180,AGENT-04\n"
                   f"AA01,3,0,2,NE,2010-08-04,15:10:00,15:10:06,6,15:10:06,15:10:16,10,PHANTOM,{empty},{empty},0,NO_SERVER\n")
    records, w, _, counts = through("anonymous-bank", text)
    assert [(r["wait_ms"], r["talk_ms"]) for r in sorted(records.values(), key=lambda r: r["call_id"])] == \
        [(90_000, 0), (40_000, 180_000)]  # the documented wait: q_time, even when service starts a second early
    assert w[("site", "s")]["offered"] == 2  # the phantom is ignored, as documented


def test_a_connect_record_with_one_implausible_time_is_refused_whole():
    text = (ctr("ok-1", "INBOUND", 0, 100, queue=("Sales", 2, 12), agent=("agent-01", 14))
            + ctr("bad-2", "INBOUND", 0, 100, queue=("Sales", 2, 12), agent=("agent-01", 14))
            .replace('"InitiationTimestamp": "2024-03-18T10:00:00Z"', '"InitiationTimestamp": "9999-03-18T10:00:00Z"'))
    units = list(FORMATS["amazon-connect-ctr"](io.StringIO(text), "input", "s", HASHER))
    assert [(u.error is not None, len(u.events)) for u in units] == [(False, 4), (True, 0)]
    assert "refused whole" in units[1].error
