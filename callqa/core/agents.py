"""Agent states over time: logged-in and not-ready time per agent, team and site window.

Each state change is a mark; the time between two marks belongs to the agent's state after the
earlier mark and is split over the windows it spans. A mark that names queues (``queue_ids``: an
Asterisk ADDMEMBER, REMOVEMEMBER, PAUSE or UNPAUSE in one queue) changes the agent's membership of
those queues only; a mark without queues applies to the agent as a whole (a log-in, a log-off, a
PAUSEALL, a Connect status). The agent is logged in while a member of any queue, and not ready when
paused in every queue they are a member of: a pause in one queue is not-ready only there. Marks are kept while they can still change (the allowed lateness
behind the watermark), so a late mark re-splits its neighbours exactly; older intervals are settled.
The interval after the last mark is counted once the next mark arrives.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

from schemas import time_ms

from . import kpi

OFF = "logged_out"


def _split(config: kpi.KpiConfig, start: int, end: int, state: str, levels: list[tuple[str, str, str]]) -> dict:
    out: dict = {}
    if end <= start or state == OFF:
        return out
    clock = config.clock
    for level, site, entity in levels:
        for size in config.window_sizes_s:
            t = clock.window_start(site, size, start)  # whole days: from the site's local midnight
            while t < end:
                following = clock.window_end(site, size, t)
                piece = min(end, following) - max(start, t)
                counters = {"logged_in_ms": piece, "not_ready_ms": piece if state == "not_ready" else 0}
                kpi.add(out, [kpi.window_key(level, site, entity, size, t)], counters)
                t = following
    return out


def _subtract(total: dict, part: dict) -> None:
    for key, counters in part.items():
        slot = kpi._copy(total.get(key, {}))  # contribution values may be shared: never changed in place
        kpi._merge(slot, counters, -1)
        if slot:
            total[key] = slot
        else:
            total.pop(key, None)


def _fold(view: tuple[dict, str | None], mark: list) -> tuple[dict, str | None]:
    """The agent's (queue memberships, overall state) after one mark."""
    member, overall = dict(view[0]), view[1]
    state, queues = mark[1], (mark[3] if len(mark) > 3 else None)
    if queues:
        for queue in queues:
            if state == OFF:
                member.pop(queue, None)
            else:
                member[queue] = "available" if state == "logged_in" else state
    elif state == OFF:
        member.clear()
        overall = state
    elif member and state != "logged_in":  # PAUSEALL / UNPAUSEALL: every queue the agent is in
        member = {queue: state for queue in member}
    else:
        overall = state
    return member, overall


def _effective(view: tuple[dict, str | None]) -> str:
    member, overall = view
    if member:
        return "not_ready" if all(state == "not_ready" for state in member.values()) else "available"
    return overall or OFF


class AgentStates:
    def __init__(self, agents: MutableMapping[str, dict], config: kpi.KpiConfig,
                 team_of: Callable[[str], str | None] = lambda agent: None):
        self.agents = agents
        self.config = config
        self.team_of = team_of

    def _levels(self, agent: str, site: str) -> list[tuple[str, str, str]]:
        levels = [("agent", site, agent), ("site", site, site)]
        team = self.team_of(agent)
        if team:
            levels.append(("team", site, team))
        return levels

    def _contribution(self, a: dict, agent: str, marks: list | None = None) -> dict:
        out: dict = {}
        levels = self._levels(agent, a["site"])
        marks = a["marks"] if marks is None else marks
        view = _base(a)
        for mark, following in zip(marks, marks[1:]):
            view = _fold(view, mark)
            for key, counters in _split(self.config, mark[0], following[0], _effective(view), levels).items():
                kpi.add(out, [key], counters)
        return out

    def apply(self, event: dict, watermark_ms: int) -> list[tuple[str, dict]]:
        agent, t = event["agent_id"], time_ms(event["event_time"])
        a = self.agents.get(agent) or {"site": event["site_id"], "marks": [], "contrib": {}, "seen": []}
        if event["event_id"] in a["seen"]:
            return []
        a["seen"] = (a["seen"] + [event["event_id"]])[-50:]
        a["marks"].append([t, event["state"], event.get("reason"), event.get("queue_ids")])
        a["marks"].sort(key=lambda m: m[0])
        contrib = self._contribution(a, agent)
        deltas = kpi.diff(a["contrib"], contrib)
        a["contrib"] = contrib
        self._settle(a, agent, watermark_ms)
        self.agents[agent] = a
        return deltas

    def _settle(self, a: dict, agent: str, watermark_ms: int) -> None:
        """Drop marks older than the lateness allows (keeping the last of them) from the open state;
        the memberships they leave behind become the base the kept marks start from."""
        cutoff = watermark_ms - self.config.allowed_lateness_s * 1000
        marks = a["marks"]
        keep = max(0, sum(1 for m in marks if m[0] <= cutoff) - 1)
        if keep:
            _subtract(a["contrib"], self._contribution(a, agent, marks[: keep + 1]))
            view = _base(a)
            for mark in marks[:keep]:
                view = _fold(view, mark)
            a["base"] = [view[0], view[1]]
            a["marks"] = marks[keep:]


def _base(a: dict) -> tuple[dict, str | None]:
    base = a.get("base") or [{}, None]
    return base[0], base[1]
