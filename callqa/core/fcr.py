"""First-call resolution: an answered call is resolved at first contact when the same (hashed) caller
does not call again within the horizon (72 h by default). The verdict is final when the horizon has
passed (watermark) or when a repeat call arrives; only then is the call counted (eligible, and
resolved or not) in its windows. State is per caller, so in faust this stage is keyed by caller hash.

Replays are harmless two ways. Notes are facts (a call arrived, a call was answered): a note the
caller already holds changes nothing (an events partition that re-sent its output). And each caller
keeps the tag of the last input it took (``t``, as ``callqa.core.partials``): the stage's own input
re-processed after a crash part-way through saving skips a caller saved ahead of it. A caller with
nothing left leaves a tombstone with that tag (``{"gone": tag, "due": ms}``) until the watermark has
passed ``due`` — the allowed lateness after it went: re-processed input then finds it gone, not new
(it was started afresh, and a call its forgotten arrivals had made a repeat was counted resolved).

>>> from callqa.core.kpi import KpiConfig
>>> fcr = FcrTracker({}, KpiConfig(fcr_horizon_s=3600, allowed_lateness_s=60))
>>> fcr.observe({"caller": "h1", "call_id": "c1", "arrived_ms": 0}, [1, 0])
[]
>>> fcr.observe({"caller": "h1", "call_id": "c1", "arrived_ms": 0, "windows": ["w"]}, [1, 1])
[]
>>> fcr.sweep(3_600_000, [2, 0])
[('w', {'fcr_eligible': 1, 'fcr_resolved': 1})]
>>> fcr.sweep(3_660_000, [3, 0]), fcr.callers["h1"]
([], {'gone': [3, 0], 'due': 3720000})
>>> fcr.observe({"caller": "h1", "call_id": "c1", "arrived_ms": 0, "windows": ["w"]}, [1, 1])  # re-processed
[]
"""
from __future__ import annotations

from collections.abc import MutableMapping

from .expiry import Expiry
from .kpi import KpiConfig


class FcrTracker:
    """Per caller ``{"arrivals": [[ms, call]], "pending": [[ms, call, windows]], "settled": [call], "t": tag}``."""

    def __init__(self, callers: MutableMapping[str, dict], config: KpiConfig):
        self.callers = callers
        self.horizon = config.fcr_horizon_s * 1000
        self.lateness = config.allowed_lateness_s * 1000
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(c)) for k, c in callers.items())

    def _due(self, c: dict) -> int:
        if "gone" in c:
            return c["due"]
        if c["pending"]:
            return min(p[0] for p in c["pending"]) + self.horizon
        return max((a[0] for a in c["arrivals"]), default=0) + self.horizon + self.lateness

    def observe(self, note: dict, tag: list[int]) -> list[tuple[str, dict]]:
        """A call's arrival, or (with ``windows``) its answer, taken at input position ``tag``; returns
        KPI deltas of settled verdicts."""
        caller = note["caller"]
        c = self.callers.get(caller)
        if c is not None and tag <= c.get("t", c.get("gone", [-1])):
            return []  # input this caller took before it was saved (re-processed after a crash)
        if c is None or "gone" in c:
            c = {"arrivals": [], "pending": []}
        t, call = note["arrived_ms"], note["call_id"]
        deltas = []
        if "windows" in note:
            if any(p[1] == call for p in c["pending"]) or call in c.setdefault("settled", []):
                return []  # already known: a repeated note (a replay) changes nothing
            c["settled"].append(call)
            repeat = any(a_call != call and t < a_t <= t + self.horizon for a_t, a_call in c["arrivals"])
            if repeat:
                deltas = [(k, {"fcr_eligible": 1}) for k in note["windows"]]
            else:
                c["pending"].append([t, call, note["windows"]])
        elif not any(a_call == call for _, a_call in c["arrivals"]):
            c["arrivals"].append([t, call])
            still = []
            for p in c["pending"]:
                if p[1] != call and p[0] < t <= p[0] + self.horizon:
                    deltas += [(k, {"fcr_eligible": 1}) for k in p[2]]
                else:
                    still.append(p)
            c["pending"] = still
        c["t"] = list(tag)
        self.callers[caller] = c
        self.expiry.push(caller, self._due(c))
        return deltas

    def sweep(self, watermark_ms: int, tag: list[int]) -> list[tuple[str, dict]]:
        """Settle the calls whose horizon has passed as resolved; a caller with nothing left becomes a
        tombstone, forgotten when the watermark has passed its ``due``. ``tag``: the input position of
        the sweep; a caller holding later input (saved ahead of it) is left until the input has passed it."""
        deltas = []
        for caller in list(self.expiry.due(watermark_ms)):
            c = self.callers.get(caller)
            if c is None or self._due(c) > watermark_ms:
                continue  # pushed again since: that entry comes later
            if "gone" in c:
                del self.callers[caller]
                continue
            if c.get("t", [-1]) > tag:
                self.expiry.push(caller, self._due(c))
                continue
            settled = [p for p in c["pending"] if p[0] + self.horizon <= watermark_ms]
            for p in settled:
                deltas += [(k, {"fcr_eligible": 1, "fcr_resolved": 1}) for k in p[2]]
            c["pending"] = [p for p in c["pending"] if p[0] + self.horizon > watermark_ms]
            c["arrivals"] = [a for a in c["arrivals"] if a[0] + self.horizon + self.lateness > watermark_ms]
            kept = {a[1] for a in c["arrivals"]} | {p[1] for p in c["pending"]}
            c["settled"] = [call for call in c.get("settled", []) if call in kept]
            c["t"] = list(tag)
            if not c["pending"] and not c["arrivals"]:
                c = {"gone": list(tag), "due": watermark_ms + self.lateness}
            self.callers[caller] = c
            self.expiry.push(caller, self._due(c))
        return deltas
