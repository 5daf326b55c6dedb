"""First-call resolution: an answered call is resolved at first contact when the same (hashed) caller
does not call again within the horizon (72 h by default). The verdict is final when the horizon has
passed (watermark) or when a repeat call arrives; only then is the call counted (eligible, and
resolved or not) in its windows. State is per caller, so in faust this stage is keyed by caller hash.
Notes are facts (a call arrived, a call was answered): a repeated note changes nothing, so replays
are harmless.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

from .expiry import Expiry
from .kpi import KpiConfig


class FcrTracker:
    def __init__(self, callers: MutableMapping[str, dict], config: KpiConfig):
        self.callers = callers
        self.horizon = config.fcr_horizon_s * 1000
        self.lateness = config.allowed_lateness_s * 1000
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(c)) for k, c in callers.items())

    def _due(self, c: dict) -> int:
        if c["pending"]:
            return min(p[0] for p in c["pending"]) + self.horizon
        return max((a[0] for a in c["arrivals"]), default=0) + self.horizon + self.lateness

    def observe(self, note: dict) -> list[tuple[str, dict]]:
        """A call's arrival, or (with ``windows``) its answer; returns KPI deltas of settled verdicts."""
        caller = note["caller"]
        c = self.callers.get(caller) or {"arrivals": [], "pending": []}
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
        self.callers[caller] = c
        self.expiry.push(caller, self._due(c))
        return deltas

    def sweep(self, watermark_ms: int, owns: Callable[[str], bool] = lambda key: True) -> list[tuple[str, dict]]:
        """Settle the calls whose horizon has passed as resolved; forget callers with nothing left."""
        deltas = []
        for caller in list(self.expiry.due(watermark_ms)):
            c = self.callers.get(caller)
            if c is None or not owns(caller):
                continue
            settled = [p for p in c["pending"] if p[0] + self.horizon <= watermark_ms]
            for p in settled:
                deltas += [(k, {"fcr_eligible": 1, "fcr_resolved": 1}) for k in p[2]]
            c["pending"] = [p for p in c["pending"] if p[0] + self.horizon > watermark_ms]
            c["arrivals"] = [a for a in c["arrivals"] if a[0] + self.horizon + self.lateness > watermark_ms]
            kept = {a[1] for a in c["arrivals"]} | {p[1] for p in c["pending"]}
            c["settled"] = [call for call in c.get("settled", []) if call in kept]
            if not c["pending"] and not c["arrivals"]:
                del self.callers[caller]
            else:
                self.callers[caller] = c
                self.expiry.push(caller, self._due(c))
        return deltas
