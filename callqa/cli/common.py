"""What the commands share: errors, the configuration and store, tables and progress bars, dates and drifts."""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..config import Config, ConfigError

console = Console()
if not console.is_terminal:  # piped: do not squeeze tables to 80 columns, nor break a long line of text
    console = Console(width=250, soft_wrap=True)
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

    from ..embedded import EmbeddedPipeline

    if processes > config.topic_partitions:
        raise UserError(f"--processes {processes}: at most CALLQA_TOPIC_PARTITIONS ({config.topic_partitions}), "
                        "each process owns whole partitions")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedPipeline(BatchWriter(store, config.sink_batch_rows, config.sink_batch_seconds), config.kpi,
                            config.data_dir / "embedded-state.json", config.policy, config.sampling_key,
                            config.topic_partitions, processes)


def _ensure_topics(config: Config) -> None:
    from confluent_kafka import KafkaException

    from ..topics import ensure_topics

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


def _drift_specs(texts, first_day: date) -> tuple:
    """``--drift`` values as DriftSpecs; a malformed one is a user error."""
    from sources.simulator import DriftSpec, DriftSpecError

    try:
        return tuple(DriftSpec.parse(text, first_day) for text in texts)
    except DriftSpecError as exc:
        raise UserError(str(exc)) from None


def _simulator(sim_config):
    """The simulator of a configuration; a drift on a scope the center does not have is a user error."""
    from sources.simulator import DriftSpecError, Simulator

    try:
        return Simulator(sim_config)
    except DriftSpecError as exc:
        raise UserError(str(exc)) from None
