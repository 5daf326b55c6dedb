"""The faust application.

    events ──► assemble (validate; per call, table ``calls``) ──► call records, window deltas
                 └─ invalid ──► dead letters
    window deltas (keyed by window) ──► aggregate (per window, table ``kpi-windows``) ──► KPI rows

Both agents run the pure core (``callqa.core``) with faust Tables as its state, so a restarted
worker resumes from the changelogs. Exactly-once processing keeps table updates, output messages
and input offsets in one Kafka transaction: a crash never applies an event twice.
Events must be keyed by their contract key (``schemas.key_field``): the call id for call events.
"""
from __future__ import annotations

import faust
import orjson

from callqa.config import Config
from callqa.core.dead_letters import dead_letter
from callqa.core.kpi import KpiAggregator
from callqa.core.pipeline import Processor
from schemas import InvalidEvent, validate


def create_app(config: Config) -> faust.App:
    if not config.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set: the faust worker needs Kafka")
    brokers = ";".join(f"kafka://{b.strip()}" for b in config.kafka_bootstrap_servers.split(","))
    partitions = config.topic_partitions
    app = faust.App(
        config.app_id,
        broker=brokers,
        store="memory://",
        processing_guarantee="exactly_once",
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.05,  # batch produce requests: the worker sends several messages per event
        producer_max_batch_size=1 << 20,
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(config.topic_events, partitions=partitions, **raw)
    dead_letters = app.topic(config.topic_dead_letters, partitions=partitions, **raw)
    call_records = app.topic(config.topic_call_records, partitions=partitions, **raw)
    kpis = app.topic(config.topic_kpis, partitions=partitions, **raw)
    deltas = app.topic(f"{config.app_id}-window-deltas", partitions=partitions, internal=True, **raw)

    processor = Processor(app.Table("calls", partitions=partitions), config.kpi_windows)
    aggregator = KpiAggregator(app.Table("kpi-windows", partitions=partitions))

    @app.agent(events)
    async def assemble(stream):
        async for event in stream.events():
            payload = event.value
            try:
                valid = validate(payload)
            except InvalidEvent as exc:
                origin = f"{event.message.topic}/{event.message.partition}"
                row = dead_letter(str(exc), payload, origin, str(event.message.offset))
                await dead_letters.send(key=event.key, value=orjson.dumps(row))
                continue
            update = processor.process(valid)
            if update is None:
                continue
            if update.record is not None:
                await call_records.send(key=update.record["call_id"].encode(), value=orjson.dumps(update.record))
            for key, delta in update.deltas:
                await deltas.send(key=key.encode(), value=orjson.dumps(delta))

    @app.agent(deltas)
    async def aggregate(stream):
        async for event in stream.events():
            row = aggregator.apply(event.key.decode(), orjson.loads(event.value))
            await kpis.send(key=event.key, value=orjson.dumps(row))

    return app
