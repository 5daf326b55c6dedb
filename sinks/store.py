"""Stores: a ClickHouse server (native protocol, clickhouse-driver) or the embedded chdb engine.

Both take the same DDL and SQL. Rows are dicts keyed by column name, timestamps as the event
contract's text (``2024-03-04T09:15:02.120Z``); each store converts them for its transport.
"""
from __future__ import annotations

import itertools
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson


class StoreError(RuntimeError):
    """The store could not be reached or refused a statement."""


class StatementRefused(StoreError):
    """The store refused the statement itself, whatever its rows (no such table or database, no right to
    write, a read-only store), or for a reason not known to be about rows. Nothing to dead-letter: fix and
    restart."""


class StoreUnavailable(StoreError):
    """The store cannot take the statement now, for a reason that passes: it does not answer, or it
    answers with one of ``TRANSIENT`` (disk full, memory, too many parts, timeouts). Writers retry."""


class StoreUnreachable(StoreUnavailable):
    """The ClickHouse server did not answer."""


# ClickHouse error codes (src/Common/ErrorCodes.cpp) of a store that is short of a resource, not of a
# statement or a row that is wrong: the same insert succeeds once the resource is back.
TRANSIENT = {
    159: "TIMEOUT_EXCEEDED", 173: "CANNOT_ALLOCATE_MEMORY", 202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT", 210: "NETWORK_ERROR", 241: "MEMORY_LIMIT_EXCEEDED", 242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE", 252: "TOO_MANY_PARTS",
}
# Codes of a refusal of what a row holds (src/Common/ErrorCodes.cpp): a value that does not parse or fit its
# column, a field the table lacks. Any other refusal is taken as one of the statement (``StatementRefused``):
# nothing is dead-lettered for it, the sink stops and its input is read again once it is fixed.
ROW = {6: "CANNOT_PARSE_TEXT", 8: "THERE_IS_NO_COLUMN", 16: "NO_SUCH_COLUMN_IN_TABLE", 25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
       26: "CANNOT_PARSE_QUOTED_STRING", 27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED", 32: "ATTEMPT_TO_READ_AFTER_EOF",
       38: "CANNOT_PARSE_DATE", 41: "CANNOT_PARSE_DATETIME", 53: "TYPE_MISMATCH", 69: "ARGUMENT_OUT_OF_BOUND",
       70: "CANNOT_CONVERT_TYPE", 72: "CANNOT_PARSE_NUMBER", 117: "INCORRECT_DATA", 131: "TOO_LARGE_STRING_SIZE",
       321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", 349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
       377: "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", 457: "ILLEGAL_TYPE_OF_COLUMN_FOR_FILTER"}
_CODE = re.compile(r"Code: (\d+)")


def _refusal(message: str, code: int | None = None) -> StoreError:
    """The error for a statement the store refused: ``StoreUnavailable`` when the cause passes (a
    ``TRANSIENT`` code, or the disk is full), ``StoreError`` for a ``ROW`` code (what its rows hold: a
    wrong type, an unknown field, a value out of range), else ``StatementRefused`` (an unknown code too:
    never dead-letter rows for a reason not known to be theirs)."""
    if code is None:
        found = _CODE.search(message)
        code = int(found.group(1)) if found else None
    if code in TRANSIENT or "No space left on device" in message:
        return StoreUnavailable(message)
    return (StoreError if code in ROW else StatementRefused)(message)


class Store(Protocol):
    def execute(self, sql: str) -> None: ...
    def query(self, sql: str) -> tuple[list[str], list[tuple]]: ...
    def insert(self, table: str, rows: list[dict]) -> None: ...
    def read_only(self) -> None: ...
    def close(self) -> None: ...


class EmbeddedStore:
    """chdb (the ClickHouse engine in-process) with its data under ``path``. One per process."""

    def __init__(self, path: Path):
        from chdb import session

        try:  # the data folder (CALLQA_DATA_DIR) is the user's to fix: say so in one line, not a traceback
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"embedded ClickHouse: cannot create its folder {path} ({exc.strerror or exc}): "
                             "check CALLQA_DATA_DIR") from None
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise StoreError(f"embedded ClickHouse: its folder {path} is not writable: check CALLQA_DATA_DIR")
        self.path = path
        try:
            self._session = session.Session(str(path))
        except Exception as exc:  # chdb's own errors, e.g. the data folder locked by another process
            raise StoreError(f"embedded ClickHouse at {path} cannot be opened ({str(exc).splitlines()[0][:200]}); "
                             "one process at a time uses it: is another callqa command (run, sink, replay) "
                             "using this data folder?") from exc

    def execute(self, sql: str) -> None:
        self._run(sql, "CSV")

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        result = orjson.loads(self._run(sql, "JSONCompact").bytes() or b'{"meta":[],"data":[]}')
        return [m["name"] for m in result["meta"]], [tuple(r) for r in result["data"]]

    def formatted(self, sql: str) -> bytes:
        """The output of a query that names its own FORMAT, as ClickHouse writes it."""
        return self._run(sql, "CSV").bytes()

    def read_only(self) -> None:
        """From now on only reads: ClickHouse's ``readonly = 1`` (no DDL, no writes, no table functions,
        no settings changes), for the rest of the session."""
        self._run("SET readonly = 1", "CSV")

    def insert(self, table: str, rows: list[dict]) -> None:
        if rows:  # serialized at once: an array less its brackets, objects separated by commas, which JSONEachRow
            body = orjson.dumps(rows)[1:-1].decode()  # reads as it reads lines (it ignores a comma after an object)
            self._run(f"INSERT INTO {table} SETTINGS date_time_input_format='best_effort', "
                      f"input_format_skip_unknown_fields=0 FORMAT JSONEachRow\n{body}", "CSV")  # an unknown field: refused

    def _run(self, sql: str, fmt: str):
        try:
            return self._session.query(sql, fmt)
        except Exception as exc:  # chdb raises its own RuntimeError subclasses
            raise _refusal(f"embedded ClickHouse: {exc}") from exc

    def close(self) -> None:
        self._session.close()


class ServerStore:
    """A ClickHouse server over the native protocol."""

    def __init__(self, url: str):
        from clickhouse_driver import Client

        try:  # the URL's query too: secure=True, ca_certs=..., verify=... (callqa.config checks it first)
            self._client = Client.from_url(url)
        except Exception as exc:  # noqa: BLE001 - ValueError, AttributeError, ... of a bad URL; never repeat it
            raise StoreError(f"CLICKHOUSE_URL is not usable by clickhouse-driver ({type(exc).__name__})") from None
        host, port = self._client.connection.hosts[0]  # 9440 when secure and no port is given
        tls = " (TLS)" if self._client.connection.secure_socket else ""
        self.address = f"{host}:{port}{tls}"  # for messages: the URL may hold a password
        self._time_columns: dict[str, set[str]] = {}
        self._settings: dict = {}

    def execute(self, sql: str) -> None:
        self._call(sql)

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        rows, columns = self._call(sql, with_column_types=True)
        millis = [kind.startswith(("DateTime64", "Nullable(DateTime64")) for _, kind in columns]
        return [name for name, _ in columns], [tuple(_text(v, ms) for v, ms in zip(r, millis)) for r in rows]

    def insert(self, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        times = self._time_columns.get(table)
        if times is None:
            described = self._call(f"DESCRIBE TABLE {table}")
            times = self._time_columns[table] = {r[0] for r in described if "DateTime" in r[1]}
        for keys, run in itertools.groupby(rows, key=dict.keys):  # one INSERT per run of rows with the same columns
            columns = list(keys)  # in the run's first row's order
            data = [tuple(_to_datetime(r[c]) if c in times else r[c] for c in columns) for r in run]
            self._call(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", data)

    def read_only(self) -> None:
        """From now on every statement is sent with ClickHouse's ``readonly = 1`` (no DDL, no writes, no
        settings changes)."""
        self._settings = {"readonly": 1}

    def _call(self, sql: str, params=None, **kwargs):
        from clickhouse_driver import errors

        try:
            return self._client.execute(sql, params, settings=self._settings or None, **kwargs)
        except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
            self._client.disconnect()
            raise StoreUnreachable(f"ClickHouse server {self.address} unreachable: {exc}") from exc
        except errors.Error as exc:
            raise _refusal(f"ClickHouse server: {exc}", getattr(exc, "code", None)) from exc

    def close(self) -> None:
        self._client.disconnect()


def _to_datetime(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _text(value, millis: bool):
    """Timestamps as ClickHouse prints them, so both stores answer alike."""
    if not isinstance(value, datetime):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if millis else value.strftime("%Y-%m-%d %H:%M:%S")


def open_store(clickhouse_url: str | None, data_dir: Path) -> Store:
    """The server when a URL is configured, else the embedded store under ``data_dir``."""
    return ServerStore(clickhouse_url) if clickhouse_url else EmbeddedStore(data_dir / "chdb")
