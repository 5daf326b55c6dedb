"""The worker's state layout: what a stage partition checkpoints to its table is what it rebuilds from.

A table here is its data dict (faust's in-memory store holds the same bytes; the changelog replays
them): no Kafka is needed to check the layout itself. The Kafka path end to end is in
tests/test_faults_kafka.py.
"""
import random
from datetime import date

import orjson

from callqa.core.graph import STAGES, Context
from callqa.core.kpi import KpiConfig
from callqa.core.local import LocalGraph
from callqa.core.sampling import PolicyConfig
from callqa.partitions import partition_of
from streams.app import StagePartition
from sources.simulator import SimConfig, Simulator


class Table:
    def __init__(self):
        self.data, self.log = {}, []

    def send_changelog(self, partition, key, value):
        self.log.append((key, value))


def test_a_rebuilt_stage_partition_holds_what_was_checkpointed():
    """Events through every stage partition of a 2-partition graph, checkpointed after random
    batches: a stage partition rebuilt from its table after any checkpoint equals the live one
    (windows that expired, calls that closed and keys that were deleted included)."""
    rng = random.Random(5)
    config = KpiConfig(window_sizes_s=(900, 3600), call_timeout_s=1800, allowed_lateness_s=300, fcr_horizon_s=3600)
    tables = {name: Table() for name in STAGES}
    ctx = Context(config, PolicyConfig(), b"k", 2, partition_of, {})
    graph = LocalGraph({}, config, partitions=2)
    graph.ctx = ctx
    graph.stages = {(name, p): StagePartition(name, p, tables[name], ctx) for name in STAGES for p in range(2)}
    live = graph.stages
    graph.events.stages = {p: sp.stage for (name, p), sp in live.items() if name == "events"}
    graph.stages = {key: sp.stage for key, sp in live.items() if key[0] != "events"}
    events = list(Simulator(SimConfig(sites=1, agents_per_site=4, days=1, start=date(2024, 3, 4), seed=3)).events())
    events.sort(key=lambda e: e["event_type"] != "agent.profile")  # reference data first
    lines = [orjson.dumps(e) for e in events]
    checked = 0
    for i, line in enumerate(lines):
        graph.feed(line, "day", str(i))
        if rng.random() < 0.01 or i == len(lines) - 1:
            graph.flush()
            for sp in live.values():
                sp.save()
            for (name, p), sp in live.items():
                rebuilt = StagePartition(name, p, tables[name], ctx)
                assert {part: dict(v) for part, v in rebuilt.parts.items()} == \
                       {part: dict(v) for part, v in sp.parts.items()}, (name, p)
                checked += 1
    assert checked >= 50, checked
    assert all(sp.parts["meta"].get("through", -1) > 0 for sp in live.values()), "every stage partition took input"
    assert any(value is None for table in tables.values() for _, value in table.log)  # deletions were written


def test_a_profile_sent_to_every_partition_counts_on_its_own_partition_only():
    """The publisher sends ``agent.profile`` to every events partition (schemas.BROADCAST). A copy on a
    partition that is not the profile's own is applied to the profiles and is nothing else: not counted,
    not stored raw, not a dead letter when invalid. Reference data moves no event time, on any partition."""
    from callqa.core.graph import make_stage

    profiles: dict = {}
    ctx = Context(KpiConfig(), PolicyConfig(), b"k", 4, partition_of, profiles)
    profile = {"event_id": "p1", "event_type": "agent.profile", "schema_version": 1, "source": "hr",
               "event_time": "2024-03-06T07:00:00.000Z", "site_id": "s1", "agent_id": "a7", "team_id": "s1/t1",
               "hire_date": "2023-01-01", "tier": "middle"}
    own = partition_of("a7", 4)
    other = (own + 1) % 4
    raw, bogus = orjson.dumps(profile), orjson.dumps(profile | {"event_id": "p2", "tier": "bogus"})
    copy = make_stage("events", ctx, other, {}, store_raw=True)
    out = copy.process([(0, raw, "events", "0"), (1, bogus, "events", "1")])
    assert profiles["a7"]["team_id"] == "s1/t1"
    assert not out.counts and not out.rows.get("raw_events") and not out.rows.get("dead_letters")
    assert copy.meta.get("wm", 0) == 0
    mine = make_stage("events", ctx, own, {}, store_raw=True)
    out = mine.process([(0, raw, "events", "0"), (1, bogus, "events", "1")])
    assert out.counts["agent.profile"] == 1 and len(out.rows["raw_events"]) == 1 and len(out.rows["dead_letters"]) == 1
    assert mine.meta.get("wm", 0) == 0 and not mine.meta.get("leads")
