"""What the worker's stage partitions hold open, kept from the rows they send (pure: ``streams.app``
publishes the counts as ``callqa.metrics`` gauges).

- **Open incidents by scope level.** An incident is an ``alerts`` row of kind ``incident``: open from its
  ``open`` row until a ``closed`` or ``merged`` one, at the level of its latest row (``widened`` and
  ``narrowed`` change its scope). Kept by incident id, so an incident's updates, and rows sent again after
  a restart, count it once. A monitor stage partition built from its saved state (after a restart or a
  rebalance) starts from the incidents that state holds open (``seed``): the count is exact.
- **Review queue.** Calls a sampler stage partition queued (``review_queue`` rows, status ``queued``)
  and neither dropped since (status ``dropped``) nor evaluated (an ``evaluations`` row of the call of any
  kind but ``auto``: evaluations are keyed by agent, as the sampler is, so they come out of the events
  partition of the same number, on the same worker), in the partition's latest ``REVIEW_DAYS`` queue days
  (a call queued earlier and never reviewed is let go). Counted from the rows sent since this worker took the
  partition on (the sampler's state keeps only today's queue, not what was evaluated): the store's own
  count is ``sinks.queries.REVIEW_BACKLOG``.

Stage partitions are keyed by their number; after a rebalance ``keep`` lets go of those given away.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from callqa.core.incidents import LEVELS

CLOSED = ("closed", "merged")
REVIEW_DAYS = 7


class WorkerGauges:
    def __init__(self) -> None:
        self.incidents: dict[int, dict[str, str]] = {}  # monitor partition -> incident id -> scope level
        self.queue: dict[int, dict[str, str]] = {}  # sampler partition -> call id -> queue day

    def observe(self, source: str, rows: Mapping[str, list[dict]]) -> bool:
        """The rows a stage partition (``source``: ``stage/partition``) sends; whether a count may have moved."""
        alerts, reviews, evaluations = rows.get("alerts"), rows.get("review_queue"), rows.get("evaluations")
        if not (alerts or reviews or evaluations):
            return False
        partition = int(source.rsplit("/", 1)[1])
        for row in alerts or ():
            if row.get("kind") == "incident":
                held = self.incidents.setdefault(partition, {})
                if row["status"] in CLOSED:
                    held.pop(row["alert_id"], None)
                else:
                    held[row["alert_id"]] = row["level"]
        if reviews:
            queue = self.queue.setdefault(partition, {})
            for row in reviews:
                if row["status"] == "queued":
                    queue[row["call_id"]] = row["day"]
                else:
                    queue.pop(row["call_id"], None)
            latest = max(queue.values(), default=None)
            if latest is not None and min(queue.values()) <= (gone := _days_before(latest, REVIEW_DAYS)):
                self.queue[partition] = {c: d for c, d in queue.items() if d > gone}
        for row in evaluations or ():
            if row.get("kind") != "auto" and row.get("call_id"):
                self.queue.get(partition, {}).pop(row["call_id"], None)
        return True

    def seed(self, name: str, partition: int, stage) -> None:
        """A stage partition just built from its saved state: a monitor's open incidents are those it holds."""
        if name == "monitor":
            self.incidents[partition] = {i["id"]: i["level"] for i in stage.monitor.incidents.open.values()}

    def keep(self, incidents: Iterable[int], queue: Iterable[int]) -> None:
        """After a rebalance: only the monitor and sampler partitions this worker still has."""
        incidents, queue = set(incidents), set(queue)
        self.incidents = {p: v for p, v in self.incidents.items() if p in incidents}
        self.queue = {p: v for p, v in self.queue.items() if p in queue}

    def open_incidents(self) -> dict[str, int]:
        """Open incidents by scope level (every level, 0 when none)."""
        counts = dict.fromkeys(LEVELS, 0)
        for held in self.incidents.values():
            for level in held.values():
                counts[level] = counts.get(level, 0) + 1
        return counts

    def review_queue(self) -> int:
        return sum(len(q) for q in self.queue.values())


def _days_before(day: str, days: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()
