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
