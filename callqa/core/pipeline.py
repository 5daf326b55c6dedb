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
from .sampling import PolicyConfig, Sampler, agent_targets, alert_signal, change_signal
from .thresholds import ThresholdMonitor

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
                 evaluations: MutableMapping[str, dict], config: KpiConfig, policy: PolicyConfig = PolicyConfig()):
        self.profiles = profiles
        self.policy = policy
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
                                                "hire_date": event["hire_date"], "tier": event.get("tier"),
                                                "shift": event.get("shift")}
            update = None
        elif kind in ("evaluation.submitted", "speech.analyzed"):
            update = self.qa.apply(event)
        elif kind == "recording.completed":
            update = self._recorded(event)
        else:  # ops.changed: a signal to every agent in its scope
            signal_id, signal = change_signal(event, self.policy)
            at = time_ms(event["event_time"])
            targets = agent_targets(event["scope"]["level"], event["scope"].get("ids", []), event.get("site_id"), self.profiles)
            update = Update(signals=[(agent, signal_id, signal, at) for agent in targets])
        if sweep:
            swept = self.calls.sweep(watermark, owns)
            if swept.records or swept.deltas or swept.fcr or swept.evaluations:
                update = update or Update()
                update.extend(swept)
        return update

    def _recorded(self, event: dict) -> Update | None:
        """A recorded call for the sampling stage, once (a repeated event is dropped while the call's
        state, on this partition, remembers it)."""
        call = self.calls.states.get(event["call_id"])
        if call is not None:
            if event["event_id"] in call["seen"]:
                return None
            call["seen"].append(event["event_id"])
            self.calls.states[event["call_id"]] = call
        return Update(candidates=[self.candidate(event, call or {})])

    def candidate(self, event: dict, call: dict) -> dict:
        """What the sampling stage needs of a recorded call."""
        t = time_ms(event["event_time"])
        answers = call.get("answers") or []
        return {"call_id": event["call_id"], "recording_id": event["recording_id"], "storage_uri": event["storage_uri"],
                "agent_id": event["agent_id"], "site_id": event["site_id"], "queue_id": call.get("queue_id"),
                "answered_ms": min(answers)[0] if answers else t - event["duration_ms"],
                "duration_ms": event["duration_ms"], "at_ms": t}


def sampling_signal(series: str) -> list[tuple[str, str, str]]:
    """(agent, site, metric) when an observation is an attitude or emotion signal for the sampler."""
    level, site, entity, metric = series.split("|")
    return [(entity, site, metric)] if level == "agent" and metric in ("qa_auto", "sentiment_negative") else []


def alert_signals(alert: dict, policy: PolicyConfig, profiles) -> list[tuple[str, str, dict, int]]:
    """A drift alert as signals to the agents it concerns (none for other alerts)."""
    found = alert_signal(alert, policy)
    if found is None:
        return []
    (level, entity), signal_id, signal = found
    at = time_ms(alert["at"])
    return [(agent, signal_id, signal, at) for agent in agent_targets(level, [entity], alert["site_id"], profiles)]


STATE_PARTS = ("calls", "agents", "profiles", "watermarks", "callers", "windows", "evaluations", "series",
               "thresholds", "sampling_agents", "sampling_partitions")


class Chain:
    """Every stage in one process (the embedded runner; tests): per-event stage → FCR → KPI windows
    (→ threshold alerts, in ``drain``), observations → quality monitor → alerts (``update.alerts``),
    and signals + recorded calls → sampler → rate changes, decisions, reviews (``update.sampled``).

    ``state`` holds one mapping per part of ``STATE_PARTS``; it is plain data, saved between runs.
    """

    def __init__(self, state: dict[str, dict], config: KpiConfig, policy: PolicyConfig = PolicyConfig(),
                 sampling_key: bytes = b"callqa-development", partitions: int = 1,
                 partition_of: Callable[[str, int], int] = lambda key, n: 0):
        """``partitions`` and ``partition_of`` split the sampler's capacity and learned shares by agent
        as the worker's topic partitions do, so both paths make the same decisions."""
        from .fcr import FcrTracker
        from .kpi import KpiAggregator

        self.state = {part: state.setdefault(part, {}) for part in STATE_PARTS}
        self.processor = Processor(self.state["calls"], self.state["agents"], self.state["profiles"],
                                   self.state["watermarks"], self.state["evaluations"], config, policy)
        self.fcr = FcrTracker(self.state["callers"], config)
        self.kpis = KpiAggregator(self.state["windows"], config)
        self.monitor = QualityMonitor(self.state["series"])
        self.thresholds = ThresholdMonitor(self.state["thresholds"])
        self.sampler = Sampler(self.state["sampling_agents"], self.state["sampling_partitions"],
                               self.state["profiles"], policy, sampling_key, partitions)
        self._partition = lambda agent: str(partition_of(agent, partitions))
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
        if update is None:
            return None
        for key, value, at in update.observations:
            update.alerts += self.monitor.observe(key, value, at)
            for agent, site, metric in sampling_signal(key):
                self.sampler.observe(agent, site, metric, value, self._partition(agent))
        for alert in update.alerts:
            update.signals += alert_signals(alert, self.processor.policy, self.processor.profiles)
        for agent, signal_id, signal, at in update.signals:
            update.sampled.extend(self.sampler.signal(agent, signal_id, signal, at))
        for candidate in update.candidates:
            update.sampled.extend(self.sampler.decide(candidate, self._partition(candidate["agent_id"])))
        return update

    def drain(self) -> tuple[list[dict], list[dict]]:
        """KPI rows of the windows changed since the last drain, and the threshold alerts they raise."""
        rows = self.kpis.drain()
        progress = self.processor.watermarks.marks.get("0", 0)
        return rows, self.thresholds.observe(rows, progress)
