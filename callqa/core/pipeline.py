"""Validated events through the core: call assembly, agent states, FCR, then KPI windows.

``Processor.process`` is the per-event stage (keyed by call or agent id); ``FcrTracker`` is keyed by
caller; ``KpiAggregator`` by window. The embedded runner chains them in one process; the faust
worker puts a Kafka topic before each keyed stage. Each stage keeps a watermark (the latest event
time it has seen, per input partition) and sweeps its expiring state when the watermark has moved on
by ``SWEEP_EVERY_MS``.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

from schemas import time_ms

from .agents import AgentStates
from .assembly import CallAssembler, Update
from .kpi import KpiConfig
from .monitor import QualityMonitor
from .qa import QaAssembler

SWEEP_EVERY_MS = 60_000


class Watermarks:
    """Per-partition watermarks, kept in a mapping (a faust Table survives restarts) and sweep pacing."""

    def __init__(self, marks: MutableMapping[str, int]):
        self.marks = marks
        self._swept: dict[str, int] = {}

    def advance(self, partition: str, t: int) -> tuple[int, bool]:
        """(watermark, whether a sweep is due) after seeing event time ``t``."""
        current = self.marks.get(partition, 0)
        if t > current:
            self.marks[partition] = current = t
        due = current - self._swept.get(partition, 0) >= SWEEP_EVERY_MS
        if due:
            self._swept[partition] = current
        return current, due


class Processor:
    def __init__(self, calls: MutableMapping[str, dict], agents: MutableMapping[str, dict],
                 profiles: MutableMapping[str, dict], watermarks: MutableMapping[str, int],
                 evaluations: MutableMapping[str, dict], config: KpiConfig):
        self.profiles = profiles
        team_of = lambda agent: (profiles.get(agent) or {}).get("team_id")
        self.calls = CallAssembler(calls, config, team_of)
        self.agents = AgentStates(agents, config, team_of)
        self.qa = QaAssembler(evaluations, config, team_of)
        self.watermarks = Watermarks(watermarks)

    def process(self, event: dict, partition: str = "0", owns: Callable[[str], bool] = lambda key: True) -> Update | None:
        """Outputs of one validated event (None when it changes nothing)."""
        watermark, sweep = self.watermarks.advance(partition, time_ms(event["event_time"]))
        kind = event["event_type"]
        if kind.startswith("call."):
            update = self.calls.apply(event, watermark)
        elif kind == "agent.state_changed":
            update = Update(deltas=self.agents.apply(event, watermark))
        elif kind == "agent.profile":
            self.profiles[event["agent_id"]] = {"team_id": event["team_id"], "site_id": event["site_id"],
                                                "hire_date": event["hire_date"], "tier": event.get("tier")}
            update = None
        elif kind in ("evaluation.submitted", "speech.analyzed"):
            update = self.qa.apply(event)
        else:
            update = None  # recordings and ops events feed the sampling stage (later)
        if sweep:
            swept = self.calls.sweep(watermark, owns)
            if swept.records or swept.deltas or swept.fcr or swept.evaluations:
                update = update or Update()
                update.extend(swept)
        return update


STATE_PARTS = ("calls", "agents", "profiles", "watermarks", "callers", "windows", "evaluations", "series")


class Chain:
    """Every stage in one process (the embedded runner; tests): per-event stage → FCR → KPI windows,
    and observations → quality monitor → alerts (``update.alerts``).

    ``state`` holds one mapping per part of ``STATE_PARTS``; it is plain data, saved between runs.
    """

    def __init__(self, state: dict[str, dict], config: KpiConfig):
        from .fcr import FcrTracker
        from .kpi import KpiAggregator

        self.state = {part: state.setdefault(part, {}) for part in STATE_PARTS}
        self.processor = Processor(self.state["calls"], self.state["agents"], self.state["profiles"],
                                   self.state["watermarks"], self.state["evaluations"], config)
        self.fcr = FcrTracker(self.state["callers"], config)
        self.kpis = KpiAggregator(self.state["windows"], config)
        self.monitor = QualityMonitor(self.state["series"])
        self._settle = Watermarks({})

    def process(self, event: dict) -> Update | None:
        """Run one validated event through every stage; KPI deltas are applied to ``self.kpis``."""
        update = self.processor.process(event)
        deltas = list(update.deltas) if update else []
        for note in update.fcr if update else ():
            deltas += self.fcr.observe(note)
        watermark, due = self._settle.advance("0", time_ms(event["event_time"]))
        if due:
            deltas += self.fcr.sweep(watermark)
        for key, delta in deltas:
            self.kpis.apply(key, delta)
        if due:  # after applying: a verdict settling now still reaches its window
            self.kpis.sweep(watermark)
        for key, value, at in update.observations if update else ():
            update.alerts += self.monitor.observe(key, value, at)
        return update
