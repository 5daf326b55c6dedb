"""For the operator: the schema, readiness, the worker and the sink, and read queries on the store."""
from __future__ import annotations

import json
import logging
import re
import sys
import threading

import click

from ..config import Config, ConfigError
from ..kafka_security import librdkafka
from . import main
from .common import (
    Unreachable,
    UserError,
    _config,
    _ensure_topics,
    _open_and_migrate,
    _store,
    console,
    print_table,
)


@main.command()
def migrate() -> None:
    """Apply the ClickHouse schema migrations (idempotent)."""
    config = _config()
    store, applied = _open_and_migrate(config)
    store.close()
    where = f"embedded store {config.data_dir}" if config.embedded else "ClickHouse server"
    console.print(f"{where}: applied {', '.join(applied)}" if applied else f"{where}: schema up to date")


@main.command()
def check() -> None:
    """Check that the configured Kafka and ClickHouse answer and are ready (the containers' health check):
    every topic exists, every migration is applied, and the sink is not stale (no message waiting to be
    stored longer than CALLQA_SINK_STALE_S). Exit 0 when ready; 3 when one does not answer, 2 when it
    is not ready, with the reason."""
    from sinks.migrate import pending
    from sinks.store import StoreError, StoreUnreachable, open_store

    from ..topics import admin_client, topic_names

    config = _config()
    if config.kafka_bootstrap_servers:
        try:
            listed = admin_client(config.kafka_bootstrap_servers, librdkafka(config)).list_topics(timeout=10)
        except Exception as exc:  # librdkafka reports an unreachable cluster as a KafkaException
            raise Unreachable(f"Kafka at {config.kafka_bootstrap_servers} unreachable: {exc}") from None
        missing = sorted(set(topic_names(config)) - set(listed.topics))
        if missing:
            raise UserError(f"Kafka topics missing: {', '.join(missing)} (the worker creates them when it starts)")
    try:
        store = open_store(config.clickhouse_url, config.data_dir)
        unapplied = [path.stem for path in pending(store)]
        store.close()
    except StoreUnreachable as exc:
        raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None
    except StoreError as exc:
        raise UserError(str(exc)) from None
    if unapplied:
        raise UserError(f"migrations not applied: {', '.join(unapplied)}; run `callqa migrate`")
    freshness = ""
    if config.kafka_bootstrap_servers:
        from ..health import sink_backlog

        try:
            backlog = sink_backlog(config)
        except Exception as exc:  # librdkafka's KafkaException, or a timeout
            raise Unreachable(f"Kafka at {config.kafka_bootstrap_servers}: sink backlog not readable: {exc}") from None
        stale = [b for b in backlog if b.oldest_s is not None and b.oldest_s > config.sink_stale_s]
        if stale:
            worst = max(stale, key=lambda b: b.oldest_s)
            raise UserError(f"the ClickHouse sink is stale: {sum(b.lag for b in stale)} messages not stored, the oldest "
                            f"{worst.oldest_s:.0f} s old ({worst.topic} partition {worst.partition}; limit "
                            f"CALLQA_SINK_STALE_S={config.sink_stale_s}). Is `callqa sink` (or `callqa run`) running?")
        freshness = f", sink lag {sum(b.lag for b in backlog)} messages"
    console.print("ready: " + ("Kafka topics present, " if config.kafka_bootstrap_servers else "")
                  + ("ClickHouse server" if config.clickhouse_url else "embedded store") + " schema up to date" + freshness)


def _sink(config: Config, store):
    """The ClickHouse sink: the input topic's events and every output topic into their tables."""
    from confluent_kafka import Consumer

    from sinks.consumer import KafkaSink, consumer_config
    from sinks.writer import BatchWriter

    from .. import metrics
    from ..topics import sink_group, sink_routes

    metrics.STORE_UP.set(1)  # the store was just opened and migrated: it answers (0 only while writes are retried)
    return KafkaSink(Consumer(consumer_config(config.kafka_bootstrap_servers, sink_group(config), librdkafka(config))),
                     sink_routes(config),
                     BatchWriter(store, config.sink_batch_rows, config.sink_batch_seconds))


def _kafka_config(serve_metrics: bool = False) -> Config:
    """The configuration of a command that needs Kafka, checked before anything connects: the settings,
    then (``serve_metrics``) the metrics port taken, then Kafka's topics."""
    config = _config()
    if not config.kafka_bootstrap_servers:
        raise UserError("KAFKA_BOOTSTRAP_SERVERS is not set: this command needs Kafka. "
                        "Without Kafka, use `callqa replay FILE` (embedded).")
    if serve_metrics:
        from .. import metrics

        try:
            metrics.serve(config.metrics_port)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
    _ensure_topics(config)
    return config


@main.command()
@click.option("--sink/--no-sink", default=True, show_default=True,
              help="Also run the ClickHouse sink in this process (--no-sink: run `callqa sink` apart).")
def run(sink: bool) -> None:
    """Run the faust worker against Kafka (and, by default, the ClickHouse sink beside it)."""
    from faust.worker import Worker

    from streams.app import create_app

    from ..logs import hold_repeats
    from ..runtime import STACKS_SIGNAL, fewer_full_collections, stacks_on_signal

    stacks_on_signal()  # a worker that hangs can say where: kill -USR2 <pid>
    config = _kafka_config(serve_metrics=True)
    store = _store(config) if sink else None
    stop = threading.Event()
    sink_thread, sink_failed = None, []
    if store is not None:
        sink_thread = threading.Thread(target=_supervised, args=(_sink(config, store).run, stop, sink_failed),
                                       name="clickhouse-sink", daemon=True)
        sink_thread.start()
    app = create_app(config)
    fewer_full_collections()

    class QuietWorker(Worker):
        def on_setup_root_logger(self, logger, level) -> None:
            super().on_setup_root_logger(logger, level)
            import faust.transport.drivers.aiokafka  # noqa: F401 - its loggers exist before they are filtered

            hold_repeats()  # a broker outage is a few lines, not one per 50 ms retry

        def _install_signal_handlers_unix(self) -> None:
            super()._install_signal_handlers_unix()
            self.loop.remove_signal_handler(STACKS_SIGNAL)  # mode's: a debugger prompt (pdb on a log file)
            stacks_on_signal()

    try:
        worker = QuietWorker(app, loglevel=config.log_level, quiet=True)
        worker.spinner = None  # faust's terminal spinner lowers the root logger to DEBUG (about 10 % of the time)
        worker.execute_from_commandline()
    finally:
        stop.set()
        if sink_thread is not None:
            sink_thread.join(60)
            store.close()
        if sink_failed:
            raise SystemExit(3)  # the sink could not go on: a supervisor restarts the whole process


def _supervised(run, stop: threading.Event, failed: list) -> None:
    """Run the in-process sink; if it cannot go on, say why once and stop the worker beside it (SIGTERM
    to this process: a clean shutdown, then exit 3), never a silent thread death."""
    import os
    import signal as signals

    try:
        run(stop)
    except BaseException as exc:  # noqa: BLE001 - whatever ended it, the process must not go on without it
        failed.append(exc)
        logging.getLogger("callqa.sink").critical("the ClickHouse sink stopped (%s: %s); stopping the worker",
                                                 type(exc).__name__, exc)
        os.kill(os.getpid(), signals.SIGTERM)


@main.command("sink")
def sink_command() -> None:
    """Run only the ClickHouse sink: Kafka topics into the store until SIGTERM or Ctrl-C."""
    import signal as signals

    from ..logs import hold_repeats
    from ..runtime import stacks_on_signal

    stacks_on_signal()  # a sink that hangs can say where: kill -USR2 <pid>
    config = _kafka_config(serve_metrics=True)
    logging.basicConfig(level=config.log_level, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    hold_repeats()
    store = _store(config)
    stop = threading.Event()
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: stop.set())
    try:
        _sink(config, store).run(stop)
    finally:
        store.close()


def _reader(config: Config):
    """Open the configured store as it is, to read (no migration: a read path changes nothing)."""
    from sinks.store import StoreError, StoreUnreachable, open_store

    try:
        return open_store(config.clickhouse_url, config.data_dir)
    except StoreUnreachable as exc:
        raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None
    except StoreError as exc:
        raise UserError(str(exc)) from None


_SQL_TOKENS = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|--[^\n]*|#[^\n]*|/\*.*?\*/""",
                         re.DOTALL)


# table functions that reach files, URLs, object stores, other servers or programs
_OUTSIDE = re.compile(r"\b(file|fileCluster|url|urlCluster|s3|s3Cluster|gcs|cosn|oss|hdfs|hdfsCluster|azureBlobStorage|"
                      r"azureBlobStorageCluster|remote|remoteSecure|cluster|clusterAllReplicas|mysql|postgresql|jdbc|"
                      r"odbc|mongodb|redis|sqlite|executable|deltaLake|hudi|iceberg\w*|paimon\w*|input|arrowFlight)"
                      r"\s*\(", re.IGNORECASE)


def _statement(sql: str) -> tuple[str, str]:
    """A query without its comments and a final ``;`` (what is run), and the same with every string and
    quoted name blanked (what is checked: a ``;`` or ``--`` inside a string is not syntax)."""
    bare, masked, at = [], [], 0
    for token in _SQL_TOKENS.finditer(sql):
        between = sql[at:token.start()]
        text = token.group(0)
        quoted = text[0] in "'\"`"
        bare += [between, text if quoted else " "]
        masked += [between, text[0] * 2 if quoted else " "]
        at = token.end()
    bare.append(sql[at:])
    masked.append(sql[at:])
    run, check = "".join(bare).strip(), "".join(masked).strip()
    if check.endswith(";"):
        run, check = run.rstrip()[:-1].rstrip(), check[:-1].rstrip()
    return run, check


@main.command()
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list of objects (column: value).")
def query(sql: str, as_json: bool) -> None:
    """Run a read query on the store and print a table (or, with a FORMAT clause, ClickHouse's output
    in that format; embedded store only). The connection is read-only: DDL, writes and settings
    changes are refused (exit 2)."""
    from sinks.store import EmbeddedStore, StoreError, StoreUnreachable

    bare, masked = _statement(sql)  # the checks read ``masked``: strings and quoted names are blanked
    if not bare:
        raise UserError("an empty query")
    if ";" in masked:
        raise UserError("one statement at a time")
    if not re.match(r"\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", masked, re.IGNORECASE):
        raise UserError("callqa query runs reads only (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
    outside = _OUTSIDE.search(masked)
    if outside:  # readonly = 1 refuses them in a SELECT, not in a DESCRIBE (which reads the file or URL)
        raise UserError(f"{outside.group(1)}(...) reads outside the store: callqa query reads its tables only")
    if re.search(r"\bINTO\s+OUTFILE\b", masked, re.IGNORECASE):
        raise UserError("INTO OUTFILE is refused: callqa query writes nothing; use a FORMAT clause and redirect stdout")
    store = _reader(_config())
    try:
        store.read_only()
        if re.search(r"\bFORMAT\s+\w+\s*$", masked, re.IGNORECASE):
            if as_json:
                raise UserError("--json or a FORMAT clause, not both")
            if not isinstance(store, EmbeddedStore):
                raise UserError("a FORMAT clause works on the embedded store only; leave it out for a table")
            sys.stdout.buffer.write(store.formatted(bare))
            return
        columns, rows = store.query(bare)
        if as_json:
            click.echo(json.dumps([dict(zip(columns, r)) for r in rows], indent=1, default=str))
            return
        print_table(columns, rows)
    except StoreUnreachable as exc:
        raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None
    except StoreError as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:  # an answer that is not one table (orjson's decode error is a ValueError)
        raise UserError(f"the query's answer is not one table: {exc}") from None
    finally:
        store.close()
