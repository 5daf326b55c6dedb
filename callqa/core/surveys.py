"""Post-call surveys in the stream: CSAT, NPS and customer-reported resolution in the KPI windows.

A ``survey.completed`` is keyed by its call id, so it is processed in the partition that holds the call.
It counts for the agent it names (else the call's last answering agent, as the call is held there: the
agent the customer spoke to last), that agent's team, the site and the queue it names (else the queue the
call first entered). A survey of a call not held — not seen yet, or forgotten — counts for what it names
itself (its site at least); a later call does not move it.

It counts in the windows of its own time (when the customer answered), as an evaluation counts at its
evaluation time, never in the call's: surveys come minutes to days after the call, when the call's
windows have closed. Not in the live 5-minute buckets either.

Counters (sums, so a window's ratios are exact for any slice): ``csat_responses``, ``csat_sum`` (the
mean is sum ÷ responses), ``csat_satisfied`` (answers 4 or 5: "top-two box" CSAT %, satisfied ÷ responses,
as Amazon Connect, Zendesk and most CX reporting define CSAT % on a 5-point scale); ``nps_responses``,
``nps_promoters`` (9-10) and ``nps_detractors`` (0-6): NPS = 100 × (promoters − detractors) ÷ responses
(Reichheld, "The One Number You Need to Grow", HBR 2003); ``survey_resolved_responses`` and
``survey_resolved`` (customer-reported resolution). A survey re-sent with the same ``survey_id`` replaces
its earlier contribution (differences, as for calls and evaluations); a repeated event changes nothing.

A survey's state (its contribution) is kept until the windows it counts in are past the window stage's
retention twice over, so a repeat within that time is known; after it, its windows are closed anyway.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

from schemas import time_ms

from . import kpi
from .assembly import Update, call_queue
from .expiry import Expiry

SATISFIED_MIN = 4  # CSAT answers counted as satisfied (top-two box of 1-5)
PROMOTER_MIN, DETRACTOR_MAX = 9, 6  # NPS: promoters answer 9-10, detractors 0-6

# Which QA items matter to customers (callqa.csat, sinks.queries.CSAT_ITEMS): an item *passes* when it got at
# least this share of its points (the form's "good" band, 良 80%; a yes/no item: its full points), and an item
# is shown when at least MIN_GROUP calls passed it and MIN_GROUP failed it.
ITEM_PASS_SHARE = 0.8
MIN_GROUP = 30


def counters(event: dict) -> dict:
    """What one survey adds to each of its windows."""
    csat = int(event["csat"])
    out = {"csat_responses": 1, "csat_sum": csat, "csat_satisfied": int(csat >= SATISFIED_MIN)}
    nps = event.get("nps")
    if nps is not None:
        out |= {"nps_responses": 1, "nps_promoters": int(nps >= PROMOTER_MIN),
                "nps_detractors": int(nps <= DETRACTOR_MAX)}
    if event.get("resolved") is not None:
        out |= {"survey_resolved_responses": 1, "survey_resolved": int(event["resolved"])}
    return out


class SurveyAssembler:
    """``survey.completed`` events → KPI deltas, keyed by ``survey_id``: ``{"contrib", "seen", "last_ms"}``."""

    def __init__(self, states: MutableMapping[str, dict], config: kpi.KpiConfig,
                 team_of: Callable[[str], str | None] = lambda agent: None,
                 call_of: Callable[[str], dict | None] = lambda call_id: None):
        self.states = states
        self.config = config
        self.team_of = team_of
        self.call_of = call_of  # the call's state when this partition holds it (CallAssembler.view)
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(s)) for k, s in states.items())

    def _due(self, state: dict) -> int:
        return state["last_ms"] + 2 * self.config.window_retention_ms + max(self.config.window_sizes_s) * 1000

    def apply(self, event: dict) -> Update | None:
        """One validated ``survey.completed``; None when it was a repeat."""
        key = event["survey_id"]
        t = time_ms(event["event_time"])
        state = self.states.get(key) or {"contrib": {}, "seen": [], "last_ms": t}
        if event["event_id"] in state["seen"]:
            return None
        state["seen"] = (state["seen"] + [event["event_id"]])[-10:]
        state["last_ms"] = max(state["last_ms"], t)
        contrib: dict = {}
        keys = kpi.keys_at(self.config, t, self._levels(event))
        kpi.add(contrib, [k for k in keys if k.split("|")[3] != str(kpi.LIVE_WINDOW_S)], counters(event))
        update = Update(deltas=kpi.diff(state["contrib"], contrib))
        state["contrib"] = contrib
        self.states[key] = state  # reassign: a faust Table writes its changelog on set
        self.expiry.push(key, self._due(state))
        return update

    def _levels(self, e: dict) -> list[tuple[str, str, str]]:
        site = e["site_id"]
        agent, queue = e.get("agent_id"), e.get("queue_id")
        if agent is None or queue is None:
            call = self.call_of(e["call_id"])
            if call is not None:
                agent = agent or (max(call["answers"])[1] if call["answers"] else None)
                queue = queue or call_queue(call)
        levels = [("site", site, site)]
        if queue:
            levels.append(("queue", site, queue))
        if agent:
            levels.append(("agent", site, agent))
            team = self.team_of(agent)
            if team:
                levels.append(("team", site, team))
        return levels

    def sweep(self, watermark_ms: int) -> None:
        """Forget surveys whose windows are closed for good."""
        for key in list(self.expiry.due(watermark_ms)):
            state = self.states.get(key)
            if state is None:
                continue
            if self._due(state) > watermark_ms:
                self.expiry.push(key, self._due(state))
            else:
                del self.states[key]
