"""The faust application: the core's keyed stages, with a Kafka topic in front of each key change.

    events (by call / agent id) ──► process: validate; calls, agent states, profiles, watermarks
        ├─ invalid or late ──► dead letters (reason + raw payload)
        ├─ call records, scored evaluations ──► call-records, evaluations
        ├─ FCR notes (by caller hash) ──► fcr: callers ──► window deltas
        ├─ window deltas (by series: level|site|entity) ──► aggregate: windows ──► KPI rows
        │                                                   └─ closed windows ──► threshold alerts
        ├─ observations (by series: level|site|entity|metric) ──► monitor: detectors ──► alerts
        │                                                   └─ drift alerts ──► signals (by agent)
        └─ recorded calls, ops changes (by agent) ──► sample: rates, decisions ──► sampling topics

Each agent runs the pure core (``callqa.core``) with faust Tables as its state, so a restarted worker
resumes from the changelogs. Exactly-once processing keeps table updates, output messages and input
offsets in one Kafka transaction: a crash never applies an event twice. Expiring state is swept only
for keys of the partition being processed, so every changelog write stays in its own partition.
Events must be keyed by their contract key (``schemas.key_field``), partitioned with murmur2 as the
Java client does (``callqa.publish.Publisher``).
"""
from __future__ import annotations

import faust
import orjson

from callqa.config import Config
from callqa.core.dead_letters import dead_letter
from callqa.core.fcr import FcrTracker
from callqa.core.kpi import KpiAggregator
from callqa.core.monitor import QualityMonitor
from callqa.core.pipeline import Processor, Watermarks, alert_signals, sampling_signal
from callqa.core.sampling import Sampler
from callqa.core.thresholds import ThresholdMonitor
from callqa.partitions import partition_of
from callqa.topics import internal_topic
from schemas import InvalidEvent, time_ms, validate


def create_app(config: Config) -> faust.App:
    if not config.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set: the faust worker needs Kafka")
    brokers = ";".join(f"kafka://{b.strip()}" for b in config.kafka_bootstrap_servers.split(","))
    n = config.topic_partitions
    app = faust.App(
        config.app_id,
        broker=brokers,
        store="memory://",
        processing_guarantee="exactly_once",
        topic_partitions=n,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.05,  # batch produce requests: the worker sends several messages per event
        producer_max_batch_size=1 << 20,
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(config.topic_events, partitions=n, **raw)
    dead_letters = app.topic(config.topic_dead_letters, partitions=n, **raw)
    call_records = app.topic(config.topic_call_records, partitions=n, **raw)
    kpis = app.topic(config.topic_kpis, partitions=n, **raw)
    evaluations = app.topic(config.topic_evaluations, partitions=n, **raw)
    fcr_notes = app.topic(internal_topic(config, "fcr-notes"), partitions=n, internal=True, **raw)
    deltas = app.topic(internal_topic(config, "window-deltas"), partitions=n, internal=True, **raw)
    observations = app.topic(internal_topic(config, "observations"), partitions=n, internal=True, **raw)
    alerts = app.topic(config.topic_alerts, partitions=n, **raw)
    sampling_inputs = app.topic(internal_topic(config, "sampling-inputs"), partitions=n, internal=True, **raw)
    rate_changes = app.topic(config.topic_sampling, partitions=n, **raw)
    decisions = app.topic(config.topic_sampling_decisions, partitions=n, **raw)
    review_queue = app.topic(config.topic_review_queue, partitions=n, **raw)

    processor = Processor(app.Table("calls", partitions=n), app.Table("agents", partitions=n),
                          app.GlobalTable("agent-profiles", partitions=n), app.Table("watermarks", partitions=n),
                          app.Table("evaluations", partitions=n), config.kpi, config.policy)
    fcr = FcrTracker(app.Table("fcr-callers", partitions=n), config.kpi)
    fcr_marks = Watermarks(app.Table("fcr-watermarks", partitions=n))
    windows = KpiAggregator(app.Table("kpi-windows", partitions=n), config.kpi)
    window_marks = Watermarks(app.Table("window-watermarks", partitions=n))
    monitor = QualityMonitor(app.Table("series", partitions=n))
    thresholds = ThresholdMonitor(app.Table("thresholds", partitions=n), sources=n)
    sampler = Sampler(app.Table("sampling-agents", partitions=n), app.Table("sampling-partitions", partitions=n),
                      processor.profiles, config.policy, config.sampling_key, n)

    def owned_by(partition: int, key_of=lambda key: key):
        return lambda key: partition_of(key_of(key), n) == partition

    async def send_deltas(pairs, source: list | None = None) -> None:
        """One message per series (all windows of one site, queue, team or agent) and event; from the
        per-event stage, with its partition and watermark (``source``) for the threshold judge."""
        by_series: dict[str, list] = {}
        for key, delta in pairs:
            by_series.setdefault(series_of(key), []).append([key, delta])
        for series, items in by_series.items():
            await deltas.send(key=series.encode(), value=orjson.dumps({"source": source, "deltas": items}))

    async def send_signals(signals) -> None:
        for agent, signal_id, signal, at in signals:
            await sampling_inputs.send(key=agent.encode(), value=orjson.dumps({"signal": [signal_id, signal, at]}))

    @app.agent(events)
    async def process(stream):
        async for event in stream.events():
            payload, message = event.value, event.message
            origin = f"{message.topic}/{message.partition}"
            try:
                valid = validate(payload)
            except InvalidEvent as exc:
                row = dead_letter(str(exc), payload, origin, str(message.offset))
                await dead_letters.send(key=event.key, value=orjson.dumps(row))
                continue
            update = processor.process(valid, str(message.partition), owned_by(message.partition))
            if update is None:
                continue
            if update.refused:
                row = dead_letter(update.refused, payload, origin, str(message.offset))
                await dead_letters.send(key=event.key, value=orjson.dumps(row))
                continue
            for record in update.records:
                await call_records.send(key=record["call_id"].encode(), value=orjson.dumps(record))
            for row in update.evaluations:
                await evaluations.send(key=row["evaluation_id"].encode(), value=orjson.dumps(row))
            for note in update.fcr:
                await fcr_notes.send(key=note["caller"].encode(), value=orjson.dumps(note))
            for series, value, at in update.observations:
                await observations.send(key=series.encode(), value=orjson.dumps([value, at]))
                for agent, site, metric in sampling_signal(series):
                    await sampling_inputs.send(key=agent.encode(), value=orjson.dumps({"observe": [site, metric, value]}))
            await send_deltas(update.deltas, [str(message.partition), processor.watermarks.marks[str(message.partition)]])
            for candidate in update.candidates:
                await sampling_inputs.send(key=candidate["agent_id"].encode(), value=orjson.dumps({"candidate": candidate}))
            await send_signals(update.signals)

    @app.agent(fcr_notes)
    async def first_call_resolution(stream):
        async for event in stream.events():
            note, partition = orjson.loads(event.value), event.message.partition
            await send_deltas(fcr.observe(note))
            watermark, due = fcr_marks.advance(str(partition), note["at_ms"])
            if due:
                await send_deltas(fcr.sweep(watermark, owned_by(partition)))

    @app.agent(deltas)
    async def aggregate(stream):
        async for event in stream.events():
            partition, latest = event.message.partition, 0
            message = orjson.loads(event.value)
            if message["source"]:
                thresholds.advance(event.key.decode(), *message["source"])
            for key, delta in message["deltas"]:
                windows.apply(key, delta)
                latest = max(latest, int(key.rsplit("|", 1)[1]))
            watermark, due = window_marks.advance(str(partition), latest)
            if due:
                windows.sweep(watermark, owned_by(partition, series_of))
            rows = windows.drain()
            for row in rows:
                await kpis.send(key=_row_key(row), value=orjson.dumps(row))
            for alert in thresholds.observe(rows):
                await alerts.send(key=alert["alert_id"].encode(), value=orjson.dumps(alert))

    @app.agent(observations)
    async def monitor_quality(stream):
        async for event in stream.events():
            value, at = orjson.loads(event.value)
            for alert in monitor.observe(event.key.decode(), value, at):
                await alerts.send(key=alert["alert_id"].encode(), value=orjson.dumps(alert))
                await send_signals(alert_signals(alert, config.policy, processor.profiles))

    @app.agent(sampling_inputs)
    async def sample(stream):
        async for event in stream.events():
            message, agent = orjson.loads(event.value), event.key.decode()
            partition = str(event.message.partition)
            if "observe" in message:
                sampler.observe(agent, *message["observe"], partition)
                continue
            if "candidate" in message:
                out = sampler.decide(message["candidate"], partition)
            else:
                out = sampler.signal(agent, *message["signal"])
            for row in out.rates:
                await rate_changes.send(key=row["agent_id"].encode(), value=orjson.dumps(row))
            for row in out.decisions:
                await decisions.send(key=row["call_id"].encode(), value=orjson.dumps(row))
            for row in out.reviews:
                await review_queue.send(key=row["call_id"].encode(), value=orjson.dumps(row))

    return app


def series_of(window_key: str) -> str:
    """``level|site|entity`` of a window key: the window stage is keyed by series."""
    return window_key.rsplit("|", 2)[0]


def _row_key(row: dict) -> bytes:
    return f"{row['level']}|{row['site_id']}|{row['entity_id']}|{row['window_s']}|{time_ms(row['window_start'])}".encode()
