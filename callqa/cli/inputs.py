"""For whoever feeds callqa events: replaying canonical events, ingesting a source's export, simulating a center."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import click

from schemas import time_ms as schemas_time

from ..config import Config
from ..kafka_security import librdkafka
from . import main
from .common import (
    Unreachable,
    UserError,
    _cannot_write,
    _config,
    _day,
    _drift_specs,
    _embedded_pipeline,
    _ensure_topics,
    _output_file,
    _progress,
    _simulator,
    _store,
    console,
    err_console,
    print_table,
)

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
    from .. import ingest as run

    _no_kafka(config, processes)
    if config.kafka_bootstrap_servers:
        from ..publish import Publisher

        _ensure_topics(config)
        return run.KafkaTarget(Publisher(config.kafka_bootstrap_servers, config.topic_events,
                                         config.topic_dead_letters, librdkafka(config))), None
    store = _store(config)
    return run.EmbeddedTarget(_embedded_pipeline(config, store, processes)), store


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

    from ..backfill import WorkerFailed

    config = _config()
    if not file.exists():
        raise UserError(f"{file}: no such file")
    _no_kafka(config, processes)
    if config.kafka_bootstrap_servers:
        from confluent_kafka import KafkaException

        from ..publish import Publisher, publish_lines

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

    from sources import BATCH_FORMATS, EPOCH_LINE_FORMATS, FORMATS, LOCAL_TIME_FORMATS
    from sources.pii import CallerHasher

    from .. import ingest as run
    from ..backfill import WorkerFailed

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
            scrub = partial(hasher.scrub, epoch_opening=fmt in EPOCH_LINE_FORMATS)
            summary = run.ingest(reader(lines, file.name, site, hasher), target, file, fmt in BATCH_FORMATS, scrub)
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
    from ..ingest import FileTarget

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
