"""The worker's state layout: what a stage partition checkpoints to its table is what it rebuilds from.

A table here is its data dict (faust's in-memory store holds the same bytes; the changelog replays
them): no Kafka is needed to check the layout itself. The Kafka path end to end is in
tests/test_faults_kafka.py.
"""
import random
import socket
import time
from datetime import date

import orjson
import pytest

from callqa.core.graph import STAGES, Context, event_partition, make_stage
from callqa.core.partials import WindowSums
from callqa.core.kpi import KpiConfig
from callqa.core.local import LocalGraph
from callqa.core.sampling import PolicyConfig
from callqa.partitions import partition_of
from streams.app import Profiles, StagePartition
from streams.replica import ChangelogReplica
from sources.simulator import SimConfig, Simulator
from tests.test_core import answered_call


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


def test_a_checkpoint_rewrites_the_groups_of_the_calls_that_changed_not_the_whole_part():
    """Two simulated days of two sites on one events partition, a checkpoint every 40 events: once 300
    calls are held (finished calls are kept a day to know a re-delivery), a checkpoint writes the groups
    of the few calls that changed, not most of the calls held (grouped by hash, nearly every group held
    a changed call: a checkpoint rewrote two thirds of the part, more as the part grew)."""
    config = KpiConfig(window_sizes_s=(900, 3600), call_timeout_s=1800, allowed_lateness_s=300, fcr_horizon_s=3600)
    ctx = Context(config, PolicyConfig(), b"k", 1, partition_of, {})
    events = list(Simulator(SimConfig(sites=2, agents_per_site=6, days=2, start=date(2024, 3, 4), seed=4)).events())
    events.sort(key=lambda e: e["event_type"] != "agent.profile")
    lines, table = [orjson.dumps(e) for e in events], Table()
    sp = StagePartition("events", 0, table, ctx)
    written = held = checkpoints = 0
    for start in range(0, len(lines), 40):
        sp.stage.process([(o, lines[o], "day", str(o)) for o in range(start, min(len(lines), start + 40))])
        before = len(table.log)
        sp.save()
        if len(sp.parts["calls"]) > 300:
            checkpoints += 1
            held += len(sp.parts["calls"])
            written += sum(len(orjson.loads(value)) for key, value in table.log[before:]
                           if value is not None and key.split(b"\x1f")[1] == b"calls")
    assert checkpoints > 50, checkpoints
    assert written < held / 4, (written / checkpoints, held / checkpoints)
    rebuilt = StagePartition("events", 0, table, ctx)
    assert dict(rebuilt.parts["calls"]) == dict(sp.parts["calls"])


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



def _replayed(log: list) -> dict:
    """A table rebuilt from the writes of its changelog that landed (a compacted log: the last value of a key)."""
    data = {}
    for key, value in log:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


class Run:
    """An events stage partition over ``lines`` (a checkpoint after each batch), and what it sent: every
    partial window into one ``WindowSums`` (the window stage keeps each partial's newest version), the
    newest record of each call."""

    def __init__(self, ctx, lines, sums=None, records=None):
        self.ctx, self.lines, self.outputs = ctx, lines, []
        self.sums = sums or WindowSums({}, ctx.kpi)
        self.records = {} if records is None else records

    def take(self, out) -> None:
        for (stage, _), items in out.items.items():
            for _, key, generation, version, counters in items if stage == "windows" else ():
                self.sums.apply(key, generation, version, counters)
        for record in out.rows.get("call_records", []):
            if record["version"] >= self.records.get(record["call_id"], {"version": 0})["version"]:
                self.records[record["call_id"]] = record

    stage = "events"

    def messages(self, batch: range) -> list:
        return [(o, self.lines[o], "day", str(o)) for o in batch]

    def run(self, table, batches: list[range]) -> list[tuple[int, int]]:
        """Each batch, then a checkpoint; per checkpoint, where its writes begin and end in the table's log."""
        sp, marks = StagePartition(self.stage, 0, table, self.ctx), []
        for batch in batches:
            out = sp.stage.process(self.messages(batch))
            self.outputs.append(out)
            self.take(out)
            before = len(table.log)
            sp.save()
            marks.append((before, len(table.log)))
        return marks

    def windows(self) -> dict:
        return {key: self.sums.row(key) for key in self.sums.windows if "gone" not in self.sums.windows[key]}


def cut_short(whole: Run, table: Table, marks: list, batches: list[range], cut: int, landed: int | None = None) -> Run:
    """``whole``'s run again with a crash while checkpoint ``cut`` was written (``table``, ``marks``: what
    ``whole`` wrote): the first ``landed`` of its writes reached the changelog (None: all but ``meta``, the
    progress mark, and what follows it). The next owner rebuilds the stage partition from that and
    re-processes the input from the last whole checkpoint on."""
    crashed = type(whole)(whole.ctx, whole.lines)
    for out in whole.outputs[:cut + 1]:  # sent before the checkpoint that was cut
        crashed.take(out)
    begin, end = marks[cut]
    if landed is None:
        landed = max(n for n in range(begin, end) if table.log[n][0].split(b"\x1f")[1] == b"meta") - begin
    rebuilt = Table()
    rebuilt.data = _replayed(table.log[:begin + landed])
    crashed.run(rebuilt, batches[cut:])
    return crashed


def test_windows_forgotten_in_a_checkpoint_cut_short_are_not_counted_again():
    """Calls of a window, a checkpoint, one more call of it and the next day's calls, which move event
    time past two of the partial windows' retentions (a day's QA reviews come the next morning): the
    window is swept and forgotten within one checkpoint interval. Cut that checkpoint before its progress
    mark: the re-processed input must find the window as it left it (it was rebuilt blank, a second copy
    of the partial, and its calls counted twice)."""
    config = KpiConfig(window_sizes_s=(900,), call_timeout_s=1800, allowed_lateness_s=300)
    ctx = Context(config, PolicyConfig(), b"k", 1, partition_of, {})
    events = answered_call("c1", 0, 10, 100) + answered_call("c2", 60, 10, 100)
    first = len(events)
    events += answered_call("c3", 120, 10, 100)  # the same window, after the checkpoint
    for n, t in enumerate((86_400, 86_410, 86_700, 86_710, 87_000, 87_010)):
        events += answered_call(f"next-{n}", t, 5, 30, agent="a2")
    lines = [orjson.dumps(e) for e in events]
    batches = [range(first), range(first, len(lines))]
    whole, table = Run(ctx, lines), Table()
    marks = whole.run(table, batches)
    (nine,) = [row for key, row in whole.windows().items() if key.startswith("site|S|S|900|") and row["answered"] == 3]
    crashed = cut_short(whole, table, marks, batches, cut=1)
    assert crashed.windows() == whole.windows(), nine
    assert crashed.records == whole.records


def test_a_checkpoint_cut_short_anywhere_changes_no_result():
    """A simulated day of two sites on one events partition, checkpointed after batches of 5-120 events;
    checkpoints in turn cut short, before the progress mark or anywhere among their writes: every KPI
    window and call record ends as on the run with no crash."""
    config = KpiConfig(window_sizes_s=(900, 3600), call_timeout_s=1800, allowed_lateness_s=300, fcr_horizon_s=3600)
    events = list(Simulator(SimConfig(sites=2, agents_per_site=2, days=1, start=date(2024, 3, 4), seed=2)).events())
    events.sort(key=lambda e: e["event_type"] != "agent.profile")
    ctx = Context(config, PolicyConfig(), b"k", 1, partition_of, {})
    lines = [orjson.dumps(e) for e in events]
    rng, batches, i = random.Random(2), [], 0
    while i < len(lines):
        batches.append(range(i, min(len(lines), i + rng.randint(5, 120))))
        i = batches[-1].stop
    whole, table = Run(ctx, lines), Table()
    marks = whole.run(table, batches)
    assert sum(row["answered"] for key, row in whole.windows().items() if key.startswith("site|")) > 100
    for cut in range(0, len(batches), 2):
        begin, end = marks[cut]
        for landed in (None, rng.randint(0, end - begin)):
            crashed = cut_short(whole, table, marks, batches, cut, landed)
            assert crashed.windows() == whole.windows(), (cut, landed)
            assert crashed.records == whole.records, (cut, landed)


def _fcr_input(ctx: Context, seed: int) -> list[dict]:
    """The FCR stage's input from two events partitions (a simulated two days), as read from Kafka:
    their bundles interleaved at random, after batches of 10-100 events."""
    events = [orjson.dumps(e) for e in Simulator(SimConfig(sites=2, agents_per_site=3, days=2, start=date(2024, 3, 4),
                                                           seed=seed)).events()]
    rng, bundles = random.Random(seed), []
    stages = {p: make_stage("events", ctx, p, {}) for p in range(2)}
    lines = {p: [e for e in events if event_partition(e, 2, partition_of) == p] for p in range(2)}
    done = {0: 0, 1: 0}
    while done[0] < len(lines[0]) or done[1] < len(lines[1]):
        p = rng.choice([q for q in range(2) if done[q] < len(lines[q])])
        batch = [(o, lines[p][o], "day", str(o)) for o in range(done[p], min(len(lines[p]), done[p] + rng.randint(10, 100)))]
        done[p] = batch[-1][0] + 1
        bundles += [b for (stage, q), b in stages[p].process(batch).bundles(f"events/{p}", 2).items() if (stage, q) == ("fcr", 0)]
    for p in range(2):
        bundles += [b for (stage, q), b in stages[p].idle(finished=True).bundles(f"events/{p}", 2).items() if (stage, q) == ("fcr", 0)]
    return [orjson.loads(orjson.dumps(b)) for b in bundles]


class BundleRun(Run):
    """A stage downstream of the events stage: its partition 0 over its input bundles (``lines``)."""

    def messages(self, batch: range) -> list:
        return [(o, self.lines[o]) for o in batch]


class FcrRun(BundleRun):
    """The FCR stage's partition 0, a checkpoint after each batch."""

    stage = "fcr"


class WindowsRun(BundleRun):
    """The window stage's partition 0, a checkpoint after each batch, and the threshold alerts it sent as
    the table keeps them (the last row of each alert, status and time)."""

    stage = "windows"

    def __init__(self, ctx, lines):
        super().__init__(ctx, lines)
        self.alerts: dict[tuple, dict] = {}

    def take(self, out) -> None:
        for alert in out.rows.get("alerts", []):
            self.alerts[(alert["alert_id"], alert["at"], alert["status"])] = alert


@pytest.mark.parametrize("seed", [1, 2])
def test_an_fcr_checkpoint_cut_short_anywhere_changes_no_result(seed):
    """The FCR stage fed two events partitions' bundles, checkpointed after every 1-8; each checkpoint cut
    short before its progress mark (at random, and right before it) or right after it, the groups the core
    deleted keys from not yet rewritten without them: every FCR verdict counts once. Before the mark, a
    caller saved ahead must not take the re-processed input again (a caller forgotten in the interval was
    started afresh: a call its forgotten arrivals had made a repeat was counted resolved); after it, the
    callers it forgot come back as they last were and go again (a caller came back as of the checkpoint
    before, its verdicts pending: they were settled and counted again)."""
    config = KpiConfig(window_sizes_s=(300, 900, 3600), call_timeout_s=1800, allowed_lateness_s=300,
                       fcr_horizon_s=3600)
    ctx = Context(config, PolicyConfig(), b"k", 2, partition_of, {})
    bundles = _fcr_input(ctx, seed)
    rng, batches, i = random.Random(seed), [], 0
    while i < len(bundles):
        batches.append(range(i, min(len(bundles), i + rng.randint(1, 8))))
        i = batches[-1].stop
    whole, table = FcrRun(ctx, bundles), Table()
    marks = whole.run(table, batches)
    assert sum(row.get("fcr_resolved", 0) for key, row in whole.windows().items() if key.startswith("site|")) > 300
    cut_after = 0
    for cut, (begin, end) in enumerate(marks):
        meta = max(n for n in range(begin, end) if table.log[n][0].split(b"\x1f")[1] == b"meta") - begin
        for landed in {None, rng.randint(0, meta)}:
            crashed = cut_short(whole, table, marks, batches, cut, landed)
            assert crashed.windows() == whole.windows(), (cut, landed)
        if meta < end - begin - 1:  # keys were deleted in this interval
            cut_after += 1
            crashed = cut_short(whole, table, marks, batches, cut, meta + 1)
            assert crashed.windows() == whole.windows(), (cut, "after meta")
    assert cut_after >= 5, cut_after


def test_a_window_stage_checkpoint_cut_short_changes_no_threshold_alert():
    """A site's two days through the events and FCR stages into the window stage, checkpointed after
    every 1-6 bundles; every third checkpoint cut short right before its progress mark: the threshold
    alerts stored (the last row of each alert, status and time) are those of the run with no crash. The
    windows were saved ahead of the threshold state: a window judged in the interval was judged again on
    figures that had moved on, one first seen in it never (4 of 101 checkpoints changed 13-28 alert rows)."""
    config = KpiConfig(window_sizes_s=(900, 3600), call_timeout_s=1800, allowed_lateness_s=300, fcr_horizon_s=3600)
    ctx = Context(config, PolicyConfig(), b"k", 1, partition_of, {})
    lines = [orjson.dumps(e) for e in Simulator(SimConfig(sites=1, agents_per_site=10, days=2, start=date(2024, 3, 4),
                                                          seed=1)).events()]
    rng, bundles, fcr_input = random.Random(1), [], []
    events, fcr = make_stage("events", ctx, 0, {}), make_stage("fcr", ctx, 0, {})

    def sent(out, source):
        made = {stage: orjson.loads(orjson.dumps(b)) for (stage, _), b in out.bundles(source, 1).items()}
        if "windows" in made:
            bundles.append(made["windows"])
        if "fcr" in made:
            fcr_input.append(made["fcr"])
            sent(fcr.process([(len(fcr_input) - 1, made["fcr"])]), "fcr/0")

    done = 0
    while done < len(lines):
        step = rng.randint(10, 100)
        sent(events.process([(o, lines[o], "day", str(o)) for o in range(done, min(len(lines), done + step))]), "events/0")
        done += step
    sent(events.idle(finished=True), "events/0")
    batches, i = [], 0
    while i < len(bundles):
        batches.append(range(i, min(len(bundles), i + rng.randint(1, 6))))
        i = batches[-1].stop
    whole, table = WindowsRun(ctx, bundles), Table()
    marks = whole.run(table, batches)
    assert len(whole.alerts) > 20 and {a["status"] for a in whole.alerts.values()} == {"open", "update", "cleared"}
    for cut in range(0, len(batches), 3):
        assert cut_short(whole, table, marks, batches, cut).alerts == whole.alerts, cut


class _Held:
    """A faust table's local data, as ``Profiles`` reads it."""

    def __init__(self):
        self.data = {}


def test_profiles_with_the_broker_away_hold_the_event_loop_briefly_then_not_again_for_a_while():
    """The profiles' replica reads Kafka in the event loop's thread. With no broker answering (a port
    nothing listens on: librdkafka as with the broker down), a catch-up gives up within its timeout and
    stalls; lookups of unknown agents then do not ask Kafka again for ``RETRY_AFTER_S`` (each asked every
    half second, holding the loop 5 s at a time: the worker's timers stopped for half a minute in a
    broker outage)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asked = []

    class Counted(ChangelogReplica):
        def catch_up(self, timeout_s: float = 2.0):
            started = time.monotonic()
            try:
                return super().catch_up(timeout_s)
            finally:
                asked.append(time.monotonic() - started)

    replica = Counted(f"127.0.0.1:{port}", "profiles", "callqa-test", 8, {"socket.connection.setup.timeout.ms": 1000})
    profiles = Profiles(_Held(), 8, replica)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert profiles.get("a1") is None
            time.sleep(0.1)
    finally:
        replica.close()
    assert len(asked) == 1 and asked[0] < 2 + 1, asked
    assert replica.stalled
