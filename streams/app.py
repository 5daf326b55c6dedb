"""The faust worker: the stage graph (``callqa.core.graph``) with a Kafka topic in front of each stage.

One agent per stage takes micro-batches (``streams.take``: ``CALLQA_BATCH_EVENTS`` messages or
``STAGE_INPUT_BYTES`` at most, or one larger message), groups them by partition, keeps the messages
that continue each partition's input without a hole (``streams.continuity``) and runs that stage
partition's core on them, sending its outputs (sink rows as JSON arrays to the output topics, one
bundle per partition of each stage downstream) at once. At most every flush interval, when a rebalance
revokes partitions and on a clean stop, a stage partition is *checkpointed*, in this order:

1. the delivery of the outputs sent since the last checkpoint is awaited;
2. each group of state keys that changed is written to the stage's table (its changelog), in
   the stage's part order, ``meta`` (the progress mark) last, then the groups the core deleted keys
   from, without them, and their delivery awaited (a rebalance restores a table from its changelog up to
   the end it saw when it started);
3. the input taken since the last checkpoint is acked; faust commits acked offsets (at-least-once).

So saved state never runs ahead of what was sent, a crash re-processes at most the uncommitted input,
and the core's tags make that harmless (see ``callqa.core.graph``). Every partition of every stage
lives on the worker that owns the same partition of the events topic (faust co-partitions topics of
equal size); on assignment a stage partition is rebuilt from its table, which faust restores from
the changelog first. Agents' profiles are a GlobalTable (reference data every partition reads).

Events must be keyed by their contract key (``schemas.key_field``), partitioned with murmur2 as the
Java client does (``callqa.publish.Publisher``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, MutableMapping

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP

from callqa import kafka_security, metrics
from callqa.config import Config
from callqa.core.graph import GROUP_KEYS, PARTS, STAGES, Context, Output, make_stage, state_group
from callqa.core.ordering import BUSY
from callqa.partitions import partition_of
from callqa.topics import MAX_STATE_VALUE, MESSAGE_BYTES, TOPIC_CONFIG, changelog_topics, internal_topic
from streams.continuity import Continuity, LogProbe
from streams.gauges import WorkerGauges
from streams.replica import ChangelogReplica
from streams.take import take_events

SEP = b"\x1f"
WATCH_EVERY_S = 0.5
STALLED_AFTER_S = 5.0  # input left unapplied this long (in watchdog rounds), with nothing arriving: re-read it
UNCOMMITTED_AFTER_S = 30.0  # input applied but left uncommitted this long: re-read it (its acks were lost)
STAGE_INPUT_BYTES = 2 << 20  # a stage's batch holds at most this much input, or one larger message (``streams.take``)
# what one fetch brings of a partition (aiokafka's max_partition_fetch_bytes; a larger record still comes
# whole). With faust's 1 MiB, a worker catching up on a backlog of events fed its events stage alone: the
# stages downstream took their first input only once the whole backlog was applied (no KPI row meanwhile),
# and the window stage, without the FCR stage's progress, held every window of the backlog in memory
# (measured: first input after 42 s of an 8-day backlog; 64 KiB: after 1.5 s)
FETCH_BYTES = 64 << 10
log = logging.getLogger(__name__)


def packed(values: list) -> Iterator[bytes]:
    """``values`` as comma-joined JSON of about ``topics.MESSAGE_BYTES`` each (a larger value alone): every
    message fits callqa's topics (a broker's default limit is 1 MiB, a batch of rows can be many)."""
    chunk, size = [], 0
    for value in values:
        raw = orjson.dumps(value)
        if chunk and size + len(raw) > MESSAGE_BYTES:
            yield b",".join(chunk)
            chunk, size = [], 0
        chunk.append(raw)
        size += len(raw) + 1
    if chunk:
        yield b",".join(chunk)


def bundle_messages(bundle: dict) -> list[bytes]:
    """A bundle as the messages of a stage's input topic: its items ``packed``, the sender's marks on the
    last message only. A stage that took the watermark with the first part would judge the batch's
    later items late (drift charts and the sampler take them out of order, the window stage may have
    swept their window), while one process hands the whole bundle over at once.

    >>> [orjson.loads(m) for m in bundle_messages({"src": "events/0", "wm": 9, "idle": 0, "items": [[1], [2]]})]
    [{'src': 'events/0', 'wm': 9, 'idle': 0, 'items': [[1], [2]]}]
    >>> big = {"src": "events/0", "wm": 9, "idle": 0, "items": [["x" * MESSAGE_BYTES], ["y"]]}
    >>> [(m["wm"], len(m["items"])) for m in map(orjson.loads, bundle_messages(big))]
    [(None, 1), (9, 1)]
    """
    parts = list(packed(bundle["items"])) if bundle["items"] else [b""]
    marked = orjson.dumps({k: v for k, v in bundle.items() if k != "items"})[:-1] + b',"items":['
    unmarked = orjson.dumps({"src": bundle["src"], "wm": None, "idle": BUSY})[:-1] + b',"items":['
    return [(marked if i == len(parts) - 1 else unmarked) + items + b"]}" for i, items in enumerate(parts)]


class _Consumer(faust_kafka.Consumer):
    """faust's consumer that commits only input that was delivered, seeks safely, and keeps a
    duplicate-free ack list.

    - faust 0.15 takes any jump in a partition's offsets for a gap in the log and marks the missing
      offsets acked, but it also jumps when it dropped fetched records itself (around rebalances): that
      input would be committed unprocessed. Here nothing is marked acked unless delivered; the stage
      partition finds the hole and asks the log (``streams.continuity``); offsets truly absent are
      filled in with ``fill_gap``.
    - It can record one offset twice in its ack list (robinhood/faust#625, #559): its commit then
      advances one offset per commit interval. Repeats are dropped before each commit."""

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        return None

    async def _seek(self, partition, offset: int) -> None:
        """Seek in the consumer's own thread (faust seeks from the event loop's thread while aiokafka
        fetches in another: a fetch then found its partition's records gone, KeyError, worker down)."""
        await self._thread.call_thread(self._thread.seek, partition, offset)

    async def fill_gap(self, tp, first: int, last: int) -> None:
        """Offsets ``first..last`` are not in the log: let the commit pass them (with nothing committed
        yet the commit starts wherever the first delivered offset is: nothing to fill)."""
        if self._committed_offset.get(tp) is not None:
            await super()._add_gap(tp, first, last)

    def _new_offset(self, tp):
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    checkpoint = None  # create_app's: saves every stage partition's work taken since its last checkpoint

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        """On a clean stop (SIGTERM) what was taken is saved and committed before the consumer stops;
        work done after that is read again by the next owner."""
        if self.checkpoint is not None:
            try:
                await self.checkpoint()
                await self.consumer.commit()
            except Exception as exc:  # the input is read again: nothing is lost
                log.warning("checkpoint on stop failed: %r", exc)
        await super().on_stop()


class Tracked(dict):
    """A dict that remembers which keys were set or deleted since ``changed`` was last cleared (by
    every way of changing it: the core's parts are plain dicts to it), and the last value of each key
    deleted meanwhile (``removed``)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.changed: set[str] = set()
        self.removed: dict[str, object] = {}

    def clear_changes(self) -> None:
        self.changed.clear()
        self.removed.clear()

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        self.changed.add(key)
        self.removed.pop(key, None)

    def __delitem__(self, key):
        self.removed[key] = dict.__getitem__(self, key)
        dict.__delitem__(self, key)
        self.changed.add(key)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key, *default):
        if key in self:
            del self[key]
            return self.removed[key]
        return dict.pop(self, key, *default)

    def popitem(self):
        key = next(reversed(self))
        return key, self.pop(key)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self):
        for key in list(self):
            del self[key]


class Profiles(MutableMapping):
    """Agents' profiles over a faust GlobalTable of JSON bytes (decoded once per stored value); an
    agent not found, or a walk over all agents, first catches up with the changelog in Kafka
    (``streams.replica``; at most every ``CATCH_UP_EVERY_S``)."""

    CATCH_UP_EVERY_S = 0.5
    RETRY_AFTER_S = 10.0  # after a catch-up that stalled (the broker away): the event loop is not held meanwhile

    def __init__(self, table, partitions: int, replica: ChangelogReplica):
        self.table, self.partitions, self.replica = table, partitions, replica
        self._decoded: dict[bytes, tuple[bytes, dict]] = {}
        self._caught_up = 0.0

    def _catch_up(self) -> None:
        """Read the profiles written since the last catch-up (it holds the event loop: at most 2 s, and
        after one that stalled, not again for ``RETRY_AFTER_S``)."""
        now = time.monotonic()
        if now - self._caught_up < (self.RETRY_AFTER_S if self.replica.stalled else self.CATCH_UP_EVERY_S):
            return
        self._caught_up = now
        for key, raw in self.replica.catch_up():
            if raw is None:
                self.table.data.pop(key, None)
            else:
                self.table.data[key] = raw

    def __getitem__(self, agent: str) -> dict:
        key = agent.encode()
        if key not in self.table.data:
            self._catch_up()
        raw = self.table.data[key]
        held = self._decoded.get(key)
        if held is None or held[0] is not raw:
            held = self._decoded[key] = (raw, orjson.loads(raw))
        return held[1]

    def __setitem__(self, agent: str, profile: dict) -> None:
        key, raw = agent.encode(), orjson.dumps(profile)
        if self.table.data.get(key) == raw:
            return
        self.table.data[key] = raw
        self.table.send_changelog(partition_of(agent, self.partitions), key, raw)

    def __delitem__(self, agent: str) -> None:
        raise NotImplementedError("profiles are replaced, never deleted")

    def __iter__(self) -> Iterator[str]:
        self._catch_up()
        return (k.decode() for k in list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)


class StagePartition:
    """A stage partition's working state: loaded from its table, checkpointed back to it.

    The table holds one value per group of keys (``callqa.core.graph.state_group``: KPI windows by
    window; calls, callers and the like by when they were first saved, ``GROUP_KEYS`` to a group), so a
    checkpoint writes each changed group once, whatever the number of keys in it that changed, and
    the groups it writes hold the keys that changed and few others. A key stays in its group until
    it is deleted (groups named otherwise by an earlier version keep their keys)."""

    def __init__(self, name: str, partition: int, table, ctx: Context):
        self.name, self.partition, self.table = name, partition, table
        prefix = f"{partition}".encode() + SEP
        self.parts = {part: Tracked() for part in PARTS[name]}
        self.groups: dict[str, dict[str, set[str]]] = {part: {} for part in PARTS[name]}
        self.group_of: dict[str, dict[str, str]] = {part: {} for part in PARTS[name]}  # keys grouped by first save
        self.filling = {part: ("", GROUP_KEYS) for part in PARTS[name]}  # the group new keys go to, keys given it
        self.next_group = 0
        for key, value in list(table.data.items()):
            if key.startswith(prefix):
                _, part, group = (k.decode() for k in key.split(SEP, 2))
                values = orjson.loads(value)
                dict.update(self.parts[part], values)
                self.groups[part][group] = set(values)
                if state_group(part, next(iter(values))) is None:
                    self.group_of[part].update(dict.fromkeys(values, group))
                    if group.startswith("n") and group[1:].isdigit():
                        self.next_group = max(self.next_group, int(group[1:]) + 1)
        self.stage = make_stage(name, ctx, partition, self.parts, store_raw=True)  # raw_events: what it applied
        self.continuity = Continuity()
        self.last_input = time.monotonic()
        self.waiting = 0  # watchdog rounds in a row that found input pending with nothing arriving
        self.idle_sent = False
        self.lock = asyncio.Lock()  # a batch's processing and sending, or a checkpoint
        self.sent: list = []  # delivery futures of the outputs since the last checkpoint
        self.taken: list = []  # the input messages applied since the last checkpoint
        self.checkpointed = time.monotonic()
        self.frozen = False  # revoked: what it takes since is read again by the next owner, never saved

    def due(self, interval_s: float) -> bool:
        """Input taken, and no checkpoint for ``interval_s``."""
        return bool(self.taken) and time.monotonic() - self.checkpointed >= interval_s

    def save(self) -> list:
        """Write every group with a changed key to the table and its changelog, parts in order, the
        stage's ``meta`` (its progress mark) after the other parts; returns the changelog sends (faust
        futures) so the caller can await them before acking the input.

        What the core forgot since the last checkpoint (a window past its retention, a call past its
        re-delivery time, a caller with no verdict pending: what tells a repeat from new input) leaves
        the changelog only after ``meta``: before it, a group with deleted keys is written with their
        last values too. A checkpoint cut short before ``meta`` re-processes the input since the last
        one, and that input finds every key it changed at least as far on as the parts saved before it
        (a KPI window behind a call already saved, or gone, was started afresh: a second copy of its
        partial, counted twice); one cut after ``meta`` leaves deleted keys as they last were, which
        the next sweep deletes again (an older value would be taken again: a caller's settled FCR
        verdicts, counted twice)."""
        sends, after_meta = [], []
        prefix = str(self.partition).encode()
        for part in PARTS[self.name]:
            values, groups = self.parts[part], self.groups[part]
            dirty: dict[str, set[str]] = {}
            for k in values.changed:
                group = state_group(part, k)
                if group is None:
                    group = self.group_of[part].get(k) or self._new_key(part, k)
                dirty.setdefault(group, set()).add(k)
            for group, changed in sorted(dirty.items()):
                keys = groups.setdefault(group, set())
                keys.update(k for k in changed if k in values)
                keys.difference_update(k for k in changed if k not in values)
                key = SEP.join((prefix, part.encode(), group.encode()))
                current = {k: values[k] for k in keys}
                raw = orjson.dumps(current) if current else None
                if raw is None:
                    del groups[group]
                    self.table.data.pop(key, None)
                else:
                    self.table.data[key] = raw
                gone = {k: values.removed[k] for k in changed if k in values.removed}
                if not gone or part == "meta":
                    sends.append(self.table.send_changelog(self.partition, key, raw))
                    continue
                # now with the deleted keys' last values (they may have changed in place before they went)
                sends.append(self.table.send_changelog(self.partition, key, orjson.dumps(current | gone)))
                after_meta.append((key, raw))
            for k in values.removed:
                self.group_of[part].pop(k, None)
            values.clear_changes()
        return sends + [self.table.send_changelog(self.partition, key, raw) for key, raw in after_meta]

    def _new_key(self, part: str, key: str) -> str:
        """The group of a key saved for the first time (or deleted before its first save: its last
        value is written too): the part's newest group, or a new one when that one has had its share."""
        group, given = self.filling[part]
        if given >= GROUP_KEYS:
            group, given = f"n{self.next_group}", 0
            self.next_group += 1
        self.filling[part] = (group, given + 1)
        self.group_of[part][key] = group
        return group


def create_app(config: Config) -> faust.App:
    if not config.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set: the faust worker needs Kafka")
    brokers = ";".join(f"kafka://{b.strip()}" for b in config.kafka_bootstrap_servers.split(","))
    security = kafka_security.librdkafka(config)  # the worker's own confluent-kafka readers (replica, probe)
    n = config.topic_partitions
    config.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes its folder in it, not the parents
    app = App(
        config.app_id,
        broker=brokers,
        broker_credentials=kafka_security.faust_credentials(config),  # TLS and SASL of every aiokafka client
        store="memory://",
        datadir=str(config.data_dir / "faust"),  # faust's own files (nothing of callqa's state: that is in Kafka)
        processing_guarantee="at_least_once",
        topic_partitions=n,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,  # a killed worker's partitions move within seconds
        broker_heartbeat_interval=1.0,
        broker_commit_interval=config.flush_interval_s,
        producer_linger=0.005,
        consumer_max_fetch_size=FETCH_BYTES,
        producer_max_request_size=MAX_STATE_VALUE,
        producer_max_batch_size=1 << 20,
        stream_buffer_maxsize=20000,
        stream_wait_empty=False,  # input is acked by checkpoints (on revocation and stop too), not per message
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = {name: app.topic(config.topic_events if name == "events" else internal_topic(config, name),
                              partitions=n, internal=name != "events", config=TOPIC_CONFIG, **raw) for name in STAGES}
    outputs = {"dead_letters": config.topic_dead_letters, "call_records": config.topic_call_records,
               "kpi_windows": config.topic_kpis, "evaluations": config.topic_evaluations, "alerts": config.topic_alerts,
               "sampling_rates": config.topic_sampling, "sampling_decisions": config.topic_sampling_decisions,
               "review_queue": config.topic_review_queue, "detector_state": config.topic_detector_state,
               "raw_events": config.topic_raw_events}
    out_topics = {table: app.topic(name, partitions=n, config=TOPIC_CONFIG, **raw) for table, name in outputs.items()}
    tables = {name: app.Table(f"stage-{name}", partitions=n, key_type=bytes, value_type=bytes,
                              extra_topic_configs={"max.message.bytes": str(MAX_STATE_VALUE)}) for name in STAGES}
    profiles_table = app.GlobalTable("agent-profiles", partitions=n, key_type=bytes, value_type=bytes)
    assert {t.changelog_topic.get_topic_name() for t in [*tables.values(), profiles_table]} == set(changelog_topics(config))
    replica = ChangelogReplica(config.kafka_bootstrap_servers, profiles_table.changelog_topic.get_topic_name(),
                               f"{config.app_id}-replica", n, security)
    profiles = Profiles(profiles_table, n, replica)
    ctx = Context(config.kpi, config.policy, config.sampling_key, n, partition_of, profiles)
    working: dict[tuple[str, int], StagePartition] = {}
    gauges = WorkerGauges()  # open incidents and the review queue, from the rows sent (callqa.metrics)
    probe = LogProbe(config.kafka_bootstrap_servers, f"{config.app_id}-probe", security)

    @app.on_before_shutdown.connect
    async def close_readers(app, **kwargs) -> None:  # noqa: ARG001
        probe.close()
        replica.close()

    @app.on_partitions_assigned.connect
    async def start_afresh(app, assigned, **kwargs) -> None:  # noqa: ARG001
        """Whatever was built before this assignment (a partition that left may come back with newer
        state) is rebuilt from the restored tables."""
        working.clear()
        metrics.STAGE_LAG.clear()  # the partitions given away report no more
        gauges.keep(*({tp.partition for tp in assigned if tp.topic == inputs[stage].get_topic_name()}
                      for stage in ("monitor", "sampler")))
        metrics.publish_worker(gauges)

    def stage_partition(name: str, p: int) -> StagePartition:
        sp = working.get((name, p))
        if sp is None:
            sp = working[(name, p)] = StagePartition(name, p, tables[name], ctx)
            gauges.seed(name, p, sp.stage)
            metrics.publish_worker(gauges)
        return sp

    async def send(source: str, out: Output) -> list:
        if gauges.observe(source, out.rows):
            metrics.publish_worker(gauges)
        futures = []
        for table, rows in out.rows.items():
            for rows_json in packed(rows):
                futures.append(await out_topics[table].send(value=b"[" + rows_json + b"]"))
        for (stage, q), bundle in out.bundles(source, n).items():
            for value in bundle_messages(bundle):
                futures.append(await inputs[stage].send(partition=q, value=value))
        return futures

    async def stop_worker(what: str, exc: BaseException) -> None:
        """``what`` failed: the worker stops and its process exits non-zero (an orchestrator restarts it);
        logged once (a failure already being handled is not logged again)."""
        worker = app.beacon.root.data if app.beacon.root is not None else app
        if getattr(worker, "crash_reason", None) is None:
            log.critical("%s failed: %r: stopping the worker", what, exc)
            await worker.crash(exc)  # the process exits with the error once stopped
            asyncio.ensure_future(worker.stop())

    async def checkpoint(sp: StagePartition) -> None:
        """Save what a stage partition took since its last checkpoint: its outputs delivered first,
        then each changed state group written to the changelog once and delivered, then its input
        acked (faust commits acked offsets). A partition rebuilt or given away meanwhile is not saved:
        its input is read again."""
        async with sp.lock:
            if not sp.taken or sp.frozen or working.get((sp.name, sp.partition)) is not sp:
                return
            sent, taken = sp.sent, sp.taken
            sp.sent, sp.taken, sp.checkpointed = [], [], time.monotonic()
            try:
                await asyncio.gather(*sent)
                # a rebalance replays the changelog up to its end when it was asked: an unsent write
                # would be lost, so the input is acked only once its state is delivered
                await asyncio.gather(*sp.save())
            except Exception as exc:
                # the partition's state is past outputs or writes that were not delivered: only a process
                # that rebuilds it from its changelog and reads its unacked input again can go on
                await stop_worker(f"checkpoint of {sp.name}/{sp.partition}", exc)
                raise
            for message in taken:
                message.ack(app.consumer)

    async def checkpoint_all() -> None:
        for sp in list(working.values()):
            await checkpoint(sp)

    app.checkpoint = checkpoint_all

    @app.on_partitions_revoked.connect
    async def save_revoked(app, revoked, **kwargs) -> None:  # noqa: ARG001
        """Before a rebalance: save and commit what was taken, as Kafka Streams does on revocation; then
        nothing more is saved until the assignment rebuilds the partitions (a batch still in flight goes
        on with the state it has: rebuilding it now would read tables that are being restored)."""
        await checkpoint_all()
        await app.consumer.commit()
        for sp in working.values():
            sp.frozen = True

    @app.timer(interval=config.flush_interval_s / 4)
    async def checkpoint_due() -> None:
        """Checkpoint partitions whose input stopped arriving (the agents checkpoint busy ones)."""
        for sp in list(working.values()):
            if sp.due(config.flush_interval_s):
                await checkpoint(sp)

    async def continuous(sp: StagePartition, topic: str, messages: list) -> list:
        """The messages that continue a stage partition's input (``streams.continuity``); at a hole
        whose offsets the log holds, the partition is re-read from the hole (every time one shows:
        records still buffered behind it arrive first and are dropped)."""
        tp = TP(topic, sp.partition)
        while True:
            n, hole = sp.continuity.cut(sp.parts["meta"].get("through", -1), [m.offset for m in messages])
            if hole is None:
                return messages
            if hole not in sp.continuity.present:
                present = await asyncio.to_thread(probe.first_offset, topic, sp.partition, hole)
                if present is not None and present > hole:
                    log.info("%s/%d: offsets %d..%d are not in the log", topic, sp.partition, hole, present - 1)
                    sp.continuity.absent[hole] = present
                    await app.consumer.fill_gap(tp, hole, present - 1)
                    continue
                if present == hole:  # no answer (None): ask again when the hole shows next
                    sp.continuity.present.add(hole)
                log.warning("%s/%d: input offsets %d..%d were not delivered: re-reading from %d",
                            topic, sp.partition, hole, messages[n].offset - 1, hole)
            await app.consumer.seek(tp, hole)
            return messages[:n]

    def make_agent(name: str):
        topic = inputs[name]
        topic_name = topic.get_topic_name()

        async def run(stream):
            try:
                await process(stream)
            except Exception as exc:  # a stage that fails stops the worker: no half-running process
                await stop_worker(f"stage {name}", exc)
                raise

        async def process(stream):
            within = config.flush_interval_s if name == "windows" else config.batch_seconds
            async for events in take_events(stream, config.batch_events, STAGE_INPUT_BYTES, within):
                groups: dict[int, list] = {}
                for event in events:
                    event.message.incref()  # acked by the checkpoint that saves its effects, not now
                    groups.setdefault(event.message.partition, []).append(event.message)
                for p, messages in sorted(groups.items()):
                    sp = stage_partition(name, p)
                    async with sp.lock:
                        sp.last_input, sp.waiting, sp.idle_sent = time.monotonic(), 0, False
                        messages = await continuous(sp, topic_name, messages)
                        if not messages:
                            continue
                        if name == "events":
                            batch = [(m.offset, m.value, f"{m.topic}/{p}", str(m.offset)) for m in messages]
                        else:
                            batch = [(m.offset, orjson.loads(m.value)) for m in messages]
                        sp.sent += await send(f"{name}/{p}", sp.stage.process(batch))
                        metrics.STAGE_MESSAGES.labels(name).inc(len(messages))
                        sp.taken += messages
                    if sp.due(config.flush_interval_s):
                        await checkpoint(sp)

        run.__name__ = f"stage_{name}"
        return app.agent(topic, name=f"callqa.stage.{name}")(run)

    for name in STAGES:
        make_agent(name)

    names = {topic.get_topic_name(): name for name, topic in inputs.items()}

    @app.timer(interval=WATCH_EVERY_S)
    async def watch_inputs() -> None:
        """Between rebalances: announce a caught-up events partition downstream once, and re-read a
        stage partition whose input waits unapplied (``STALLED_AFTER_S``) or uncommitted
        (``UNCOMMITTED_AFTER_S``) with nothing arriving: the last records before the end of input can
        be dropped by faust with no later record to show the hole (see ``streams.continuity``). Waits
        are counted in rounds of this timer, so a loop busy with a long batch (which holds back every
        agent, and this timer too) is not taken for a stall."""
        try:
            await watch(app.consumer)
        except Exception as exc:  # a timer that fails would end silently: the worker stops instead
            await stop_worker("the input watchdog", exc)
            raise

    async def watch(consumer) -> None:
        def restoring() -> bool:  # no stage partition may be built from a partial table meanwhile
            return app.rebalancing or getattr(app, "in_recovery", False) or not consumer.flow_active

        now, idle = time.monotonic(), []
        for tp in list(consumer.assignment()):
            name = names.get(tp.topic)
            if name is None or restoring() or tp not in consumer.assignment():
                continue
            high = consumer.highwater(tp)
            if high is None:
                continue
            sp = stage_partition(name, tp.partition)
            quiet = now - sp.last_input
            committed = consumer._committed_offset.get(tp) or 0  # faust keeps no public accessor
            through = sp.parts["meta"].get("through", -1)
            applied = through + 1 if through >= 0 else committed
            metrics.STAGE_LAG.labels(name, str(tp.partition)).set(max(0, high - applied))
            start = min(committed, applied)
            sp.waiting = sp.waiting + 1 if start < high else 0
            waited = min(quiet, sp.waiting * WATCH_EVERY_S)
            if (applied < high and waited > STALLED_AFTER_S) or (committed < high and waited > UNCOMMITTED_AFTER_S):
                log.warning("%s/%d: offsets %d..%d unapplied or uncommitted for %.0f s: re-reading from %d",
                            tp.topic, tp.partition, start, high - 1, quiet, start)
                sp.last_input, sp.waiting = now, 0
                consumer.resume_partitions({tp})
                await consumer.seek(tp, start)
            elif name == "events" and not sp.idle_sent and quiet >= config.idle_after_s and committed >= high:
                # caught up, never finished: a partition empty so far may be sent input later, which
                # must then hold the others back as any partition's does (announced finished, it did not:
                # the others' items were taken first, its own then charted out of event-time order)
                sp.idle_sent = True
                idle.append((tp.partition, sp.stage.idle()))
        for partition, out in idle:
            await asyncio.gather(*await send(f"events/{partition}", out))

    return app
