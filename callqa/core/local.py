"""The stage graph in one process: every stage partition, bundles handed over in memory.

Used by the embedded runner, ``callqa evaluate`` and the tests. Events are split over ``partitions``
by their contract key as Kafka's default partitioner does, each stage partition keeps its own state,
and bundles are copied on the way (as through Kafka), so the results are the faust worker's.
The whole state is ``{"offsets": {...}, stage: {partition: {part: {key: value}}}}``: plain data, saved
between runs.

The events stage (the heavy one) may run elsewhere: ``events`` makes what holds its partitions
(``EventsHere`` by default; ``callqa.backfill.EventProcesses`` runs them in worker processes). The
graph hands it each batch of input and delivers its results in the order one process would, so the
results and the state are the same wherever it runs.

>>> from callqa.core.kpi import KpiConfig
>>> from callqa.core.sampling import PolicyConfig
>>> graph = LocalGraph({}, KpiConfig(), PolicyConfig(), b"k", partitions=2)
>>> graph.feed(b'not json', "doc", "1")
>>> [row["reason"][:12] for row in graph.flush().rows["dead_letters"]]
['not valid JS']
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import orjson

from .graph import STAGES, Context, Output, event_partition, make_stage
from .kpi import KpiConfig
from .sampling import PolicyConfig

Sent = tuple[int, Output, dict]  # an events partition, its output and its bundles by (stage, partition)


def _copied(bundles: dict) -> dict:
    """Bundles as a consumer reads them from Kafka: copies, sharing nothing with the sender."""
    return {key: orjson.loads(orjson.dumps(bundle)) for key, bundle in bundles.items()}


class EventsHere:
    """The events stage's ``partitions`` in this process, over ``state`` (``{partition: parts}``).

    ``submit`` a batch (``{partition: messages}``), ``collect`` its results later (oldest first):
    per partition in order, the partition, its output and its bundles (copied). ``ahead``: batches a
    graph may leave uncollected while it runs the stages downstream (none here: nothing runs meanwhile)."""

    ahead = 0

    def __init__(self, ctx: Context, state: dict[str, dict], store_raw: bool = False,
                 partitions: Iterable[int] | None = None):
        self.ctx = ctx
        self.stages = {p: make_stage("events", ctx, p, state.setdefault(str(p), {}), store_raw)
                       for p in (range(ctx.partitions) if partitions is None else partitions)}
        self.state = state
        self._done: deque[list[Sent]] = deque()

    def run(self, batches: dict[int, list]) -> list[Sent]:
        """Each partition's messages through it; its bundles as they are (not copied)."""
        return [self._sent(p, self.stages[p].process(batches[p])) for p in sorted(batches)]

    def idle(self, finished: bool) -> list[Sent]:
        """Every partition's ``idle`` (see ``EventsStage.idle``)."""
        return [self._sent(p, stage.idle(finished)) for p, stage in sorted(self.stages.items())]

    def submit(self, batches: dict[int, list]) -> None:
        self._done.append([(p, out, _copied(bundles)) for p, out, bundles in self.run(batches)])

    def collect(self) -> list[Sent]:
        return self._done.popleft()

    def close(self) -> dict[str, dict]:
        """The partitions' state (``{partition: parts}``)."""
        return {str(p): self.state[str(p)] for p in self.stages}

    def _sent(self, p: int, out: Output) -> Sent:
        return p, out, out.bundles(f"events/{p}", self.ctx.partitions)


class LocalGraph:
    def __init__(self, state: dict, config: KpiConfig, policy: PolicyConfig = PolicyConfig(),
                 sampling_key: bytes = b"callqa-development", partitions: int = 1,
                 partition_of: Callable[[str, int], int] | None = None, store_raw: bool = False,
                 events: Callable[[Context, dict[str, dict], bool], EventsHere] = EventsHere):
        if partition_of is None:
            from callqa.partitions import partition_of  # murmur2, as Kafka's default partitioner (imported late: aiokafka's)
        self.state = state
        self.partitions = partitions
        self.partition_of = partition_of
        profiles = state.setdefault("profiles", {})
        self.ctx = Context(config, policy, sampling_key, partitions, partition_of, profiles)
        self.offsets: dict[str, int] = state.setdefault("offsets", {})
        self.events = events(self.ctx, state.setdefault("events", {}), store_raw)
        self.stages = {(name, p): make_stage(name, self.ctx, p, state.setdefault(name, {}).setdefault(str(p), {}), store_raw)
                       for name in STAGES[1:] for p in range(partitions)}
        self.inbox: dict[tuple[str, int], list] = {key: [] for key in [("events", p) for p in range(partitions)] + list(self.stages)}
        self._waiting = 0  # messages in the events stage's inboxes
        self._flying = 0  # batches submitted to the events stage, not yet collected
        self._carry = Output()  # results of runs made between flushes

    @property
    def pending(self) -> int:
        """Input not yet handed to the events stage (the stages downstream are quiet between calls)."""
        return self._waiting

    def _offset(self, stage: str, p: int) -> int:
        key = f"{stage}/{p}"
        self.offsets[key] = n = self.offsets.get(key, -1) + 1
        return n

    def feed(self, raw: bytes | dict, origin: str, position: str) -> None:
        """One event (serialized, or an adapter's dict) into its input partition. An agent's profile
        is reference data: what was fed before it runs first, so it applies to what follows it (the
        worker reads profiles from a global table, loaded before traffic)."""
        if isinstance(raw, dict):
            profile = raw.get("event_type") == "agent.profile"
        else:
            profile = (b'"agent.profile"' if isinstance(raw, bytes) else '"agent.profile"') in raw
        if profile:
            self._merge(self._carry, self._run(0))
        p = event_partition(raw, self.partitions, self.partition_of)
        self.inbox[("events", p)].append((self._offset("events", p), raw, origin, position))
        self._waiting += 1
        if profile:
            self._merge(self._carry, self._run(0))

    def advance(self) -> Output:
        """Hand what was fed to the events stage and run the batches it has finished through the
        stages downstream: their sink rows. The newest ``events.ahead`` batches may still be running
        (in other processes); ``flush`` waits for them."""
        out, self._carry = self._merge(self._carry, self._run(self.events.ahead)), Output()
        return out

    def flush(self) -> Output:
        """Run every stage until nothing is left to deliver; the sink rows of it all."""
        out, self._carry = self._merge(self._carry, self._run(0)), Output()
        return out

    def idle(self) -> Output:
        """The end of the input: every input partition is caught up, so nothing waits for more."""
        total = self.flush()
        for _, _, bundles in self.events.idle(finished=True):
            self._deliver(bundles)
        return self._merge(total, self._downstream())

    def close(self) -> None:
        """Stop the events stage (its processes, if any); its partitions' state into ``state``."""
        self.state["events"].update(self.events.close())

    def _run(self, ahead: int) -> Output:
        """Submit the events stage's input; collect its batches (each delivered in partition order,
        then the stages downstream run until quiet) until at most ``ahead`` are left running."""
        batches = {p: self.inbox[("events", p)] for p in range(self.partitions) if self.inbox[("events", p)]}
        if batches:
            for p in batches:
                self.inbox[("events", p)] = []
            self._waiting = 0
            self.events.submit(batches)
            self._flying += 1
        total = Output()
        while self._flying > ahead:
            self._flying -= 1
            for _, out, bundles in self.events.collect():
                self._deliver(bundles)
                self._merge(total, out)
            self._merge(total, self._downstream())
        return total

    def _downstream(self) -> Output:
        total = Output()
        busy = True
        while busy:
            busy = False
            for name in STAGES[1:]:
                for p in range(self.partitions):
                    messages = self.inbox[(name, p)]
                    if not messages:
                        continue
                    self.inbox[(name, p)] = []
                    out = self.stages[(name, p)].process(messages)
                    self._deliver(_copied(out.bundles(f"{name}/{p}", self.partitions)))
                    self._merge(total, out)
                    busy = True
        return total

    def _deliver(self, bundles: dict) -> None:
        for (stage, p), bundle in bundles.items():
            self.inbox[(stage, p)].append((self._offset(stage, p), bundle))

    @staticmethod
    def _merge(total: Output, out: Output) -> Output:
        for table, rows in out.rows.items():
            total.rows.setdefault(table, []).extend(rows)
        total.counts.update(out.counts)
        return total
