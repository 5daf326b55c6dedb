"""Event time that one entity alone cannot move.

A stream's watermark (how far its event time has got) times calls out, closes windows, settles FCR
verdicts and releases the drift charts' input. Taken as the highest event time seen, one valid event
dated ahead — a mistyped day, a device clock a day fast, within ``CALLQA_MAX_FUTURE_S`` of the
machine's clock — would time out every open call and make every later event late. Here the
watermark is instead the highest time that ``quorum`` distinct entities (calls, agents: an event's
contract key) have reached: with the default quorum of 2, one call's events, however far ahead,
never move it alone, and the next event of any other entity moves it as before.

The state is a JSON-able dict, ``{"wm": int, "leads": [[time, key], ...]}`` (the ``quorum - 1``
entities furthest ahead), updated in place in O(quorum).

>>> s = {}
>>> [advance(s, key, t, quorum=2) for key, t in [("c1", 10), ("c2", 12), ("c3", 900), ("c4", 13), ("c3", 901)]]
[0, 10, 12, 13, 13]
>>> advance(s, "c5", 950, quorum=2)  # a second entity that far ahead: the time is corroborated
901
>>> advance({}, "c1", 10, quorum=1)  # quorum 1: the highest time seen
10
"""
from __future__ import annotations


def advance(state: dict, key: str, t_ms: int, quorum: int) -> int:
    """Take an event of entity ``key`` at ``t_ms`` and return the watermark: the highest time reached
    by ``quorum`` distinct entities (never decreasing; 0 until that many have been seen)."""
    wm = state.get("wm", 0)
    if quorum <= 1:
        state["wm"] = wm = max(wm, t_ms)
        return wm
    leads = state.setdefault("leads", [])
    while len(leads) > quorum - 1:  # saved with a larger quorum: the time of the last lead is reached now
        wm = max(wm, leads.pop()[0])
    state["wm"] = wm
    for lead in leads:
        if lead[1] == key:
            if t_ms > lead[0]:
                lead[0] = t_ms
                leads.sort(reverse=True)
            return wm
    if len(leads) < quorum - 1:
        leads.append([t_ms, key])
        leads.sort(reverse=True)
        return wm
    if t_ms > leads[-1][0]:  # a new lead: the last one's time is now reached by quorum entities
        t_ms, leads[-1] = leads[-1][0], [t_ms, key]
        leads.sort(reverse=True)
    if t_ms > wm:
        state["wm"] = wm = t_ms
    return wm
