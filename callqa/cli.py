"""The ``callqa`` command line."""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from schemas import time_ms as schemas_time

from .config import Config, ConfigError
from .core.calibration import DEFAULT_THRESHOLD_PCT
from .kafka_security import librdkafka

console = Console()
if not console.is_terminal:  # piped: do not squeeze tables to 80 columns
    console = Console(width=250)
err_console = Console(stderr=True, soft_wrap=True)


class UserError(click.ClickException):
    """An error the user can fix (input, option, setting): printed as one line, no traceback, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        err_console.print(f"[bold red]error:[/] {self.message}")


class Unreachable(UserError):
    """Kafka or ClickHouse did not answer: exit code 3 (worth retrying; nothing was wrong with the input)."""

    exit_code = 3


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("quiet"))


def _progress(disable: bool = False):
    """A progress bar on stderr, gone when done; off with --quiet (or --json). A task with an ``events``
    field (a count) also shows events/s."""
    from rich.progress import Progress, ProgressColumn
    from rich.text import Text

    class EventRate(ProgressColumn):
        def render(self, task) -> Text:
            events, elapsed = task.fields.get("events"), task.elapsed
            return Text(f"{events / elapsed:,.0f} events/s" if events and elapsed else "", style="progress.data.speed")

    return Progress(*Progress.get_default_columns(), EventRate(), console=err_console, transient=True,
                    disable=disable or _quiet())


def _config() -> Config:
    try:
        return Config.from_env().apply()
    except ConfigError as exc:
        raise UserError(f"{exc} (see the configuration table in README.md)") from None


def _store(config: Config):
    """Open the configured store and bring its schema up to date."""
    return _open_and_migrate(config)[0]


def _reader(config: Config):
    """Open the configured store as it is, to read (no migration: a read path changes nothing)."""
    from sinks.store import StoreError, StoreUnreachable, open_store

    try:
        return open_store(config.clickhouse_url, config.data_dir)
    except StoreUnreachable as exc:
        raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None
    except StoreError as exc:
        raise UserError(str(exc)) from None


def _open_and_migrate(config: Config):
    from sinks.migrate import migrate
    from sinks.store import StoreError, StoreUnreachable, open_store

    try:
        store = open_store(config.clickhouse_url, config.data_dir)
        return store, migrate(store, config.retention_raw_days, config.retention_history_days)
    except StoreUnreachable as exc:
        raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up, "
                          "or unset it to use the embedded store.") from None
    except StoreError as exc:
        raise UserError(str(exc) if config.embedded else
                        f"{exc}. Check CLICKHOUSE_URL, or unset it to use the embedded store.") from None


def _output_file(path: Path, what: str) -> Path:
    """A file a command is to write (``what`` names the option or setting it comes from): not a folder,
    and its folder either exists and is writable or can be made; else one line saying so, before any work."""
    import os

    try:
        if not str(path).strip() or path.is_dir():
            raise UserError(f"{what} {str(path)!r} is a folder: give a file name")
        for folder in (path.parent, *path.parent.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise UserError(f"{what} {path}: {folder} is a file, not a folder")
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise UserError(f"{what} {path}: cannot write in {folder} (not writable)")
                break
        if path.exists() and not os.access(path, os.W_OK):
            raise UserError(f"{what} {path}: the file is not writable")
    except OSError as exc:  # a folder on the way that may not be looked into
        raise _cannot_write(path, what, exc) from None
    return path


def _cannot_write(path: Path, what: str, exc: OSError) -> UserError:
    return UserError(f"{what} {path}: cannot write it ({exc.strerror or exc})")


def _embedded_pipeline(config: Config, store, processes: int = 1):
    """The in-process pipeline writing to ``store``, its state kept in the data folder between runs;
    its events stage in ``processes`` worker processes when more than 1."""
    from sinks.writer import BatchWriter

    from .embedded import EmbeddedPipeline

    if processes > config.topic_partitions:
        raise UserError(f"--processes {processes}: at most CALLQA_TOPIC_PARTITIONS ({config.topic_partitions}), "
                        "each process owns whole partitions")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedPipeline(BatchWriter(store, config.sink_batch_rows, config.sink_batch_seconds), config.kpi,
                            config.data_dir / "embedded-state.json", config.policy, config.sampling_key,
                            config.topic_partitions, processes)


_processes_option = click.option(
    "--processes", default=1, show_default=True, type=click.IntRange(1),
    help="Embedded: run the events stage in this many worker processes (a backfill on more cores; at most "
         "CALLQA_TOPIC_PARTITIONS). The results are those of one process.")


def _no_kafka(config: Config, processes: int) -> None:
    if processes > 1 and config.kafka_bootstrap_servers:
        raise UserError("--processes runs the embedded pipeline; with KAFKA_BOOTSTRAP_SERVERS set, scale out "
                        "with more workers (`callqa run --no-sink`)")


def _target(config: Config, processes: int = 1):
    """Where generated or converted events go: (target, store to close or None).
    Kafka when configured, else the embedded pipeline (see callqa.ingest)."""
    from . import ingest as run

    _no_kafka(config, processes)
    if config.kafka_bootstrap_servers:
        from .publish import Publisher

        _ensure_topics(config)
        return run.KafkaTarget(Publisher(config.kafka_bootstrap_servers, config.topic_events,
                                         config.topic_dead_letters, librdkafka(config))), None
    store = _store(config)
    return run.EmbeddedTarget(_embedded_pipeline(config, store, processes)), store


def _ensure_topics(config: Config) -> None:
    from confluent_kafka import KafkaException

    from .topics import ensure_topics

    try:
        ensure_topics(config)
    except (KafkaException, TimeoutError) as exc:
        raise Unreachable(f"Kafka at {config.kafka_bootstrap_servers}: {exc}. "
                          "Check KAFKA_BOOTSTRAP_SERVERS and that Kafka is up, or unset it to run embedded.") from None


_plain_tables: list = []  # the tables printed under --quiet so far


def print_table(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    """A table on stdout. Under --quiet the same rows without decoration: tab-separated lines (the header,
    then one per row; no title, borders or colour), a blank line between two tables. A title is
    decoration: what a reader needs from it is printed as a result line first."""
    if _quiet():
        cell = lambda v: "" if v is None else str(v).replace("\t", " ").replace("\n", " ")
        if _plain_tables:
            click.echo()
        _plain_tables.append(title)
        click.echo("\n".join("\t".join(cell(v) for v in line) for line in [columns, *rows]))
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def _usage_error(exc: click.UsageError) -> UserError:
    """click's usage error (usage, a hint and the error: three lines) as one line that says where to look."""
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return UserError(f"{exc.format_message()}{where}")


class _Group(click.Group):
    """The ``callqa`` group: an option or argument click refuses is one line (exit 2), like every other
    error a user can fix; a store that stops answering while a command runs is exit 3, not a traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx):
        from sinks.store import StoreUnreachable

        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from None
        except StoreUnreachable as exc:
            raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.option("-q", "--quiet", is_flag=True,
              help="Results only: no progress bars, no table borders or titles (tables as tab-separated lines).")
def main(verbose: bool, quiet: bool) -> None:
    """callqa: contact-center quality monitoring on Kafka and ClickHouse.

    Exit codes: 0 done; 2 a problem with the input, an option or a setting (the message says what to change);
    3 Kafka or ClickHouse unreachable; 1 a bug (please report it with the traceback).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # the driver logs each failed connect with a traceback; our error says it in one line
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


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

    from .topics import admin_client, topic_names

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
        from .health import sink_backlog

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

    from . import metrics
    from .topics import sink_group, sink_routes

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
        from . import metrics

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

    from .logs import hold_repeats

    config = _kafka_config(serve_metrics=True)
    store = _store(config) if sink else None
    stop = threading.Event()
    sink_thread, sink_failed = None, []
    if store is not None:
        sink_thread = threading.Thread(target=_supervised, args=(_sink(config, store).run, stop, sink_failed),
                                       name="clickhouse-sink", daemon=True)
        sink_thread.start()
    app = create_app(config)
    class QuietWorker(Worker):
        def on_setup_root_logger(self, logger, level) -> None:
            super().on_setup_root_logger(logger, level)
            import faust.transport.drivers.aiokafka  # noqa: F401 - its loggers exist before they are filtered

            hold_repeats()  # a broker outage is a few lines, not one per 50 ms retry

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
    import logging
    import signal as signals

    from .logs import hold_repeats

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


def _pieces(handle, progress, task, count):
    """The file in pieces of 1 MiB (``sources.lines.chunks``), advancing a progress bar by their length (its
    total: the file's size), with ``count()`` (events or lines so far) for the rate."""
    from sources.lines import chunks

    for piece in chunks(handle):
        yield piece
        progress.update(task, advance=len(piece), events=count())


def _by_reason(counts: dict) -> str:
    """Dead letters by kind of reason, in words: ``not valid JSON 2, too large 1``."""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if n)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts and per-site KPIs as JSON.")
@_processes_option
def replay(file: Path, as_json: bool, processes: int) -> None:
    """Send canonical events (JSON Lines) through the processors.

    With KAFKA_BOOTSTRAP_SERVERS set they are published to the events topic for the worker;
    otherwise they run in this process on the embedded default and the results are printed.

    Every line read is accounted for: lines = blank_lines + events + dead_letters, embedded (events: the
    valid ones, of which duplicates were already applied and not stored again; dead_letters_by_reason:
    as the store groups its dead_letters rows of the file), or lines = blank_lines + events_published +
    dead_letters to Kafka (the lines over CALLQA_MAX_EVENT_BYTES and events Kafka refuses as too large,
    sent to the dead-letter topic; the worker checks the rest). A line over CALLQA_MAX_EVENT_BYTES is
    never read whole: it is a dead letter (reason "too large", with its size) keeping its first 4 KiB.
    """
    from sources.lines import bounded_lines, chunks

    from .backfill import WorkerFailed

    config = _config()
    if not file.exists():
        raise UserError(f"{file}: no such file")
    _no_kafka(config, processes)
    if config.kafka_bootstrap_servers:
        from confluent_kafka import KafkaException

        from .publish import Publisher, publish_lines

        _ensure_topics(config)
        try:
            publisher = Publisher(config.kafka_bootstrap_servers, config.topic_events, config.topic_dead_letters,
                                  librdkafka(config))
            with file.open("rb") as handle:
                read = publish_lines(bounded_lines(chunks(handle)), publisher, str(file))
        except KafkaException as exc:
            raise Unreachable(f"Kafka at {config.kafka_bootstrap_servers}: {exc}") from None
        dead = dict(sorted(publisher.dead_letters.items()))
        if as_json:
            click.echo(json.dumps({"lines": read.lines, "blank_lines": read.blank, "events_published": publisher.sent,
                                   "dead_letters": sum(dead.values()), "dead_letters_by_reason": dead}, indent=1))
            return
        console.print(f"published {publisher.sent} events to {config.topic_events}, {sum(dead.values())} dead letters "
                      f"to {config.topic_dead_letters}" + (f" ({_by_reason(dead)})" if dead else "")
                      + f", {read.blank} blank lines: {read.lines} lines read", soft_wrap=True)
        return

    from sinks import queries

    store = _store(config)
    pipeline = _embedded_pipeline(config, store, processes)
    with file.open("rb") as handle, _progress(disable=as_json) as progress:
        task = progress.add_task(f"replay {file.name}", total=file.stat().st_size)
        try:
            summary = pipeline.run(bounded_lines(_pieces(handle, progress, task, lambda: pipeline.summary.lines)),
                                   str(file))
        except WorkerFailed as exc:
            raise click.ClickException(str(exc)) from None
    sites = store.query(queries.SITE_KPI_SUMMARY.format(window_s=config.kpi_windows[0]))
    outcomes = store.query(queries.CALL_OUTCOMES)
    store.close()
    dead = dict(sorted(summary.dead_by_reason.items()))
    if not summary.events and not summary.duplicates:
        raise UserError(f"{file}: no callqa event in it ({summary.dead_letters} lines kept as dead letters"
                        + (f": {_by_reason(dead)}" if dead else "") + "): is it JSON Lines of canonical events? "
                        "A source's export goes through `callqa ingest --format ...`")
    if as_json:
        click.echo(json.dumps({"lines": summary.lines, "blank_lines": summary.blank, "events": summary.events,
                               "duplicates": summary.duplicates, "dead_letters": summary.dead_letters,
                               "dead_letters_by_reason": dead, "expired_calls": summary.expired,
                               "call_record_versions": summary.records,
                               "kpi_row_versions": summary.kpi_rows, "alerts_opened": summary.alerts,
                               "rate_changes": summary.rate_changes, "selected_for_review": summary.selected,
                               "sites": [dict(zip(sites[0], r)) for r in sites[1]]}, indent=1))
        return
    console.print(f"{summary.events} events ({summary.duplicates} of them duplicates), {summary.dead_letters} dead letters"
                  + (f" ({_by_reason(dead)})" if dead else "") + f", {summary.blank} blank lines: "
                  f"{summary.lines} lines read; {summary.records} call-record versions, {summary.kpi_rows} KPI row versions"
                  + (f", {summary.expired} calls expired (dead letters of origin 'expiry')" if summary.expired else ""),
                  soft_wrap=True)
    print_table(*sites, title=f"KPIs per site ({config.kpi_windows[0]} s windows, all time)")
    print_table(*outcomes, title="Call records")


@main.command()
@click.option("--format", "fmt", required=True, metavar="FORMAT",
              help="One of: asterisk-queue-log, asterisk-queue-log-table, asterisk-queue-log-realtime, "
                   "amazon-connect-ctr, amazon-connect-agent-events, anonymous-bank.")
@click.option("--site", default="site-1", show_default=True, help="Site id of the events (the sources carry none).")
@click.option("--timezone", default="UTC", show_default=True,
              help="IANA time zone of a source written in local time (asterisk-queue-log-realtime).")
@click.option("--follow", is_flag=True, help="Keep reading a growing file (asterisk-queue-log), like tail -f.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@_processes_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def ingest(fmt: str, site: str, timezone: str, follow: bool, as_json: bool, processes: int, file: Path) -> None:
    """Convert a source file to canonical events and process them.

    Published to Kafka when KAFKA_BOOTSTRAP_SERVERS is set, else run through the embedded pipeline.
    Unreadable lines go to the dead letters with file and line; the rest still goes through.

    Every input unit (a line, a CSV row, a JSON record; not blank lines or a header) is accounted for:
    units = units_with_events + skipped (by verb) + unreadable + units_without_event; events_made =
    events_stored + duplicates + events_refused (to Kafka: events_published + events_refused by Kafka as
    too large); dead_letters (by kind of reason, as the store groups them) = unreadable +
    units_partly_refused + events_refused. A line or record over CALLQA_MAX_EVENT_BYTES is never read
    whole: it is unreadable, a dead letter (reason "too large", with its size) keeping its first 4 KiB.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from confluent_kafka import KafkaException

    from sources import BATCH_FORMATS, FORMATS, LOCAL_TIME_FORMATS
    from sources.pii import CallerHasher

    from . import ingest as run
    from .backfill import WorkerFailed

    config = _config()
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if follow and fmt != "asterisk-queue-log":
        raise UserError("--follow works with --format asterisk-queue-log (a live queue_log file)")
    if not file.exists():
        raise UserError(f"{file}: no such file")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"--timezone {timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    reader = partial(FORMATS[fmt], timezone=timezone) if fmt in LOCAL_TIME_FORMATS else FORMATS[fmt]
    target, store = _target(config, processes)
    hasher = CallerHasher(config.caller_hash_key)
    interrupted = []
    with file.open(encoding="utf-8", errors="replace", newline="") as handle, \
            _progress(disable=as_json or follow) as progress:
        task = progress.add_task(f"ingest {file.name}", total=file.stat().st_size)
        lines = (run.follow(handle, target.idle, lambda: bool(interrupted)) if follow
                 else _pieces(handle, progress, task, lambda: target.sent))
        try:
            summary = run.ingest(reader(lines, file.name, site, hasher), target, file, fmt in BATCH_FORMATS, hasher.scrub)
        except WorkerFailed as exc:
            raise click.ClickException(str(exc)) from None
        except KafkaException as exc:
            raise Unreachable(f"Kafka at {config.kafka_bootstrap_servers}: {exc}") from None
        except KeyboardInterrupt:
            interrupted.append(True)
            summary = None
    if store is not None:
        store.close()
    if summary is None:
        return
    if not summary.events and not follow:
        reasons = "; ".join(summary.errors[:3]) or (f"only lines with no canonical event ({', '.join(sorted(summary.skipped))})"
                                                    if summary.skipped else "the file is empty")
        raise UserError(f"{file}: no {fmt} events in {summary.units} input units — is it that format? "
                        f"First reasons: {reasons} (unreadable lines are kept as dead letters)")
    n = run.accounting(summary, target)
    if as_json:
        click.echo(json.dumps({"file": str(file), **n}, indent=1))
        return
    fate = (f"{n['events_stored']} stored, {n['duplicates']} duplicates, {n['events_refused']} refused"
            if "events_stored" in n else f"{n['events_published']} published, {n['events_refused']} refused by Kafka as too large")
    console.print(f"{file.name}: {n['units']} input units: {n['units_with_events']} with events"
                  + (f" ({n['units_partly_refused']} also with a dead letter)" if n["units_partly_refused"] else "")
                  + f", {sum(n['skipped'].values())} skipped (no canonical event), {n['unreadable']} unreadable"
                  + (f", {n['units_without_event']} with nothing" if n["units_without_event"] else "")
                  + f"; {n['events_made']} events made: {fate}; {n['dead_letters']} dead letters"
                  + (f" ({_by_reason(n['dead_letters_by_reason'])})" if n["dead_letters"] else "")
                  + (f"; {n['expired_calls']} calls expired (dead letters of origin 'expiry')" if n.get("expired_calls") else ""),
                  soft_wrap=True)
    print_table(["event type", "events"], sorted(summary.events.items()))
    if summary.skipped:
        print_table(["skipped (no canonical event)", "count"], sorted(summary.skipped.items()))
    if summary.errors:
        err_console.print(f"[yellow]{summary.refused} unreadable, whole or in part (kept as dead letters):[/]")
        for line in summary.errors[:20]:
            err_console.print(f"  {line}")


@main.command()
@click.option("--sites", default=3, show_default=True, type=click.IntRange(1, 50))
@click.option("--agents-per-site", default=200, show_default=True, type=click.IntRange(1, 5000))
@click.option("--days", default=1, show_default=True, type=click.IntRange(1, 366))
@click.option("--start", default="2024-03-04", show_default=True,
              help="First day (YYYY-MM-DD, each site's local day: CALLQA_SITE_TIMEZONES), or 'today'.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--speed", default="max", show_default=True,
              help="'max' (as fast as possible), simulated seconds per wall-clock second (e.g. 60), or 'live': "
                   "what is past at once, then each event when the clock reaches its time.")
@click.option("--drift", "drifts", multiple=True, metavar="SPEC",
              help="Inject a drift, e.g. qa:team=site-1/team-2,delta=-15,from=2024-03-05 | "
                   "apology:agent=site-1-a0007,from=2024-03-04T12:00 | aht:site=site-2,factor=1.3,from=+2 (days after --start) | "
                   "hold:... or transfer:...,factor=F; to= ends a drift, ramp=HOURS grows it")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JSON Lines here instead of sending to Kafka / the embedded pipeline.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Ground-truth side file: the injected drifts and the calls that are truly poor "
                   "[default: CALLQA_DATA_DIR/simulation-truth.json].")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def simulate(sites, agents_per_site, days, start, seed, speed, drifts, out, truth, as_json) -> None:
    """Generate realistic multi-site traffic as canonical events (deterministic for a seed)."""
    import time

    from sources.simulator import SimConfig

    config = _config()
    first_day = datetime.now(UTC).date() if start == "today" else _day(start, "--start")
    if speed not in ("max", "live"):
        try:
            pace = float(speed)
            assert 0.001 <= pace <= 1e9  # NaN fails too; a tinier pace would sleep past what time.sleep takes
        except (ValueError, AssertionError):
            raise UserError(f"--speed {speed!r}: use 'max', 'live' or a number of simulated seconds per second "
                            "from 0.001 to 10^9") from None
    specs = _drift_specs(drifts, first_day)
    sim = _simulator(SimConfig(sites, agents_per_site, days, first_day, seed, specs, config.caller_hash_key,
                               clock=config.kpi.clock, reviewers=config.reviewers))
    if out is not None:
        _output_file(out, "--out")
    if truth is None:
        _output_file(config.data_dir / "simulation-truth.json", "the ground truth (CALLQA_DATA_DIR)")
    else:
        _output_file(truth, "--truth")
    from .ingest import FileTarget

    if out:
        try:
            target, store = FileTarget(out), None
        except OSError as exc:
            raise _cannot_write(out, "--out", exc) from None
    else:
        target, store = _target(config)
    counts: dict[str, int] = {}
    wall0 = sim_t0 = None
    with _progress(disable=as_json) as progress:
        task = progress.add_task("simulate", total=days)
        last_day = None
        for event in sim.events():
            if speed == "live":
                ahead = schemas_time(event["event_time"]) / 1000 - time.time()
                if ahead > 0:
                    time.sleep(ahead)
            elif speed != "max":
                t = schemas_time(event["event_time"]) / 1000
                if wall0 is None:
                    wall0, sim_t0 = time.monotonic(), t
                ahead = (t - sim_t0) / pace - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            day = event["event_time"][:10]
            if day != last_day and last_day is not None:
                progress.advance(task)
            last_day = day
            target.event(event, "simulator", event["event_id"])
            counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    target.close()
    if store is not None:
        store.close()
    what = "--truth" if truth is not None else "the ground truth (CALLQA_DATA_DIR)"
    truth = truth if truth is not None else config.data_dir / "simulation-truth.json"
    try:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_text(json.dumps({"seed": seed, "drifts": sim.truth.drifts, "answered_calls": sim.truth.calls,
                                     "poor_calls": sim.truth.poor_calls}, indent=1))
    except OSError as exc:
        raise _cannot_write(truth, what, exc) from None
    if as_json:
        click.echo(json.dumps({"events": sum(counts.values()), "by_type": dict(sorted(counts.items())),
                               "truth": str(truth)}, indent=1))
        return
    console.print(f"{sum(counts.values())} events ({sites} sites x {agents_per_site} agents, {days} days); "
                  f"ground truth in {truth}", soft_wrap=True)
    print_table(["event type", "events"], sorted(counts.items()))


@main.command()
@click.option("--sites", default=2, show_default=True, type=click.IntRange(1, 50))
@click.option("--agents-per-site", default=30, show_default=True, type=click.IntRange(1, 5000))
@click.option("--days", default=28, show_default=True, type=click.IntRange(1, 366))
@click.option("--start", default="2024-03-04", show_default=True, help="First day (YYYY-MM-DD, UTC).")
@click.option("--seed", default=3, show_default=True, type=int)
@click.option("--drift", "drifts", multiple=True, metavar="SPEC",
              help="Injected drift (as for simulate); default: a QA drop on a team (day 8), an agent who stops "
                   "apologising (day 10), +40% handle time on a team (day 15).")
@click.option("--no-drift", is_flag=True, help="Inject no drift (false alarms and policies on a quiet center).")
@click.option("--control/--no-control", default=True, show_default=True,
              help="With drifts, also run the same center without them.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def evaluate(sites, agents_per_site, days, start, seed, drifts, no_drift, control, as_json) -> None:
    """Measure drift detection (delay, placebo, false alarms and incidents per agent-month, notices
    per incident, rate raises caused by real drifts) and adaptive sampling against uniform and
    tenure × tier weighted fixed-N policies of the same review budget, on simulated traffic with ground
    truth (no store used); with drifts, also on the same center without them."""
    from sources.simulator import SimConfig

    from .evaluation import default_drifts
    from .evaluation import evaluate as run_evaluation

    config = _config()
    first_day = _day(start, "--start")
    specs = () if no_drift else _drift_specs(drifts or default_drifts(first_day, sites), first_day)
    sim = SimConfig(sites, agents_per_site, days, first_day, seed, specs)
    try:
        _simulator(sim)
    except UserError as exc:
        if drifts or no_drift:
            raise
        raise UserError(f"{exc.message}: a default drift does not fit a center this small; pass --drift SPEC "
                        "or --no-drift") from None
    with _progress(disable=as_json) as progress:
        task = progress.add_task("evaluate (events)", total=None)
        result = run_evaluation(sim, config.policy, seed, lambda n: progress.update(task, completed=n), control)
    figures = result.as_dict()
    if as_json:
        click.echo(json.dumps(figures, indent=1))
        return
    if figures["drifts"]:
        print_table(["drift", "scope", "from", "first alarm", "h from start", "h of operation", "by", "incidents",
                     "notices"],
                    [(d["kind"], d["scope_id"], d["from"][:16], (d["detected_at"] or "not detected")[:16],
                      d["delay_hours"], d["delay_operating_hours"], d["detected_by"], d["incidents"],
                      d["notices_per_incident"]) for d in figures["drifts"]], title="Injected drifts")
        print_table(["placebo for", "scope", "alarmed", "by"],
                    [(d["placebo_for"], d["scope_id"], (d["detected_at"] or "no")[:16], d["detected_by"])
                     for d in figures["placebos"]], title="Placebos: the same rule on an untouched scope")
    for name, f in (("", figures), ("without drifts: ", figures.get("control"))):
        if f is None:
            continue
        fa, fi = f["false_alarms_per_agent_month"], f["false_incidents_per_agent_month"]
        console.print(f"{name}false alarms per agent-month: {fa['all']} (agent {fa['agent']}, team {fa['team']}, site "
                      f"{fa['site']}); false incidents per agent-month: {fi['all']}; drift-caused rate raises "
                      f"{f['rate_raises']['drift_raises']}, from real drifts {f['rate_raises']['real_share']}",
                      soft_wrap=True)
        p = f["policies"]
        names = ("adaptive", "fixed_n_uniform", "fixed_n_weighted")
        print_table(["policy", "reviews", "poor calls found", "share poor"],
                    [(n, p[n]["reviews"], p[n]["poor_found"], p[n]["poor_share"]) for n in names],
                    title=f"{name}poor calls put in front of a reviewer ({p['poor_calls']} poor of {p['calls']} "
                          f"recorded; adaptive / weighted {p['adaptive_vs_weighted']})")


def _simulator(sim_config):
    """The simulator of a configuration; a drift on a scope the center does not have is a user error."""
    from sources.simulator import DriftSpecError, Simulator

    try:
        return Simulator(sim_config)
    except DriftSpecError as exc:
        raise UserError(str(exc)) from None


DEMO_START = date(2024, 3, 4)  # a Monday


def _demo_drifts(sites: int) -> tuple[str, ...]:
    """A team's QA drops on day 3, another team stops apologising after holds from midday on day 2, a
    site's calls grow 40% longer after a system change on day 5."""
    return ("qa:team=site-1/team-1,delta=-18,from=+2", f"apology:team=site-{min(2, sites)}/team-1,from=+1.5",
            f"aht:site=site-{sites},factor=1.4,from=+4")


@main.command()
@click.option("--sites", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--agents-per-site", default=15, show_default=True, type=click.IntRange(5, 300))
@click.option("--days", default=7, show_default=True, type=click.IntRange(2, 31))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report [default: CALLQA_DATA_DIR/demo/report.html].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(sites, agents_per_site, days, seed, report_path, as_json) -> None:
    """What callqa is for, in a minute: simulated multi-site traffic with injected quality drifts runs
    through the real processors into a fresh embedded store (CALLQA_DATA_DIR/demo); prints per-site KPIs,
    the drifts and when they were detected, review-rate changes and why, the review queue and alerts,
    and writes the HTML report. No servers needed."""
    import dataclasses
    import shutil

    from sinks import queries
    from sources.simulator import SimConfig

    from . import report as reporting
    from .evaluation import detections
    from .ingest import EmbeddedTarget

    config = _config()
    folder = config.data_dir / "demo"
    if report_path is not None:
        _output_file(report_path, "--report")
    shutil.rmtree(folder, ignore_errors=True)
    local = dataclasses.replace(config, data_dir=folder, clickhouse_url=None, kafka_bootstrap_servers=None)
    specs = _drift_specs(_demo_drifts(sites), DEMO_START)
    sim = _simulator(SimConfig(sites, agents_per_site, days, DEMO_START, seed, specs, config.caller_hash_key,
                               clock=config.kpi.clock, reviewers=config.reviewers))
    store = _store(local)
    target = EmbeddedTarget(_embedded_pipeline(local, store))
    with _progress(disable=as_json) as progress:
        task = progress.add_task(f"demo: {sites} sites × {agents_per_site} agents, {days} days", total=days + 1)
        today = None
        for event in sim.events():
            if event["event_time"][:10] != today:
                today = event["event_time"][:10]
                progress.update(task, completed=min((date.fromisoformat(today) - DEMO_START).days, days))
            target.event(event, "demo", event["event_id"])
        progress.update(task, description="demo: writing the store and the report")
        target.close()
        start, end = reporting.bounds(DEMO_START, date.fromordinal(DEMO_START.toordinal() + days - 1))
        path = report_path or folder / "report.html"
        try:
            figures = reporting.write(store, start, end, path, f"callqa demo: {sites} sites, {days} days",
                                      reporting.Options.from_config(config))
            opened = reporting.rows(store, queries.DRIFTS_OPENED, start, end,
                                    {"site": [f["site_id"] for f in figures["sites"]]})
        except OSError as exc:
            raise _cannot_write(path, "--report" if report_path else "the report (CALLQA_DATA_DIR)", exc) from None
        finally:
            store.close()
    found, _ = detections(specs, [{**a, "at": a["opened"]} for a in opened], {a.id: a for a in sim.agents})
    summary = {
        "sites": figures["sites"], "drifts": found, "rate_changes": figures["rates"],
        "review_queue": sum(r["queued"] for r in figures["queue"]),
        "alerts_opened": {kind: sum(a["opened"] for a in figures["alerts"] if a["kind"] == kind)
                          for kind in ("incident", "drift", "threshold")},
        "report": str(path), "store": str(folder),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
        return
    print_table(["site", "calls", "service level", "ASA s", "abandoned", "AHT s", "human QA %", "auto QA %"],
                [(r["site_id"], r["calls_offered"], f"{r['service_level']:.1%}", r["asa_s"], f"{r['abandon_rate']:.1%}",
                  r["aht_s"], r["qa_human_pct"], r["qa_auto_pct"]) for r in figures["sites"]],
                title=f"{sites} sites × {agents_per_site} agents, {days} days from {DEMO_START}")
    print_table(["injected drift", "scope", "from", "detected", "after (h)", "by"],
                [(d["kind"], d["scope_id"], d["from"][:16], (d["detected_at"] or "not detected")[:16], d["delay_hours"],
                  d["detected_by"]) for d in found], title="Quality drifts and when callqa detected them")
    changes = sorted(figures["rates"], key=lambda r: -r["rate"])
    print_table(["agent", "team", "review rate", "change", "because of"],
                [(r["agent_id"], r["team_id"], f"{r['rate']:.1%}", f"{r['cause']}: {r['factors_changed']}",
                  r["because"] or r["signal"]) for r in changes[:10]],
                title=f"Review rates changed for {len(changes)} agents (highest 10)")
    console.print(f"{summary['review_queue']} calls queued for review; opened: "
                  f"{summary['alerts_opened']['incident']} quality incidents (from {summary['alerts_opened']['drift']} "
                  f"series alarms), {summary['alerts_opened']['threshold']} service-threshold alerts", soft_wrap=True)
    console.print(f"report: {path}\nstore:  {folder} (e.g. CALLQA_DATA_DIR={folder} callqa plan --day "
                  f"{date.fromordinal(DEMO_START.toordinal() + days - 1)})", soft_wrap=True)


@main.command()
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First day [default: six days before the last day with data].")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last day [default: the last day with data].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("callqa-report.html"),
              show_default=True)
@click.option("--title", default="callqa report", show_default=True)
@click.option("--day", "today", metavar="YYYY-MM-DD",
              help="The day the report opens with (Today: incidents, who to review and why) [default: the last day].")
def report(first, last, out, title, today) -> None:
    """Write the HTML report for a period from the configured store (embedded or server): Today first
    (open incidents with their drift charts, who to review and why, agents behind target, calibration
    outliers), then KPIs by hour, quality and drift, review rates, coverage, calibration and the agents."""
    from . import report as reporting

    config = _config()
    first_day = _day(first, "--from") if first is not None else None  # the options first: nothing opened yet
    last_day = _day(last, "--to") if last is not None else None
    today_day = _day(today, "--day") if today is not None else None
    _output_file(out, "--out")
    store = _store(config)
    try:
        if today_day is not None:  # Today is a day the store holds calls for
            held_first, held_last = reporting.data_days(store)
            if not held_first <= today_day <= held_last:
                raise UserError(f"--day {today_day} is outside the data: the store holds calls from {held_first} "
                                f"to {held_last}")
        last_day = last_day or today_day
        if last_day is None:
            last_day = reporting.data_period(store)[1]
        first_day = first_day or date.fromordinal(last_day.toordinal() - 6)  # the seven days to the last
        if last_day < first_day:
            which = "--to" if last is not None else "--day" if today is not None else "the last day with data,"
            raise UserError(f"{which} {last_day} is before --from {first_day}")
        if today_day is not None and not first_day <= today_day <= last_day:
            raise UserError(f"--day {today_day} is outside the period --from {first_day} --to {last_day}")
        start, end = reporting.bounds(first_day, last_day)
        try:
            figures = reporting.write(store, start, end, out, title, reporting.Options.from_config(config, today_day))
        except OSError as exc:
            raise _cannot_write(out, "--out", exc) from None
    except reporting.EmptyStore as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    calls = sum(r["calls_offered"] for r in figures["sites"])
    console.print(f"wrote {out}: {first_day} to {last_day}, {len(figures['sites'])} sites, {calls} calls", soft_wrap=True)


def _drift_specs(texts, first_day: date) -> tuple:
    """``--drift`` values as DriftSpecs; a malformed one is a user error."""
    from sources.simulator import DriftSpec, DriftSpecError

    try:
        return tuple(DriftSpec.parse(text, first_day) for text in texts)
    except DriftSpecError as exc:
        raise UserError(str(exc)) from None


def _day(text: str, option: str) -> date:
    try:  # YYYY-MM-DD only: Python's fromisoformat also takes 20240304 and 2024-W10 (a week)
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None
    if not 2000 <= day.year < 2100:
        raise UserError(f"{option} {text!r}: a date from 2000 to 2099")
    return day


@main.command()
@click.option("--day", required=True, help="YYYY-MM-DD: the day whose selected calls are to be reviewed (each "
                                           "site's local day, CALLQA_SITE_TIMEZONES).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plans, the reviewers and the unassigned calls as JSON.")
def plan(day: str, as_json: bool) -> None:
    """Each reviewer's plan for a day's review queue: focus agents, why, target count, and whom each goes to
    and why them; then each reviewer's reviews, coaching sessions, capacity and calibration standing, and
    what no reviewer could take. Reviewers: CALLQA_REVIEWERS_FILE (named, by site and language), else
    CALLQA_QA_REVIEWERS reviewers qa-01..., each CALLQA_QA_REVIEWS_PER_HOUR × CALLQA_QA_REVIEW_HOURS reviews."""
    from .review_plan import daily_plan

    config = _config()
    plan_day = _day(day, "--day").isoformat()
    store = _store(config)
    try:
        out = daily_plan(store, config, plan_day)
    finally:
        store.close()
    result, queued, capacity, source = out, out["queued"], out["capacity"]["reviews"], out["capacity"]["words"]
    planned, left = out["planned"], out["unassigned_calls"]
    barred = [r["reviewer"] for r in result["reviewers"] if (r["standing"] or {}).get("outside")]
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    console.print(f"Review plans for {day}: {planned} of {queued} queued calls planned for "
                  f"{len({x['reviewer'] for x in result['plans']})} reviewers; {left} unassigned", soft_wrap=True)
    console.print(f"capacity: {capacity} reviews a day, {source}", soft_wrap=True)
    console.print(f"coaching (side by side): none for reviewers outside the calibration limit "
                  f"({', '.join(barred) if barred else 'none now'})", soft_wrap=True)
    print_table(["reviewer", "agent", "team", "site", "time zone", "language", "risk", "target", "why"],
                [(x["reviewer"], x["agent_id"], x["team_id"], x["site_id"], x["timezone"], x["language"], x["risk"],
                  x["target"], x["why"]) for x in result["plans"]],
                title=f"Review plans for {day} (each site's local day): {planned} of {queued} queued calls")
    print_table(["reviewer", "name", "sites", "languages", "capacity", "reviews", "coaching sessions", "free",
                 "calibration standing"],
                [(r["reviewer"], r["name"], ", ".join(r["sites"]) if isinstance(r["sites"], list) else r["sites"],
                  ", ".join(r["languages"]) if isinstance(r["languages"], list) else r["languages"], r["capacity"],
                  r["reviews"], r["coaching_sessions"], r["free"],
                  r["standing_words"] + ("" if r["coaches"] else ": no coaching until recalibrated inside"
                                         if (r["standing"] or {}).get("outside") else "; does not coach (coaching: false)"))
                 for r in result["reviewers"]],
                title=f"Reviewers ({capacity} reviews a day)")
    if result["unassigned"]:
        print_table(["agent", "team", "site", "language", "method", "calls", "reason"],
                    [(u["agent_id"], u["team_id"], u["site_id"], u["language"], ", ".join(u["methods"]), u["calls"],
                      u["reason"]) for u in result["unassigned"]],
                    title=f"Unassigned: {left} calls")


@main.command("test-calls")
@click.option("--week", required=True, help="YYYY-MM-DD: the first day of the week to plan (slots in each site's "
                                            "local time, CALLQA_SITE_TIMEZONES).")
@click.option("--new-business", "new_business", multiple=True, metavar="TOPIC",
              help="A new product or service the test calls should ask about (repeatable).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def test_calls(week: str, new_business: tuple[str, ...], seed: int, as_json: bool) -> None:
    """A week's internal test (mystery) calls, CALLQA_TEST_CALLS_PER_WEEK of them: agents who worked the
    four weeks before, none twice, every slot covered, topics from new business and the items failed most."""
    from sinks import queries

    from .core.plans import weekly_test_calls

    config = _config()
    first = _day(week, "--week")
    store = _store(config)
    try:
        columns, rows = store.query(queries.ACTIVE_AGENTS.format(
            week=first.isoformat(), local_hour=queries.local_hour("answered_at", config.kpi.clock)))
        items = [item for item, _ in store.query(queries.FAILING_ITEMS.format(week=first.isoformat(), limit=5))[1]]
    finally:
        store.close()
    if not rows:
        raise UserError(f"no agent took calls in the four weeks before {first}: nothing to plan from")
    agents = [dict(zip(columns, r)) for r in rows]
    calls = weekly_test_calls(first, agents, list(new_business), items, config.test_calls_per_week, seed,
                              config.kpi.clock)
    if as_json:
        click.echo(json.dumps(calls, indent=1))
        return
    console.print(f"Test calls for the week of {first}: {len(calls)} calls to {len({c['agent_id'] for c in calls})} "
                  f"agents", soft_wrap=True)
    print_table(["id", "at (UTC)", "local time", "time zone", "slot", "agent", "site", "topic"],
                [(c["test_call_id"], c["at"], c["local"], c["timezone"], c["slot"], c["agent_id"], c["site_id"],
                  f"{c['topic_kind']}: {c['topic']}") for c in calls],
                title=f"Test calls for the week of {first} (slots in each site's local time): {len(calls)}")


def _month(month: str) -> str:
    import re

    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month) or not 1 <= int(month[5:]) <= 12 or not 2000 <= int(month[:4]) < 2100:
        raise UserError(f"--month {month!r}: use YYYY-MM (a month 01 to 12, from 2000 to 2099)")
    return month


@main.command()
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--json", "as_json", is_flag=True, help="Print the totals and the counts per agent as JSON.")
def evaluations(month: str, as_json: bool) -> None:
    """Human evaluations (and internal test calls) per agent in a month, against CALLQA_QA_MONTHLY_TARGET:
    the totals first, then the agents, the furthest behind first."""
    from sinks import queries

    config = _config()
    month = _month(month)
    target = config.qa_monthly_target
    store = _store(config)
    try:
        columns, rows = store.query(queries.EVALUATIONS_THIS_MONTH.format(target=target, month=month))
    finally:
        store.close()
    agents = [{**dict(zip(columns, r)), "on_target": bool(dict(zip(columns, r))["on_target"])} for r in rows]
    on_target = sum(a["on_target"] for a in agents)
    summary = {"month": month, "target": target, "human": sum(a["human"] for a in agents),
               "test_calls": sum(a["test_calls"] for a in agents), "agents_on_target": on_target,
               "agents_behind_target": len(agents) - on_target, "agents": agents}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    console.print(f"Evaluations in {month}: {summary['human']} human evaluations and {summary['test_calls']} test "
                  f"calls of {len(agents)} agents evaluated; {on_target} reached the target of {target} per agent, "
                  f"{len(agents) - on_target} are behind", soft_wrap=True)
    print_table(columns, [(*r[:-1], "yes" if a["on_target"] else "no") for r, a in zip(rows, agents)],
                title=f"Evaluations in {month} (target {target} per agent)")


@main.command()
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--expert", "experts", multiple=True, help="Evaluator id whose score is the reference (else the mean).")
@click.option("--threshold", default=DEFAULT_THRESHOLD_PCT, show_default=True, help="Flag deviations over this many percentage points.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary, each evaluator, agreement per form version and every deviation as JSON.")
def calibration(month: str, experts: tuple[str, ...], threshold: float, as_json: bool) -> None:
    """Calibration report of a month: the summary and agreement (kappa per item, ICC of totals) per form
    version first, each evaluator's mean deviation from the reference, then every call's deviations."""
    import dataclasses
    import math

    from callqa.core.calibration import by_evaluator, calibrate
    from sinks import queries

    config = _config()
    month = _month(month)
    if not math.isfinite(threshold) or not 0 <= threshold <= 100:
        raise UserError(f"--threshold {threshold!r}: a number of percentage points from 0 to 100")
    if any(not expert.strip() for expert in experts):
        raise UserError("--expert '': give an evaluator id")
    store = _store(config)
    try:
        rows = store.query(queries.CALIBRATION_EVALUATIONS.format(month=month))[1]
    finally:
        store.close()
    evaluations = [
        {"evaluation_id": r[0], "call_id": r[1], "agent_id": r[2], "evaluator_id": r[3], "form_id": r[4],
         "form_version": r[5], "event_time": r[6].replace(" ", "T"),
         "items": [{"item_id": i, "score": s, "max_score": m} for i, s, m in zip(r[7], r[8], r[9])]}
        for r in rows]
    deviations, agreement = calibrate(evaluations, frozenset(experts), threshold)
    finite = lambda x: None if isinstance(x, float) and not math.isfinite(x) else x  # JSON has no NaN
    agreement = [{**row, "icc_total": finite(row["icc_total"]), "kappa": {k: finite(v) for k, v in row["kappa"].items()}}
                 for row in agreement]
    evaluators = by_evaluator(deviations)
    reference = f"expert {', '.join(sorted(experts))}" if experts else "each call's mean"
    summary = {"month": month, "reference": "expert" if experts else "mean", "experts": sorted(experts),
               "threshold_pct": threshold, "calls": len({d.call_id for d in deviations}), "scores": len(deviations),
               "flagged": sum(d.flagged for d in deviations), "evaluators": evaluators, "agreement": agreement,
               "deviations": [dataclasses.asdict(d) for d in deviations]}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    if not deviations:
        console.print(f"no calls scored by two or more evaluators in {month}")
        return
    console.print(f"Calibration {month}: {summary['calls']} calls scored by two or more evaluators, {len(deviations)} "
                  f"scores against {reference}; {summary['flagged']} deviate by more than {threshold:g} points",
                  soft_wrap=True)
    for row in agreement:
        console.print(f"{row['form_id']} {row['form_version']}: {row['calls']} calls, evaluators "
                      f"{', '.join(row['evaluators'])}, ICC(2,1) of totals {row['icc_total']}", soft_wrap=True)
    print_table(["evaluator", "calls", "mean deviation", "mean |deviation|", "flagged"],
                [tuple(e.values()) for e in evaluators], title="Evaluators (points from the reference)")
    for row in agreement:
        print_table(["item", "kappa"], sorted(row["kappa"].items()),
                    title=f"{row['form_id']} {row['form_version']}: agreement per item")
    print_table(["call", "evaluator", "form version", "score %", "reference %", "deviation", "flagged"],
                [(d.call_id, d.evaluator_id, d.form_version, d.pct, d.reference_pct, d.deviation,
                  "FLAG" if d.flagged else "") for d in deviations], title=f"Calibration {month}: every score")


_SQL_TOKENS = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|--[^\n]*|#[^\n]*|/\*.*?\*/""",
                         re.DOTALL)


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


if __name__ == "__main__":
    sys.exit(main())
