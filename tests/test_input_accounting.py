"""Every input line is accounted for, and memory is bounded for huge lines.

- ``callqa replay --json`` and ``callqa ingest --json`` count what they read (lines, input units), and the
  counts add up: lines = blank + events + dead letters (replay), units = with events + skipped +
  unreadable + with nothing, events made = stored + duplicates + refused (ingest); the dead letters by
  kind of reason are the store's ``dead_letters`` rows of the file, grouped as the store groups them
  (``sinks.queries.DEAD_LETTER_KIND``, the same kinds as ``callqa.metrics.reason_kind``);
- a line (or JSON record) over ``CALLQA_MAX_EVENT_BYTES`` is never held whole (``sources.lines``): one
  dead letter whose payload is its first 4 KiB (caller numbers scrubbed before the cut) and whose reason
  gives its real size; on the Kafka publish path it goes to the dead-letter topic instead of failing the
  run, as does an event Kafka refuses as too large.
"""
from __future__ import annotations

import io
import json
import random
import re
import secrets
import tracemalloc
from collections import Counter

import pytest

import schemas
from callqa.metrics import reason_kind
from sinks.queries import DEAD_LETTER_KIND
from sinks.store import EmbeddedStore
from sources import FORMATS
from sources.lines import KEEP, Oversized, bounded_lines, json_values
from sources.pii import CallerHasher
from tests.conftest import FIXTURES, SHARED_DATA, callqa_env, run_callqa, wait_for

DAY = FIXTURES / "day.jsonl"
PREFIX = schemas.PAYLOAD_PREFIX_BYTES


# ---- the bounded reader ------------------------------------------------------------------------------

def reference_lines(text, limit: int, universal: bool) -> list:
    """What ``bounded_lines`` must give for ``text`` read whole: its lines, a line over ``limit`` bytes
    (without its terminator) as ("over", size, its start)."""
    pattern = r"(\r\n|\r|\n)" if universal else r"(\n)"
    segments = re.split(pattern if isinstance(text, str) else pattern.encode(), text)
    out = []
    for k in range(0, len(segments), 2):
        line, ending = segments[k], segments[k + 1] if k + 1 < len(segments) else segments[k][:0]
        if not line and not ending:
            continue
        if not universal and ending and line[-1:] in ("\r", b"\r"):
            line, ending = line[:-1], line[-1:] + ending
        size = len(line.encode() if isinstance(line, str) else line)
        out.append(line + ending if size <= limit else ("over", size, line[:40]))
    return out


def test_lines_are_cut_as_a_whole_read_cuts_them_wherever_the_pieces_end():
    rng = random.Random(7)
    for _ in range(3000):
        universal = rng.random() < 0.5
        text = "".join(rng.choice(["a", "é", "\r", "\n", "\r\n", "b" * 7, "€"]) for _ in range(rng.randrange(0, 60)))
        if rng.random() < 0.5:
            text = text.encode()
        limit = rng.randrange(0, 14)
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randrange(0, 10))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        got = [("over", line.size, line.prefix[:40]) if isinstance(line, Oversized) else line
               for line in bounded_lines(pieces, limit, universal)]
        assert got == reference_lines(text, limit, universal), (text, pieces, limit, universal)


def test_the_limit_is_in_bytes_without_the_terminator():
    limit = 1024
    lines = [b"a" * limit + b"\r\n", b"a" * (limit + 1) + b"\n", "é" * 512 + "\n", "é" * 512 + "a\n"]
    got = [list(bounded_lines([line], limit)) for line in lines]
    assert got[0] == [lines[0]] and got[2] == [lines[2]]
    assert isinstance(got[1][0], Oversized) and got[1][0].size == limit + 1
    assert isinstance(got[3][0], Oversized) and got[3][0].size == limit + 1  # 1025 bytes in 513 characters


def test_a_huge_line_is_never_held_whole():
    """64 MiB without a newline, then normal lines: at most the limit and a piece are held at once."""
    piece = b"x" * (1 << 20)

    def pieces():
        yield b'{"a": 1}\n'
        for _ in range(64):
            yield piece
        yield b'\n{"b": 2}\n'

    tracemalloc.start()
    try:
        got = list(bounded_lines(pieces(), limit=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got[0] == b'{"a": 1}\n' and got[2] == b'{"b": 2}\n'
    assert got[1].size == 64 << 20 and got[1].prefix == b"x" * KEEP and got[1].payload() == b"x" * PREFIX
    assert peak < 6 << 20, peak  # the limit (1 MiB), a piece, and what they make: not 64 MiB


def test_json_records_are_cut_by_structure_and_one_over_the_limit_is_oversized():
    rng = random.Random(3)
    for _ in range(300):
        records = [{"k": rng.choice(['a\\"b', "]", "{", "}", ",", "x" * rng.randrange(40)]), "n": [1, {"d": "\\"}]}
                   for _ in range(rng.randrange(0, 6))]
        text = json.dumps(records, indent=rng.choice([None, 2]))
        step = rng.randrange(1, 30)
        got = list(json_values([text[i:i + step] for i in range(0, len(text), step)], limit=10**6))
        assert [json.loads(record) for record, complete in got] == records and all(c for _, c in got)
    big = '[{"a": 1}, {"a": "' + "x" * 5000 + '"}, {"z": "]"}]'
    first, over, last = [record for record, _ in json_values([big[i:i + 100] for i in range(0, len(big), 100)], limit=2000)]
    assert (first, last) == ('{"a": 1}', '{"z": "]"}') and over.size == 5009 and over.prefix.startswith('{"a": "xxx')
    assert list(json_values(['[{"a": 1}, {"a": "x'])) == [('{"a": 1}', True), ('{"a": "x', False)]


@pytest.mark.shared_data
@pytest.mark.parametrize("layout", ["lines", "array", "array of lines", "pretty array", "pretty object"])
def test_connect_files_of_every_layout_are_read_record_by_record(layout):
    """JSON Lines, an array (on one line over the limit, a record a line, pretty-printed), one pretty-printed
    object: the same records; a record over the limit is one unreadable unit (its size in the reason), the
    others are read."""
    hasher = CallerHasher("k")
    record = json.loads((SHARED_DATA / "amazon-connect" / "ctr-record.json").read_text())
    records = [dict(record, ContactId=f"c{i}") for i in range(3)]
    records[1]["Attributes"] = {"note": "y" * 3000}  # over a limit of 2048
    if layout == "pretty object":
        records = records[1:2]
    text = {"lines": "\n".join(json.dumps(r) for r in records) + "\n", "array": json.dumps(records),
            "array of lines": "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n",
            "pretty array": json.dumps(records, indent=2), "pretty object": json.dumps(records[0], indent=4)}[layout]
    saved = schemas.MAX_EVENT_BYTES
    schemas.MAX_EVENT_BYTES = 2048
    try:
        units = list(FORMATS["amazon-connect-ctr"]([text[i:i + 500] for i in range(0, len(text), 500)], "f", "s", hasher))
    finally:
        schemas.MAX_EVENT_BYTES = saved
    over = [u for u in units if u.size is not None]
    assert len(units) == len(records) and len(over) == 1
    assert reason_kind(over[0].error) == "too large" and f"event of {over[0].size:,} bytes" in over[0].error
    if layout in ("lines", "array", "array of lines"):
        assert over[0].size == len(json.dumps(records[1])) and over[0].raw == json.dumps(records[1])[:KEEP]
    if layout == "pretty object":
        assert over[0].size == len(text) and over[0].position == "f:record 1"
    assert sorted(u.position for u in units if u.events) == sorted(u.position for u in units if u.size is None)


# ---- replay: the counts add up and are the store's -----------------------------------------------------

def store_rows(data_dir, origin: str) -> tuple[dict, list, int]:
    """(dead letters of ``origin`` by the store's kind of reason, their (position, reason, payload), raw events)."""
    store = EmbeddedStore(data_dir / "chdb")
    try:
        kinds = dict(store.query(f"SELECT {DEAD_LETTER_KIND} AS kind, count() FROM dead_letters FINAL "
                                 f"WHERE origin = '{origin}' GROUP BY kind")[1])
        rows = store.query(f"SELECT position, reason, payload FROM dead_letters FINAL WHERE origin = '{origin}' "
                           "ORDER BY position")[1]
        raw = store.query("SELECT count() FROM raw_events FINAL")[1][0][0]
        return kinds, rows, raw
    finally:
        store.close()


def test_replay_accounts_for_every_line_as_the_store_holds_it(tmp_path):
    """The day fixture (a truncated line, a schema-invalid event, a repeated event) with blank lines, a
    non-object, an unknown type, a late event and a line over the limit mixed in: lines = blank + events +
    dead letters, duplicates among the events are not stored again, and the dead letters by reason are
    the store's rows of the file, grouped the way the store groups them."""
    lines = DAY.read_text().splitlines()
    event = json.loads(lines[0])
    huge = json.dumps(event | {"event_id": "huge", "call_id": "x" * 10_000})
    late = json.dumps(event | {"event_id": "late", "call_id": "late-call", "event_time": "2024-03-01T00:00:00.000Z"})
    extra = ["", "[1, 2]", json.dumps(event | {"event_type": "call.exploded"}), "   ", huge, late, lines[3]]
    mixed = lines[:20] + extra + lines[20:] + [""]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(mixed) + "\n")
    env = dict(CALLQA_MAX_EVENT_BYTES="2048", CALLQA_TOPIC_PARTITIONS="1")  # one partition: one watermark
    done = run_callqa(["replay", "--json", str(path)], callqa_env(tmp_path, **env))
    assert done.returncode == 0, done.stderr[-2000:]
    n = json.loads(done.stdout)
    assert n["lines"] == len(mixed) and n["blank_lines"] == 3
    assert n["lines"] == n["blank_lines"] + n["events"] + n["dead_letters"]
    assert n["dead_letters_by_reason"] == {"not valid JSON": 1, "schema": 1, "unknown event_type": 1,
                                           "event must be a JSON object": 1, "too large": 1, "late event": 1}
    assert n["duplicates"] == 2  # the fixture's repeated event, and line 4 again
    kinds, rows, raw = store_rows(tmp_path / "data", str(path))
    assert kinds == n["dead_letters_by_reason"] and len(rows) == n["dead_letters"]
    assert raw == n["events"] - n["duplicates"]  # each new event stored once
    (too_large,) = [r for r in rows if "CALLQA_MAX_EVENT_BYTES" in r[1]]
    assert too_large[0] == str(20 + extra.index(huge) + 1)
    assert f"event of {len(huge):,} bytes" in too_large[1] and too_large[2] == huge[:PREFIX]
    human = run_callqa(["replay", str(path)], callqa_env(tmp_path / "again", **env))
    assert (f"{n['events']} events ({n['duplicates']} of them duplicates), 6 dead letters (event must be a JSON object 1, "
            f"late event 1, not valid JSON 1, schema 1, too large 1, unknown event_type 1), 3 blank lines: "
            f"{len(mixed)} lines read") in human.stdout


def test_the_python_and_sql_reason_kinds_agree_on_every_dead_letter_reason(tmp_path):
    """One classification: the store's grouping (SQL) and the metrics' (Python) give each reason the same kind."""
    reasons = ["late event: 2024-03-01T00:00:00.000Z is more than the allowed lateness (3600 s) behind x",
               "not valid JSON: unexpected end of data", "unknown event_type 'x'; expected one of a, b",
               "event must be a JSON object, got list", schemas.too_large(10_000, PREFIX), schemas.too_large(10_000),
               schemas.too_large(3_000_000, PREFIX, "Kafka (MSG_SIZE_TOO_LARGE)"),
               "call.abandoned: data.stage must be one of ['ivr', 'queue', 'ringing']",
               "unreadable queue_log entry: 'abc' is not a number", "embedded ClickHouse refused the row"]
    store = EmbeddedStore(tmp_path / "chdb")
    try:
        got = [(r, store.query(f"SELECT {DEAD_LETTER_KIND} FROM (SELECT {sql_string(r)} AS reason)")[1][0][0])
               for r in reasons]
    finally:
        store.close()
    assert [(r, reason_kind(r)) for r in reasons] == got
    assert [reason_kind(r) for r in reasons[4:7]] == ["too large"] * 3


def sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---- ingest: units, events and dead letters add up and are the store's ---------------------------------

TABLE_HEAD = "uid,date_time,callid,queue_name,type,event,param1,param2,param3,entpos,expos,htime,ttime,time"
T0 = 1_709_546_400  # 2024-03-04 10:00:00 UTC
NUMBER = "+447700900123"


def table_row(uid: int, t: int, callid: str, queue: str, agent: str, verb: str, p1: str = "", p2: str = "", p3: str = "",
              ttime: int = 0) -> str:
    return f"{uid},{t},{callid},{queue},{agent},{verb},{p1},{p2},{p3},0,0,0,{ttime},x"


def ingest_file(tmp_path):
    """A PBXware table export (streamed in file order): calls, a skipped verb, a repeated row (its events
    are duplicates), unreadable rows, a row over the limit with a caller number across the 4 KiB cut, and
    an outbound call answered long before it ended (OUTANSWER makes two events: the answer is a late event,
    refused; the end is kept)."""
    # its caller number starts 5 bytes before the 4 KiB cut: cut first, "+4477" would be left in clear
    over = table_row(90, T0 + 5, "c-over", "support", "NONE", "ENTERQUEUE", "x" * (PREFIX - 50) + NUMBER + "y" * 6000)
    assert over.index(NUMBER) < PREFIX < over.index(NUMBER) + len(NUMBER)
    rows = [
        table_row(1, T0, "c1", "support", "NONE", "ENTERQUEUE", NUMBER),
        table_row(2, T0 + 1, "NONE", "NONE", "NONE", "QUEUESTART"),
        table_row(3, T0 + 20, "c1", "support", "SIP/2001", "CONNECT", "20", "c1.1", "3"),
        "garbage,row",
        table_row(3, T0 + 20, "c1", "support", "SIP/2001", "CONNECT", "20", "c1.1", "3"),  # repeated: duplicates
        over,
        table_row(4, T0 + 3 * 3600, "c9", "support", "NONE", "ENTERQUEUE", "555"),  # two calls: the watermark moves on
        table_row(8, T0 + 3 * 3600, "c8", "support", "NONE", "ENTERQUEUE", "556"),
        table_row(5, T0 + 3 * 3600 + 60, "c-out", "NONE", "SIP/2002", "OUTANSWER", NUMBER, "COMPLETEAGENT", "", ttime=2 * 3600),
        table_row(6, T0 + 60, "c1", "support", "SIP/2001", "COMPLETEAGENT", "20", "40", "1"),
        table_row(7, T0 + 3 * 3600 + 90, "c9", "support", "SIP/2003", "CONNECT", "5", "c9.1", "abc"),  # not a number
    ]
    path = tmp_path / "export.csv"
    path.write_text("\n".join([TABLE_HEAD, *rows]) + "\n")
    return path, rows, over


def test_ingest_accounts_for_every_unit_and_event_as_the_store_holds_it(tmp_path):
    path, rows, over = ingest_file(tmp_path)
    env = callqa_env(tmp_path, CALLQA_MAX_EVENT_BYTES="4096", CALLQA_TOPIC_PARTITIONS="1")
    done = run_callqa(["ingest", "--json", "--format", "asterisk-queue-log-table", str(path)], env)
    assert done.returncode == 0, done.stderr[-2000:]
    n = json.loads(done.stdout)
    assert n["units"] == len(rows)
    assert n["units"] == n["units_with_events"] + sum(n["skipped"].values()) + n["unreadable"] + n["units_without_event"]
    assert (n["units_with_events"], n["skipped"], n["unreadable"]) == (7, {"QUEUESTART": 1}, 3)
    assert n["events_made"] == sum(n["events"].values()) == n["events_stored"] + n["duplicates"] + n["events_refused"]
    assert (n["duplicates"], n["events_refused"]) == (2, 1)  # the repeated CONNECT; the late answer
    assert n["dead_letters"] == n["unreadable"] + n["units_partly_refused"] + n["events_refused"] == 4
    assert n["dead_letters_by_reason"] == {"source": 2, "too large": 1, "late event": 1}
    kinds, dead, raw = store_rows(tmp_path / "data", str(path))
    assert kinds == n["dead_letters_by_reason"] and len(dead) == n["dead_letters"] and raw == n["events_stored"]
    late = [d for d in dead if reason_kind(d[1]) == "late event"]
    assert [d[0] for d in late] == ["export.csv:10#site-1:aqlt:5:answered"]  # its own dead letter: the line's event
    (too_large,) = [d for d in dead if reason_kind(d[1]) == "too large"]
    assert too_large[0] == "export.csv:7" and f"event of {len(over):,} bytes" in too_large[1]
    # its payload: the first 4 KiB, the caller number across the cut hashed whole (scrubbed, then cut)
    payload, digits = too_large[2], NUMBER[1:]
    assert len(payload.encode()) == PREFIX and payload.startswith("90,") and "c-over,support,NONE,ENTERQUEUE,x" in payload
    assert not any(digits[i:i + 4] in payload for i in range(len(digits) - 3)), payload[-60:]
    human = run_callqa(["ingest", "--format", "asterisk-queue-log-table", str(path)],
                       callqa_env(tmp_path / "again", CALLQA_MAX_EVENT_BYTES="4096", CALLQA_TOPIC_PARTITIONS="1"))
    assert (f"export.csv: 11 input units: 7 with events, 1 skipped (no canonical event), 3 unreadable; "
            f"{n['events_made']} events made: {n['events_stored']} stored, 2 duplicates, 1 refused; 4 dead letters "
            "(late event 1, source 2, too large 1)") in human.stdout


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_reader_makes_a_line_over_the_limit_one_dead_letter_and_reads_on(fmt):
    """A line over the limit among valid ones (and as the header of a CSV format): one unit, its start and
    size; the lines after it are read as if it were not there."""
    from tests.fuzz import valid_source

    source = valid_source(fmt, 40, 1)
    huge = "z" * 5000
    hasher = CallerHasher("k")
    saved = schemas.MAX_EVENT_BYTES
    schemas.MAX_EVENT_BYTES = 2048
    try:
        read = lambda lines: list(FORMATS[fmt](io.StringIO(source.text(lines)), "f", "s", hasher,
                                               **({"timezone": "Europe/Berlin"} if "realtime" in fmt else {})))
        clean = read(source.lines)
        middle = len(source.lines) // 2
        mixed = read(source.lines[:middle] + [huge] + source.lines[middle:])
        if source.head:
            headless = list(FORMATS[fmt](io.StringIO(huge + "\n" + source.text()), "f", "s", hasher,
                                         **({"timezone": "Europe/Berlin"} if "realtime" in fmt else {})))
            assert len(headless) == 1 and headless[0].size == 5000 and headless[0].position == "f:1"
    finally:
        schemas.MAX_EVENT_BYTES = saved
    over = [u for u in mixed if u.size is not None]
    assert len(over) == 1 and over[0].size == 5000 and over[0].raw.startswith("z" * 100)
    assert over[0].position == f"f:{len(source.head) + middle + 1}"
    assert [u.events for u in mixed if u.size is None] == [u.events for u in clean]


# ---- the Kafka publish path ----------------------------------------------------------------------------

def consume_all(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[bytes]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{secrets.token_hex(4)}",
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 10_000_000})
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        wait_for(lambda: got.extend(m.value() for m in consumer.consume(100, 1) if not m.error()) or len(got) >= n,
                 timeout, what=f"{n} messages on {topic}")
    finally:
        consumer.close()
    return got


@pytest.mark.services
def test_replay_to_kafka_dead_letters_what_is_too_large_and_accounts_for_every_line(kafka, tmp_path):
    """The reviewer's case: a 2 MB line among the day's lines made `callqa replay` fail with
    MSG_SIZE_TOO_LARGE. Now it is a dead letter on the dead-letter topic (its first 4 KiB), and so is an
    event within CALLQA_MAX_EVENT_BYTES that the broker refuses (over the topic's max.message.bytes); the
    rest is published; lines = blank + published + dead letters; the sink stores those dead letters."""
    from tests.test_worker_kafka import Worker, lag

    lines = DAY.read_text().splitlines()
    event = json.loads(lines[0])
    huge = json.dumps(event | {"event_id": "huge", "call_id": "x" * 2_000_000})
    incompressible = json.dumps(event | {"event_id": "broker-refuses", "call_id": secrets.token_hex(700_000)})
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka)
    from confluent_kafka.admin import AdminClient, NewTopic

    # an events topic made beforehand with the broker's default limit (1 MiB): callqa keeps it as it is
    admin = AdminClient({"bootstrap.servers": kafka})  # held until the answer: a freed client drops it
    made = admin.create_topics(
        [NewTopic(env["CALLQA_TOPIC_EVENTS"], num_partitions=4, replication_factor=1,
                  config={"max.message.bytes": str(1 << 20)})])
    made[env["CALLQA_TOPIC_EVENTS"]].result(30)
    files = {}
    for name, big, limit in (("huge.jsonl", huge, None), ("refused.jsonl", incompressible, "2000000")):
        path = tmp_path / name
        path.write_text("\n".join(lines[:30] + [big, ""] + lines[30:]) + "\n")
        run_env = env | ({"CALLQA_MAX_EVENT_BYTES": limit} if limit else {})
        done = run_callqa(["replay", "--json", str(path)], run_env, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        n = json.loads(done.stdout)
        assert n == {"lines": len(lines) + 2, "blank_lines": 1, "events_published": len(lines), "dead_letters": 1,
                     "dead_letters_by_reason": {"too large": 1}}
        files[name] = (path, big, n)
    human = run_callqa(["replay", str(files["huge.jsonl"][0])], env, timeout=300)
    assert (f"published {len(lines)} events to {env['CALLQA_TOPIC_EVENTS']}, 1 dead letters to "
            f"{env['CALLQA_TOPIC_DEAD_LETTERS']} (too large 1), 1 blank lines: {len(lines) + 2} lines read") in human.stdout
    dead = [json.loads(m) for m in consume_all(kafka, env["CALLQA_TOPIC_DEAD_LETTERS"], 3)]
    assert len(dead) == 3 and all(len(d["payload"].encode()) <= PREFIX for d in dead)
    by_origin = Counter(d["origin"] for d in dead)
    assert by_origin == {str(files["huge.jsonl"][0]): 2, str(files["refused.jsonl"][0]): 1}
    for d in dead:
        big = files["huge.jsonl" if d["origin"].endswith("huge.jsonl") else "refused.jsonl"][1]
        assert d["position"] == "31" and d["payload"] == big[:PREFIX] and f"event of {len(big):,} bytes" in d["reason"]
    assert "MSG_SIZE_TOO_LARGE" in next(d["reason"] for d in dead if d["origin"].endswith("refused.jsonl"))
    # the sink stores them: the store's dead letters of each file are what replay counted
    sink = Worker(env, tmp_path / "sink.log", ("sink",))
    try:
        wait_for(lambda: lag(kafka, f"{env['CALLQA_APP_ID']}-sink", [env["CALLQA_TOPIC_DEAD_LETTERS"]]) == 0, 120,
                 what="the sink caught up")
    finally:
        sink.stop()
    for path, _, n in files.values():
        kinds, rows, _ = store_rows(tmp_path / "data", str(path))
        assert kinds == n["dead_letters_by_reason"] and len(rows) == n["dead_letters"]


@pytest.mark.services
def test_ingest_to_kafka_dead_letters_a_line_over_the_limit(kafka, tmp_path):
    path, rows, over = ingest_file(tmp_path)
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CALLQA_MAX_EVENT_BYTES="4096")
    done = run_callqa(["ingest", "--json", "--format", "asterisk-queue-log-table", str(path)], env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    n = json.loads(done.stdout)
    assert n["units"] == len(rows) and n["unreadable"] == 3
    assert n["events_made"] == n["events_published"] + n["events_refused"] and n["events_refused"] == 0
    assert n["dead_letters"] == 3 and n["dead_letters_by_reason"] == {"source": 2, "too large": 1}
    dead = [json.loads(m) for m in consume_all(kafka, env["CALLQA_TOPIC_DEAD_LETTERS"], 3)]
    (too_large,) = [d for d in dead if d["position"] == "export.csv:7"]
    assert len(too_large["payload"].encode()) == PREFIX and NUMBER[1:8] not in too_large["payload"]


def test_the_worker_keeps_the_first_4_kib_of_an_event_over_the_limit_from_another_producer():
    """A message on the events topic that callqa's publisher did not put there (it never sends one over
    CALLQA_MAX_EVENT_BYTES) is a dead letter of the worker's events stage: its payload bounded too."""
    from callqa.core.graph import Context, make_stage
    from callqa.core.kpi import KpiConfig
    from callqa.core.sampling import PolicyConfig
    from callqa.partitions import partition_of

    stage = make_stage("events", Context(KpiConfig(), PolicyConfig(), b"k", 1, partition_of, {}), 0, {})
    huge = b'{"event_type": "call.queued", "x": "' + b"y" * (schemas.MAX_EVENT_BYTES + 10) + b'"}'
    [dead] = stage.process([(0, huge, "events/0", "0"), (1, b"{not json", "events/0", "1")]).rows["dead_letters"][:1]
    assert len(dead["payload"]) == schemas.PAYLOAD_PREFIX_BYTES and huge.decode().startswith(dead["payload"])
    assert dead["reason"].startswith(f"event of {len(huge):,} bytes")
