"""Caller numbers (and the bank's customer ids) never reach the store in clear: every shared real file is
ingested and every column of every table is searched for them."""
from __future__ import annotations

import csv
import json
import re

import pytest

from sinks.store import EmbeddedStore
from tests.conftest import SHARED_DATA

BANK = SHARED_DATA / "anonymous-bank" / "calls-august.csv"
ASTERISK = SHARED_DATA / "asterisk" / "queue_log.csv"
CTR = SHARED_DATA / "amazon-connect" / "ctr-record.json"


def asterisk_numbers() -> set[str]:
    rows = csv.DictReader(ASTERISK.open())
    return {v.lstrip("+") for r in rows for v in (r["param1"], r["param2"], r["param3"]) if re.fullmatch(r"\+?\d{7,}", v)}


def bank_customers() -> set[str]:
    return {r["customer_id"] for r in csv.DictReader(BANK.open()) if len(r["customer_id"]) >= 6}


def ctr_numbers() -> set[str]:
    return {json.loads(CTR.read_text())["CustomerEndpoint"]["Address"].lstrip("+")}


def stored_numbers(data_dir) -> set[str]:
    """Every run of 6 or more digits standing on its own (not inside a hash or an id) in any text column
    of any table."""
    store = EmbeddedStore(data_dir / "chdb")
    tokens: set[str] = set()
    try:
        columns = store.query("SELECT table, name FROM system.columns WHERE database = currentDatabase() "
                              "AND type LIKE '%String%'")[1]
        for table, column in columns:
            for (value,) in store.query(f"SELECT DISTINCT toString({column}) FROM {table}")[1]:
                tokens |= set(NUMBER.findall(value or ""))
    finally:
        store.close()
    return tokens


NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?(\d{6,})(?![0-9A-Za-z])")


@pytest.mark.parametrize("fmt,path,site,numbers", [
    ("asterisk-queue-log-table", ASTERISK, "pbx", asterisk_numbers),
    ("anonymous-bank", BANK, "bank", bank_customers),
    ("amazon-connect-ctr", CTR, "connect", ctr_numbers)])
def test_no_caller_number_of_a_real_file_is_stored(ingested, fmt, path, site, numbers):
    if not path.exists():
        pytest.skip(f"{path} is not here (a clone without ../shared)")
    data_dir, done = ingested(fmt, path, site)
    wanted = numbers()
    assert wanted, "the file has caller numbers to look for"
    stored = stored_numbers(data_dir) | set(NUMBER.findall(done.stdout + done.stderr))
    leaked = sorted(wanted & stored)
    assert leaked == [], f"{len(leaked)} of {len(wanted)} numbers stored in clear, e.g. {leaked[:3]}"


def test_unreadable_lines_keep_no_number_in_the_dead_letters(tmp_path):
    from tests.conftest import callqa_env, run_callqa

    log = tmp_path / "queue_log"
    log.write_text("1710324000|c1|sales|NONE|ENTERQUEUE||5550142|1\n"
                   "1710324008|c1|sales|PJSIP/2001|CONNECT|8|c1.2|3\n"
                   "17103240xx|c2|sales|NONE|ENTERQUEUE||+447700900123|1\n"  # unreadable: not an epoch
                   "1710324098|c1|sales|PJSIP/2001|COMPLETECALLER|8|90|1\n")
    done = run_callqa(["ingest", "--format", "asterisk-queue-log", str(log)], callqa_env(tmp_path))
    assert done.returncode == 0 and "1 unreadable" in done.stderr
    assert "447700900123" not in done.stderr and "5550142" not in done.stdout + done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        (payload,), = store.query("SELECT payload FROM dead_letters FINAL")[1]
    finally:
        store.close()
    assert "447700900123" not in payload and payload.startswith("17103240xx|c2|sales|NONE|ENTERQUEUE||#")
    assert stored_numbers(tmp_path / "data") & {"447700900123", "5550142"} == set()


def test_a_line_that_opens_with_a_caller_number_keeps_none_however_it_is_refused(tmp_path):
    """Only a queue_log epoch (digits before the first ``|``) opens a dead letter as it was: a line that opens
    with a caller number keeps it hashed, whether unreadable or over CALLQA_MAX_EVENT_BYTES (its 4 KiB kept)."""
    from tests.conftest import callqa_env, run_callqa

    log = tmp_path / "queue_log"
    log.write_text("1710324000|c1|sales|NONE|ENTERQUEUE||5550142|1\n"
                   "447700900123|c2|sales|NONE|ENTERQUEUE||x|1\n"  # unreadable: a number, not an epoch
                   "07700900124|c3|sales|NONE|ENTERQUEUE||x|1|" + "y" * 5000 + "\n"  # over the limit
                   "1709542812.4915112345678|c5|sales|NONE|ENTERQUEUE||x|1\n"  # digits after an epoch's dot
                   "1710324010|c6|sales|NONE|ABANDON|+4915112345670|2|30\n"  # its reason quotes the number
                   "1710324098|c1|sales|PJSIP/2001|ABANDON|1|1|90\n")
    done = run_callqa(["ingest", "--format", "asterisk-queue-log", str(log)], callqa_env(tmp_path, CALLQA_MAX_EVENT_BYTES="2048"))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        dead = store.query("SELECT payload, reason FROM dead_letters FINAL ORDER BY position")[1]
    finally:
        store.close()
    assert len(dead) == 4 and all(p.startswith("#") for p, _ in dead[:3]), [p[:40] for p, _ in dead]
    numbers = {"447700900123", "07700900124", "7700900124", "4915112345678", "4915112345670"}
    assert stored_numbers(tmp_path / "data") & numbers == set()
    assert not any(n in done.stdout + done.stderr for n in numbers), done.stderr  # the reasons printed


def test_members_reached_at_a_phone_number_and_pause_reasons_are_hashed(tmp_path):
    from tests.conftest import callqa_env, run_callqa

    log = tmp_path / "queue_log"
    log.write_text("1710324000|c1|support|NONE|ENTERQUEUE||5550100|1\n"
                   "1710324005|c1|support|Local/4915112345678@from-queue/n|CONNECT|5|c1.2|1\n"
                   "1710324058|c1|support|Local/4915112345678@from-queue/n|COMPLETECALLER|5|53|1\n"
                   "1710324100|NONE|support|Agent/2002|PAUSE|call me on 4915112345679\n")
    done = run_callqa(["ingest", "--format", "asterisk-queue-log", str(log)], callqa_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert stored_numbers(tmp_path / "data") & {"4915112345678", "4915112345679"} == set()
    store = EmbeddedStore(tmp_path / "data" / "chdb")
    try:
        agents = {a for (a,) in store.query("SELECT DISTINCT entity_id FROM kpi_windows FINAL WHERE level = 'agent'")[1]}
    finally:
        store.close()
    assert len(agents) == 1 and next(iter(agents)).startswith("phone-")  # 2002 has no interval yet


def test_only_real_dates_are_kept_by_the_scrub():
    """Dates and times are kept in an unreadable line as they are; a number that merely has a date's
    shape at its start (``0151-12-34567``) is a number, and goes."""
    from sources.pii import CallerHasher

    scrub = CallerHasher("k").scrub
    assert scrub("at 2024-03-04 09:00:00 and 2024-03-04T09:00:00.000Z") == "at 2024-03-04 09:00:00 and 2024-03-04T09:00:00.000Z"
    assert "34567" not in scrub("call 0151-12-34567 now") and "0151" not in scrub("call 0151-12-34567 now")
