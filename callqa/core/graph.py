"""The stage graph, described once; the embedded runner and the faust worker both run it.

    events (by call / agent id) ─► events: validate; calls, agent states, evaluations, surveys, partial KPI windows
        ├─ dead letters, call records, scored evaluations ─► sink
        ├─ FCR notes (by caller hash) ─► fcr: callers, partial FCR windows ─┐
        ├─ partial windows (by series) ─────────────────────────────────────┴► windows: sums ─► KPI rows,
        │                                                                          threshold alerts
        ├─ observations (by site) ─► monitor: drift charts, incidents ─► alerts, charts' state; signals ┐
        └─ recorded calls, ops changes, attitude signals (by agent) ────────────────────────────────────┴► sampler:
                                                                 rates, decisions, review queue ─► sink

Each stage partition runs ``process`` on a batch of messages and returns an ``Output``: rows for the
sink's tables and one *bundle* per partition of each stage downstream (its items plus the sender's
watermark). A runner delivers bundles in any interleaving; the stages make the result the same:

- every item carries a tag (the input position that caused it) and every state value records the tags
  it has taken, so a repeated message changes nothing (``partials``, ``ordering``);
- KPI windows travel as versioned partial sums, added up by the window stage in any order;
- order-dependent stages (drift charts, sampler) release their items in event-time order once every
  source has passed them by the ordering slack (``ordering.Ordered``; input later than that is taken
  as it comes), and the FCR stage's horizon once they have passed it by the allowed lateness;
- a stage saves its state parts in ``PARTS`` order (a runner writes them in that order), and a
  key it deleted leaves the saved state only after ``meta`` (its progress mark), so a crash part-way
  leaves windows ahead of calls, never behind, and re-processed input finds what it changed; sweeps
  leave alone windows that hold input after the one being re-processed.

State is plain JSON-able data: ``{part: {key: value}}`` per stage partition.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

import orjson

import schemas
from schemas import InvalidEvent, key_field, time_ms, validate, validate_dict

from .agents import AgentStates
from .assembly import CallAssembler, Update
from .dead_letters import EXPIRY, dead_letter, raw_event
from .fcr import FcrTracker
from .kpi import KpiConfig
from .monitor import METRICS, QualityMonitor
from .ordering import BUSY, CAUGHT_UP, FINISHED, Ordered
from .partials import JUDGED, PartialWindows, WindowSums, per_window
from .qa import QaAssembler
from .sampling import PolicyConfig, Sampler, agent_targets, change_signal, incident_signal
from .surveys import SurveyAssembler
from .thresholds import ThresholdMonitor
from .watermark import advance

SWEEP_EVERY_MS = 60_000
STAGES = ("events", "fcr", "windows", "monitor", "sampler")  # in graph order
DOWNSTREAM = {"events": ("fcr", "windows", "monitor", "sampler"), "fcr": ("windows",), "windows": (),
              "monitor": ("sampler",), "sampler": ()}
PARTS = {"events": ("windows", "calls", "agents", "evaluations", "surveys", "meta"), "fcr": ("windows", "callers", "meta"),
         "windows": ("windows", "meta"), "monitor": ("meta",), "sampler": ("meta",)}
GROUP_KEYS = 64  # the most keys of a part other than windows and meta saved as one value


def state_group(part: str, key: str) -> str | None:
    """The group a state key is saved in by a runner that persists groups of keys as one value: KPI
    windows by their window (``width|start``: the keys that change together, and expire together),
    the stage's ``meta`` as one value. None for anything else (calls, callers, agents…): those are
    grouped by when they were first saved, at most ``GROUP_KEYS`` to a group, so that a checkpoint
    rewrites the few groups of recent keys, not the whole part (keys saved together mostly change and
    expire together).

    >>> state_group("windows", "agent|s1|a7|900|1709535600000"), state_group("meta", "through")
    ('900|1709535600000', '')
    """
    if part == "windows":
        return "|".join(key.rsplit("|", 2)[1:])
    if part == "meta":
        return ""
    return None


@dataclass(frozen=True)
class Context:
    """What every stage partition shares: the rules, the partition count, the agents' profiles."""

    kpi: KpiConfig
    policy: PolicyConfig
    sampling_key: bytes
    partitions: int
    partition_of: Callable[[str, int], int]
    profiles: MutableMapping[str, dict]

    def route(self, key: str) -> int:
        return self.partition_of(key, self.partitions)


@dataclass
class Output:
    """A batch's results: sink rows by table, and items per (stage, partition) downstream."""

    rows: dict[str, list] = field(default_factory=dict)
    items: dict[tuple[str, int], list] = field(default_factory=dict)
    marks: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # stage -> (watermark, ordering state)
    counts: Counter = field(default_factory=Counter)  # valid events by type, and "duplicates"

    def row(self, table: str, row: dict) -> None:
        self.rows.setdefault(table, []).append(row)

    def send(self, stage: str, partition: int, item: list) -> None:
        self.items.setdefault((stage, partition), []).append(item)

    def bundles(self, source: str, partitions: int) -> dict[tuple[str, int], dict]:
        """One bundle per partition of every stage this batch marks or sends to."""
        out = {}
        for stage, (wm, idle) in self.marks.items():
            for p in range(partitions):
                out[(stage, p)] = {"src": source, "wm": wm, "idle": idle, "items": self.items.get((stage, p), [])}
        for (stage, p), items in self.items.items():
            out.setdefault((stage, p), {"src": source, "wm": None, "idle": BUSY, "items": items})
        return out


def series_of(window_key: str) -> str:
    """``level|site|entity`` of a window key: the window stage is keyed by series."""
    return window_key.rsplit("|", 2)[0]


def sampling_signal(series: str) -> list[tuple[str, str, str]]:
    """(agent, site, metric) when an observation is an attitude or emotion signal for the sampler."""
    level, site, entity, metric = series.split("|")
    return [(entity, site, metric)] if level == "agent" and metric in ("qa_auto", "sentiment_negative") else []


class EventsStage:
    """Per input partition: validation, call assembly, agent states, evaluations, partial windows."""

    def __init__(self, ctx: Context, partition: int, state: dict[str, dict], store_raw: bool = False):
        self.ctx, self.partition, self.source, self.store_raw = ctx, partition, f"events/{partition}", store_raw
        self.meta = state["meta"]
        team_of = lambda agent: (ctx.profiles.get(agent) or {}).get("team_id")
        retention = (ctx.kpi.call_timeout_s + ctx.kpi.allowed_lateness_s) * 1000
        self.windows = PartialWindows(state["windows"], retention, self.source)
        self._deltas: list[tuple[str, dict]] = []  # the KPI deltas of the input being applied
        self.calls = CallAssembler(state["calls"], ctx.kpi, team_of)
        self.agents = AgentStates(state["agents"], ctx.kpi, team_of)
        self.qa = QaAssembler(state["evaluations"], ctx.kpi, team_of)
        self.surveys = SurveyAssembler(state["surveys"], ctx.kpi, team_of, self.calls.view)  # joins its call here: both keyed by call id

    def process(self, messages: list[tuple[int, bytes | dict, str, str]]) -> Output:
        """``messages``: (offset, serialized event or adapter-made dict, origin, position)."""
        out = Output()
        records: dict[str, dict] = {}
        units: dict[tuple, str] = {}  # adapter units (source lines) of the batch: the identity their events move time as
        for offset, raw, origin, position in _new(self.meta, messages):
            if self._copy(raw):
                continue
            try:
                event = validate(raw) if isinstance(raw, (bytes, str)) else validate_dict(raw)
            except InvalidEvent as exc:
                out.row("dead_letters", dead_letter(str(exc), _payload(raw), origin, position))
                continue
            out.counts[event["event_type"]] += 1
            t = time_ms(event["event_time"])
            before = wm = self.meta.get("wm", 0)
            site = self._site(event["site_id"])
            site_before = site_wm = site.get("wm", 0)
            if event["event_type"] not in schemas.BROADCAST:  # reference data (an HR export of today): no event time
                # event time moves once CALLQA_WATERMARK_QUORUM calls or agents reach it, in the partition and
                # in the event's site (whose time lateness and call timeouts are judged on): one call dated
                # ahead (within CALLQA_MAX_FUTURE_S) times out, settles and makes late nothing of the others
                # (the events an adapter made of one line count as one: a Connect callback record also
                # ends the contact it calls back, a queue_log transfer line also moves its consultation)
                entity, quorum = str(event[key_field(event["event_type"])]), self.ctx.kpi.watermark_quorum
                if isinstance(raw, dict):
                    entity = units.setdefault((origin, position), entity)
                wm = advance(self.meta, entity, t, quorum)
                site_wm = advance(site, entity, t, quorum)
            tag = [offset, 0]
            update = self._apply(event, site_wm)
            if update is not None and update.refused:
                # an adapter's line can make several events: each refused one is a dead letter of its own
                where = f"{position}#{event['event_id']}" if isinstance(raw, dict) else position
                out.row("dead_letters", dead_letter(update.refused, _payload(raw), origin, where))
                out.counts[event["event_type"]] -= 1
                continue
            if update is not None:
                self._emit(update, tag, out, records)
            elif event["event_type"].startswith("call."):
                out.counts["duplicates"] += 1  # the first payload of an event id is the one kept
            if self.store_raw and (update is not None or not event["event_type"].startswith("call.")):
                out.row("raw_events", raw_event(event, _payload(raw)))
            # sweeps follow event time whatever the event was (a repeat too: after a restart part-way
            # through a save, input the first run applied may be a repeat to the state saved ahead)
            if site_wm // SWEEP_EVERY_MS > site_before // SWEEP_EVERY_MS:
                self._emit(self.calls.sweep(event["site_id"], site_wm), tag, out, records)
            if wm // SWEEP_EVERY_MS > before // SWEEP_EVERY_MS:
                # a site whose own events stopped (closed, cut off) has its calls closed once the partition
                # is CALLQA_MAX_FUTURE_S (the clock skew allowed) past them
                for quiet in sorted(s for s in self.calls.expiry if s != event["site_id"]):  # one order on any run
                    held = max(self._site(quiet).get("wm", 0), wm - schemas.MAX_FUTURE_S * 1000)
                    self._emit(self.calls.sweep(quiet, held), tag, out, records)
                self._take_deltas(offset)
                self.windows.sweep(wm, tag)
                self.surveys.sweep(wm)
            self._take_deltas(offset)
        out.rows.setdefault("call_records", []).extend(records.values())
        for key, generation, version, counters in self.windows.drain():
            out.send("windows", self.ctx.route(series_of(key)), ["p", key, generation, version, counters])
        out.marks = {stage: (self.meta.get("wm", 0), BUSY) for stage in DOWNSTREAM["events"]}
        return out

    def _site(self, site: str) -> dict:
        """The watermark state of a site (from ``site_wm`` when saved by an earlier version)."""
        sites = self.meta.setdefault("sites", {})
        state = sites.get(site)
        if state is None:
            state = sites[site] = {"wm": self.meta.get("site_wm", {}).get(site, 0)}
        return state

    def _copy(self, raw: bytes | str | dict) -> bool:
        """Whether ``raw`` is a copy of reference data (``schemas.BROADCAST``: the publisher sends it to every
        partition) on a partition that is not its own: then its profile is applied and nothing else — the
        event is counted, stored, dead-lettered and moves event time on its own partition only, as on the
        embedded run."""
        marks = _BROADCAST_MARKS.get(type(raw))
        if marks is None or not any(mark in raw for mark in marks):
            return False
        try:
            event = orjson.loads(raw)
            if event["event_type"] not in schemas.BROADCAST:
                return False
            owner = self.ctx.route(str(event[key_field(event["event_type"])]))
        except (ValueError, KeyError, TypeError):  # not sent to every partition: it is this one's to judge
            return False
        if owner == self.partition:
            return False
        try:
            self._apply(validate(raw), 0)
        except InvalidEvent:
            pass  # its own partition dead-letters it
        return True

    def idle(self, finished: bool = False) -> Output:
        """Nothing more for now (caught up), or at all (``finished``): tell the stages downstream."""
        return Output(marks={stage: (self.meta.get("wm", 0), FINISHED if finished else CAUGHT_UP)
                             for stage in DOWNSTREAM["events"]})

    def _apply(self, event: dict, wm: int) -> Update | None:
        kind = event["event_type"]
        if kind.startswith("call."):
            return self.calls.apply(event, wm)
        if kind == "agent.state_changed":
            return Update(deltas=self.agents.apply(event, wm))
        if kind == "agent.profile":
            self.ctx.profiles[event["agent_id"]] = {"team_id": event["team_id"], "site_id": event["site_id"],
                                                    "hire_date": event["hire_date"], "tier": event.get("tier"),
                                                    "shift": event.get("shift")}
            return None
        if kind in ("evaluation.submitted", "speech.analyzed"):
            return self.qa.apply(event)
        if kind == "survey.completed":
            return self.surveys.apply(event)
        if kind == "recording.completed":
            return self._recorded(event)
        signal_id, signal = change_signal(event, self.ctx.policy)  # ops.changed: a signal to every agent in scope
        at = time_ms(event["event_time"])
        targets = agent_targets(event["scope"]["level"], event["scope"].get("ids", []), event.get("site_id"), self.ctx.profiles)
        return Update(signals=[(agent, signal_id, signal, at) for agent in targets])

    def _recorded(self, event: dict) -> Update | None:
        """A recorded call for the sampler, once (a repeated event is dropped while the call is held)."""
        call = self.calls.view(event["call_id"])
        if call is not None:
            if event["event_id"] in call["seen"]:
                return None
            self.calls.remember(event["call_id"], call, event["event_id"])
        t = time_ms(event["event_time"])
        answers = (call or {}).get("answers") or []
        return Update(candidates=[{
            "call_id": event["call_id"], "recording_id": event["recording_id"], "storage_uri": event["storage_uri"],
            "agent_id": event["agent_id"], "site_id": event["site_id"], "queue_id": (call or {}).get("queue_id"),
            "answered_ms": min(answers)[0] if answers else t - event["duration_ms"],
            "duration_ms": event["duration_ms"], "at_ms": t}])

    def _take_deltas(self, offset: int) -> None:
        """The KPI deltas of the input at ``offset`` into the partial windows: added up per window and
        taken under the tag ``[offset, 0]``. A save holds all of an input's deltas or none (it comes
        between batches), so a window takes an input once, whatever order its sweeps ran in on a
        restart (an expiry heap rebuilt from saved state pops ties in another order)."""
        for key, delta in per_window(self._deltas):
            self.windows.apply(key, delta, [offset, 0])
        self._deltas.clear()

    def _emit(self, update: Update, tag: list[int], out: Output, records: dict) -> None:
        """Keep an update's deltas for the partial windows (``_take_deltas``) and route everything else;
        each item gets its own tag (the input offset and a running number)."""
        route = self.ctx.route
        tag[1] += 1
        self._deltas += update.deltas
        for record in update.records:
            records[record["call_id"]] = record
        for call_id, reason, held in update.expired:
            out.row("dead_letters", dead_letter(reason, orjson.dumps(held), EXPIRY, call_id))
        for row in update.evaluations:
            out.row("evaluations", row)
        for note in update.fcr:
            tag[1] += 1
            out.send("fcr", route(note["caller"]), ["note", list(tag), note])
        for series, value, at, *extra in update.observations:
            if series.rsplit("|", 1)[1] in METRICS:
                tag[1] += 1
                out.send("monitor", route(series.split("|", 2)[1]),
                         ["obs", list(tag), at, series, value, *(extra or [1.0])])
            for agent, site, metric in sampling_signal(series):
                tag[1] += 1
                out.send("sampler", route(agent), ["observe", list(tag), at, f"{agent}|{metric}", [agent, site, metric, value]])
        for agent, call, at, values in update.analyses:
            tag[1] += 1
            out.send("sampler", route(agent), ["analysis", list(tag), at, f"{agent}|{call}", [agent, call, values]])
        wait = self.ctx.policy.analysis_wait_ms  # a decision waits this long (event time) for the call's analytics
        for c in update.candidates:
            tag[1] += 1
            out.send("sampler", route(c["agent_id"]),
                     ["candidate", list(tag), c["at_ms"] + wait, f"{c['call_id']}|{c['recording_id']}", c])
        for agent, signal_id, signal, at in update.signals:
            tag[1] += 1
            out.send("sampler", route(agent), ["signal", list(tag), at, f"{agent}|{signal_id}", [agent, signal_id, signal, at]])


class FcrStage:
    """Per caller partition: first-call resolution verdicts into partial windows, settled in event-time order."""

    def __init__(self, ctx: Context, partition: int, state: dict[str, dict]):
        self.ctx, self.source = ctx, f"fcr/{partition}"
        self.meta = state["meta"]
        self.tracker = FcrTracker(state["callers"], ctx.kpi)
        self.windows = PartialWindows(state["windows"], ctx.kpi.window_retention_ms, self.source)
        self.order = Ordered(self.meta.setdefault("order", {}), _sources(ctx, "events"), ctx.kpi.allowed_lateness_s * 1000)

    def process(self, messages: list[tuple[int, dict]]) -> Output:
        for offset, bundle in _new(self.meta, messages):
            # a bundle's verdicts added up per window, taken under one tag (see EventsStage._take_deltas)
            tag, deltas = [offset, 0], []
            for n, (_, _, note) in enumerate(bundle["items"]):
                deltas += self.tracker.observe(note, [offset, n])
            if bundle["wm"] is not None:
                self.order.mark(bundle["src"], bundle["wm"], bundle["idle"])
            before = self.meta.get("swept", 0)
            frontier = self.order.time()
            sweep = frontier // SWEEP_EVERY_MS > before // SWEEP_EVERY_MS
            if sweep:
                self.meta["swept"] = frontier
                deltas += self.tracker.sweep(frontier, [offset, len(bundle["items"])])
            for key, delta in per_window(deltas):
                self.windows.apply(key, delta, list(tag))
            if sweep:
                self.windows.sweep(frontier, tag)
        self.meta["order"] = self.order.s
        out = Output()
        for key, generation, version, counters in self.windows.drain():
            out.send("windows", self.ctx.route(series_of(key)), ["p", key, generation, version, counters])
        # how far the verdicts are settled: the window stage keeps a window until every verdict for it came
        out.marks = {"windows": (self.order.time(), self.order.state())}
        return out


class WindowsStage:
    """Per series partition: the sum of each window's partials, its KPI row, and threshold alerts
    judged once every per-event partition has passed the window. A window is kept until the per-event
    partitions and the FCR stage (whose verdicts on a window's calls come up to the FCR horizon later,
    through a stage of its own) have both passed its retention."""

    def __init__(self, ctx: Context, partition: int, state: dict[str, dict]):
        self.ctx = ctx
        self.meta = state["meta"]
        self.sums = WindowSums(state["windows"], ctx.kpi)
        self.order = Ordered(self.meta.setdefault("order", {}), _sources(ctx, "events"), 0)
        self.verdicts = Ordered(self.meta.setdefault("verdicts", {}), _sources(ctx, "fcr"), 0)
        self.thresholds = ThresholdMonitor(self.meta.setdefault("thresholds", {}))
        # windows the threshold rules watch, until they are judged (those of a save cut short before its
        # progress mark included: judged again, on the figures they kept)
        self.unjudged: dict[str, int] = {}  # window key -> when it can be judged (``judge_at``)
        self._watch(key for key, w in self.sums.windows.items() if "gone" not in w)

    def process(self, messages: list[tuple[int, dict]]) -> Output:
        for _, bundle in _new(self.meta, messages):
            for _, key, generation, version, counters in bundle["items"]:
                self.sums.apply(key, generation, version, counters)
            if bundle["wm"] is not None:
                marks = self.order if bundle["src"].startswith("events/") else self.verdicts
                marks.mark(bundle["src"], bundle["wm"], bundle["idle"])
        out = Output()
        self._watch(key for key in self.sums.dirty if JUDGED not in self.sums.windows[key])
        out.rows["kpi_windows"] = self.sums.drain()
        # judged as far as the input has got in event time (caught up: not past the newest watermark, so a
        # window still filling is never judged on the figures it has when the input pauses)
        progress = self.order.time()
        due = sorted(key for key, at in self.unjudged.items() if at <= progress)
        for key in due:
            del self.unjudged[key]
        out.rows["alerts"] = self.thresholds.observe([self._judged_on(key) for key in due
                                                      if "gone" not in self.sums.windows.get(key, {"gone": True})], progress)
        self.sums.sweep(min(progress, self.verdicts.time()))
        self.meta["order"], self.meta["verdicts"] = self.order.s, self.verdicts.s
        self.meta["thresholds"] = self.thresholds.state
        return out

    def _watch(self, keys) -> None:
        """Hold the windows among ``keys`` that a threshold rule watches until they can be judged."""
        for key in keys:
            at = self.thresholds.judge_at(key)
            if at is not None:
                self.unjudged[key] = at

    def _judged_on(self, key: str) -> dict:
        """The figures a window is judged on: its row's when first judged, kept in the window itself (saved
        with its partials: a checkpoint cut short before its progress mark judges it again on them,
        whatever partials came since; the threshold state, saved behind, had lost them)."""
        w = self.sums.windows[key]
        if JUDGED not in w:
            row = self.sums.row(key)
            w[JUDGED] = {name: row[name] for name in ("level", "site_id", "entity_id", "window_s", "window_start",
                                                      "offered", *self.thresholds.metrics)}
            self.sums.windows[key] = w  # reassigned: a runner that saves changed keys sees the change
        return w[JUDGED]


class MonitorStage:
    """Per site partition: drift charts and incidents over the observations in event-time order."""

    def __init__(self, ctx: Context, partition: int, state: dict[str, dict]):
        self.ctx = ctx
        self.meta = state["meta"]
        value = self.meta.setdefault("state", {"charts": {}, "order": {}, "seq": 0})
        if "charts" not in value:  # saved by a version that charted differently: its charts start afresh
            value.pop("series", None)
            value["charts"] = {}
        self.value = value
        self.monitor = QualityMonitor(value["charts"], ctx.profiles, record=True)
        self.order = Ordered(value["order"], _sources(ctx, "events"), ctx.kpi.ordering_slack_s * 1000)

    def process(self, messages: list[tuple[int, dict]]) -> Output:
        for _, bundle in _new(self.meta, messages):
            for _, tag, at, series, value, *extra in bundle["items"]:  # (weight[, stratum]; none: an earlier version)
                self.order.offer(bundle["src"], tag, (at, 0, series), [series, value, at, *(extra or [1.0])])
            if bundle["wm"] is not None:
                self.order.mark(bundle["src"], bundle["wm"], bundle["idle"])
        out = Output()
        policy, profiles = self.ctx.policy, self.ctx.profiles
        for series, value, at, *extra in self.order.release():
            rows, reviews = self.monitor.observe(series, value, at, *extra)
            for row in rows:
                out.row("alerts", row)
            for row in self.monitor.drain():
                out.row("detector_state", row)
            for level, site, entity, signal_id, active, factor_level, evidence in reviews:
                signal = incident_signal(factor_level, active, evidence, policy)
                for agent in agent_targets(level, [entity], site, profiles):
                    self.value["seq"] += 1
                    out.send("sampler", self.ctx.route(agent), ["signal", [self.value["seq"], 0], at,
                                                                 f"{agent}|{signal_id}", [agent, signal_id, signal, at]])
        state = self.order.state() if not self.order.s["pending"] else BUSY
        out.marks = {"sampler": (self.order.time(), state)}
        self.meta["state"] = self.value
        return out


RANK = {"observe": 0, "analysis": 0, "signal": 1, "candidate": 2}  # at the same time: signals before the calls they concern


class SamplerStage:
    """Per agent partition: review rates, per-recording decisions and the review queue, in event-time order."""

    def __init__(self, ctx: Context, partition: int, state: dict[str, dict]):
        self.ctx, self.partition = ctx, str(partition)
        self.meta = state["meta"]
        value = self.meta.setdefault("state", {"agents": {}, "partitions": {}, "order": {}})
        self.value = value
        self.sampler = Sampler(value["agents"], value["partitions"], ctx.profiles, ctx.policy, ctx.sampling_key,
                               ctx.partitions, ctx.kpi.clock)
        self.order = Ordered(value["order"], _sources(ctx, "events") + _sources(ctx, "monitor"),
                             ctx.kpi.ordering_slack_s * 1000)

    def process(self, messages: list[tuple[int, dict]]) -> Output:
        for _, bundle in _new(self.meta, messages):
            for kind, tag, at, ident, body in bundle["items"]:
                self.order.offer(bundle["src"], tag, (at, RANK[kind], ident), [kind, body])
            if bundle["wm"] is not None:
                self.order.mark(bundle["src"], bundle["wm"], bundle["idle"])
        out = Output()
        for kind, body in self.order.release():
            if kind == "observe":
                self.sampler.observe(*body, self.partition)
                continue
            if kind == "analysis":
                self.sampler.analysis(*body)
                continue
            done = self.sampler.decide(body, self.partition) if kind == "candidate" else self.sampler.signal(*body)
            for table, rows in (("sampling_rates", done.rates), ("sampling_decisions", done.decisions),
                                ("review_queue", done.reviews)):
                for row in rows:
                    out.row(table, row)
        self.meta["state"] = self.value
        return out


def _new(meta: MutableMapping, messages: list) -> list:
    """The messages past the last one this stage partition saved (``meta["through"]``, saved last of
    all): after a restart, input it already saved the effects of is skipped outright."""
    through = meta.get("through", -1)
    fresh = [m for m in messages if m[0] > through]
    if fresh:
        meta["through"] = fresh[-1][0]
    return fresh


def _sources(ctx: Context, stage: str) -> list[str]:
    return [f"{stage}/{p}" for p in range(ctx.partitions)]


# the event types of schemas.BROADCAST as they appear in a serialized event: a cheap look before parsing it
_BROADCAST_MARKS = {str: tuple(f'"{kind}"' for kind in schemas.BROADCAST),
                    bytes: tuple(f'"{kind}"'.encode() for kind in schemas.BROADCAST)}


def _payload(raw: bytes | str | dict) -> bytes | str:
    """The input as received: serialized events as they are, adapter-made dicts as JSON; input over
    CALLQA_MAX_EVENT_BYTES (put on the topic by another producer) only its first 4 KiB."""
    payload = raw if isinstance(raw, (bytes, str)) else orjson.dumps(raw)
    return schemas.payload_prefix(payload) if len(payload) > schemas.MAX_EVENT_BYTES else payload


def make_stage(name: str, ctx: Context, partition: int, state: dict[str, dict], store_raw: bool = False):
    """A stage partition over ``state`` (its parts are created when missing)."""
    for part in PARTS[name]:
        state.setdefault(part, {})
    if name == "events":
        return EventsStage(ctx, partition, state, store_raw)
    return {"fcr": FcrStage, "windows": WindowsStage, "monitor": MonitorStage, "sampler": SamplerStage}[name](ctx, partition, state)


def event_partition(raw: bytes | dict, partitions: int, partition_of) -> int:
    """The input partition of an event (its contract key, as the publisher keys it); 0 when unreadable."""
    try:
        event = orjson.loads(raw) if isinstance(raw, (bytes, str)) else raw
        return partition_of(str(event[key_field(event["event_type"])]), partitions)
    except (ValueError, KeyError, TypeError):
        return 0
