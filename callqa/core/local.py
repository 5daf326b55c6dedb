"""The stage graph in one process: every stage partition, bundles handed over in memory.

Used by the embedded runner, ``callqa evaluate`` and the tests. Events are split over ``partitions``
by their contract key as Kafka's default partitioner does, each stage partition keeps its own state,
and bundles are copied on the way (as through Kafka), so the results are the faust worker's.
The whole state is ``{"offsets": {...}, stage: {partition: {part: {key: value}}}}``: plain data, saved
between runs.

>>> from callqa.core.kpi import KpiConfig
>>> from callqa.core.sampling import PolicyConfig
>>> graph = LocalGraph({}, KpiConfig(), PolicyConfig(), b"k", partitions=2)
>>> graph.feed(b'not json', "doc", "1")
>>> [row["reason"][:12] for row in graph.flush().rows["dead_letters"]]
['not valid JS']
"""
from __future__ import annotations

from collections.abc import Callable

import orjson

from .graph import STAGES, Context, Output, event_partition, make_stage
from .kpi import KpiConfig
from .sampling import PolicyConfig


class LocalGraph:
    def __init__(self, state: dict, config: KpiConfig, policy: PolicyConfig = PolicyConfig(),
                 sampling_key: bytes = b"callqa-development", partitions: int = 1,
                 partition_of: Callable[[str, int], int] | None = None, store_raw: bool = False):
        if partition_of is None:
            from callqa.partitions import partition_of  # murmur2, as Kafka's default partitioner (imported late: aiokafka's)
        self.state = state
        self.partitions = partitions
        self.partition_of = partition_of
        profiles = state.setdefault("profiles", {})
        self.ctx = Context(config, policy, sampling_key, partitions, partition_of, profiles)
        self.offsets: dict[str, int] = state.setdefault("offsets", {})
        self.stages = {(name, p): make_stage(name, self.ctx, p, state.setdefault(name, {}).setdefault(str(p), {}), store_raw)
                       for name in STAGES for p in range(partitions)}
        self.inbox: dict[tuple[str, int], list] = {key: [] for key in self.stages}
        self._carry = Output()  # results of runs made between flushes

    @property
    def pending(self) -> int:
        return sum(len(m) for m in self.inbox.values())

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
            self._merge(self._carry, self._run())
        p = event_partition(raw, self.partitions, self.partition_of)
        self.inbox[("events", p)].append((self._offset("events", p), raw, origin, position))
        if profile:
            self._merge(self._carry, self._run())

    def flush(self) -> Output:
        """Run every stage until nothing is left to deliver; the sink rows of it all."""
        out, self._carry = self._merge(self._carry, self._run()), Output()
        return out

    def idle(self) -> Output:
        """The end of the input: every input partition is caught up, so nothing waits for more."""
        total = self.flush()
        for p in range(self.partitions):
            self._deliver(f"events/{p}", self.stages[("events", p)].idle(finished=True))
        return self._merge(total, self._run())

    def _run(self) -> Output:
        total = Output()
        busy = True
        while busy:
            busy = False
            for name in STAGES:
                for p in range(self.partitions):
                    messages = self.inbox[(name, p)]
                    if not messages:
                        continue
                    self.inbox[(name, p)] = []
                    out = self.stages[(name, p)].process(messages)
                    self._deliver(f"{name}/{p}", out)
                    self._merge(total, out)
                    busy = True
        return total

    def _deliver(self, source: str, out: Output) -> None:
        for (stage, p), bundle in out.bundles(source, self.partitions).items():
            self.inbox[(stage, p)].append((self._offset(stage, p), orjson.loads(orjson.dumps(bundle))))

    @staticmethod
    def _merge(total: Output, out: Output) -> Output:
        for table, rows in out.rows.items():
            total.rows.setdefault(table, []).extend(rows)
        total.counts.update(out.counts)
        return total
