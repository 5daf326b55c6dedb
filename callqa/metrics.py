"""Prometheus metrics of the writer and the sink (prometheus-client), served by ``callqa run`` and
``callqa sink`` on ``CALLQA_METRICS_PORT``.

- ``callqa_rows_written_total{table}``: rows stored per table (``raw_events`` rows are the valid input
  events, labelled by type in ``callqa_events_total{type}``; ``dead_letters`` rows by reason in
  ``callqa_dead_letters_total{reason}``);
- ``callqa_insert_seconds{table}``: one insert's duration; ``callqa_batch_rows{table}``: its size;
- ``callqa_last_write_timestamp_seconds``: when a write last succeeded (freshness);
- ``callqa_store_up``: 1 while the store answers, 0 while the writer retries;
- ``callqa_rows_refused_total{table}``: rows the store refused (now dead letters);
- ``callqa_consumer_lag{topic,partition}``: messages behind the end of each partition the sink reads.

Of the faust worker (``callqa run``; ``streams.app``, counts kept by ``streams.gauges``):

- ``callqa_stage_messages_total{stage}``: input messages a stage applied (events for ``events``, bundles
  from the stages upstream for the others);
- ``callqa_stage_lag{stage,partition}``: messages of a stage partition's input not yet applied (the
  partitions this worker has);
- ``callqa_open_incidents{level}``: quality incidents open in this worker's monitor partitions, by the
  scope level they are at (agent, team, site);
- ``callqa_review_queue``: calls this worker's sampler partitions queued for review and that were
  neither dropped nor evaluated since (see ``streams.gauges``).

Summed over the workers (``sum(...)``) they are the pipeline's.
"""
from __future__ import annotations

import errno

from prometheus_client import Counter, Gauge, Histogram, start_http_server

ROWS = Counter("callqa_rows_written", "Rows stored, per table", ["table"])
EVENTS = Counter("callqa_events", "Valid input events stored, per type", ["type"])
DEAD_LETTERS = Counter("callqa_dead_letters", "Dead letters stored, per kind of reason", ["reason"])
REFUSED = Counter("callqa_rows_refused", "Rows the store refused (kept as dead letters), per table", ["table"])
INSERT_SECONDS = Histogram("callqa_insert_seconds", "Duration of one insert", ["table"])
BATCH_ROWS = Histogram("callqa_batch_rows", "Rows in one insert", ["table"],
                       buckets=(1, 10, 100, 1_000, 5_000, 20_000, 100_000))
LAST_WRITE = Gauge("callqa_last_write_timestamp_seconds", "Unix time of the last successful write")
STORE_UP = Gauge("callqa_store_up", "1 while the store answers, 0 while writes are being retried")
LAG = Gauge("callqa_consumer_lag", "Messages behind the end of an input partition", ["topic", "partition"])
STAGE_MESSAGES = Counter("callqa_stage_messages", "Input messages a worker stage applied", ["stage"])
STAGE_LAG = Gauge("callqa_stage_lag", "Messages of a worker stage partition's input not yet applied",
                  ["stage", "partition"])
OPEN_INCIDENTS = Gauge("callqa_open_incidents", "Quality incidents open in this worker, by scope level", ["level"])
REVIEW_QUEUE = Gauge("callqa_review_queue", "Calls queued for review in this worker, not dropped nor evaluated since")


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its particulars (a label of few values): ``late event``, ``not
    valid JSON``, ``unknown event_type``, ``too large``, ``schema`` (an event its type's schema or the
    validator's checks refuse: types, times, ids), ``store``
    (a row the store refused), ``source`` (a line an adapter could not read)."""
    for kind in ("late event", "not valid JSON", "unknown event_type", "event must be a JSON object"):
        if reason.startswith(kind):
            return kind
    if reason.startswith("event of ") and "CALLQA_MAX_EVENT_BYTES" in reason:
        return "too large"
    if reason.split(":", 1)[0].count(".") == 1 and " " not in reason.split(":", 1)[0]:
        return "schema"  # "call.queued: data... must ..."
    return "store" if reason.startswith(("embedded ClickHouse", "ClickHouse server")) else "source"


def publish_worker(gauges) -> None:
    """Set the worker's gauges from a ``streams.gauges.WorkerGauges``."""
    for level, n in gauges.open_incidents().items():
        OPEN_INCIDENTS.labels(level).set(n)
    REVIEW_QUEUE.set(gauges.review_queue())


def serve(port: int) -> None:
    """Serve /metrics on ``port`` (0: not served) in a daemon thread. A port that cannot be had (another
    process holds it, or it needs privileges) is a ConfigError naming CALLQA_METRICS_PORT."""
    from .config import ConfigError

    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:
        why = " (another process is using it)" if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"CALLQA_METRICS_PORT={port}: cannot serve metrics on it: {exc.strerror or exc}{why}; "
                          "choose a free port, or 0 not to serve them") from None
    except OverflowError:  # not a port number (the configuration allows 0 to 65535)
        raise ConfigError(f"CALLQA_METRICS_PORT={port} is not a port number (1 to 65535, or 0)") from None
