"""KPI-threshold alerts on closed windows (service level, abandonment, ASA per site and queue).

A window is judged on its figures once every per-event partition's event-time watermark has passed
its end by ``grace_s`` (so it is judged on the same figures on any runner); later corrections to a
judged window are not judged again. Windows with fewer than ``min_offered`` calls are not judged
(small samples). An alert opens on the first breach
(``critical`` past the critical limit, else ``warning``), further breaches update it (de-duplication)
and it clears after ``clear_after`` judged windows back inside the limit by ``clear_margin``
(hysteresis: no flapping), or after ``expire_after_s`` with no window it can judge (a quiet queue: the
evidence says so). Each event carries its evidence: the window, the value and the limits.
State per ``level|site|entity|metric|window_s``: the last window judged and the alert. The window stage
hands a window over once every rule watching it can judge it (``judge_at``), on the figures it keeps in
the window (``callqa.core.graph.WindowsStage``).
"""
from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass

from schemas import format_ms, time_ms


@dataclass(frozen=True)
class ThresholdRule:
    metric: str  # a KPI row column
    worse: int  # -1: lower is worse (service level), +1: higher is worse
    warning: float
    critical: float
    clear_margin: float
    window_s: int = 900
    levels: tuple[str, ...] = ("site", "queue")
    min_offered: int = 20
    clear_after: int = 2
    grace_s: int = 900
    expire_after_s: int = 14_400  # an open alert with no judgeable window this long after its last one clears


LEVELS = ("site", "queue")  # the levels any rule judges


def severity(rule: ThresholdRule, value: float) -> str | None:
    """A value's severity under a rule: ``critical`` past the critical limit, ``warning`` past the warning
    limit, else None (a value at a limit is not past it). The wallboard colours by the same limits."""
    beyond = lambda limit: (value - limit) * rule.worse > 0
    return "critical" if beyond(rule.critical) else "warning" if beyond(rule.warning) else None


RULES = (
    ThresholdRule("service_level", -1, 0.80, 0.60, 0.03),
    ThresholdRule("abandon_rate", 1, 0.08, 0.15, 0.01),
    ThresholdRule("asa_s", 1, 30.0, 90.0, 5.0),
)


class ThresholdMonitor:
    def __init__(self, state: MutableMapping[str, dict], rules: tuple[ThresholdRule, ...] = RULES):
        self.state = state
        self.rules = rules
        self.metrics = tuple(dict.fromkeys(rule.metric for rule in rules))

    def judge_at(self, window_key: str) -> int | None:
        """When (``progress_ms``) every rule watching a window (``level|site|entity|size|start``) can
        judge it; None when no rule watches it.

        >>> ThresholdMonitor({}).judge_at("site|s1|s1|900|0"), ThresholdMonitor({}).judge_at("agent|s1|a1|900|0")
        (1800000, None)
        """
        level, _, _, size, start = window_key.rsplit("|", 4)
        ends = [int(start) + (rule.window_s + rule.grace_s) * 1000 for rule in self.rules
                if level in rule.levels and int(size) == rule.window_s]
        return max(ends) if ends else None

    def observe(self, rows: list[dict], progress_ms: int) -> list[dict]:
        """(Re)emitted KPI rows, and how far every input has got (``progress_ms``); returns alert events
        of the windows that can now be judged. All rows are recorded before any window is judged (a
        batch may carry a window's final figures late)."""
        for row in rows:
            if row["level"] not in LEVELS:
                continue
            series = f"{row['level']}|{row['site_id']}|{row['entity_id']}"
            start = time_ms(row["window_start"])
            for rule in self.rules:
                if row["level"] not in rule.levels or row["window_s"] != rule.window_s:
                    continue
                key = f"{series}|{rule.metric}|{rule.window_s}"
                s = self.state.get(key) or {"judged": 0, "pending": {}, "alert": None, "calm": 0}
                if start > s["judged"]:
                    s["pending"][str(start)] = [row.get(rule.metric), row.get("offered", 0)]
                    self.state[key] = s
        out = []
        rules = {f"{r.metric}|{r.window_s}": r for r in self.rules}
        for key in sorted(k for k, s in self.state.items() if s["pending"] or s["alert"] is not None):
            rule, s = rules[key.split("|", 3)[3]], self.state[key]
            due = progress_ms - rule.window_s * 1000 - rule.grace_s * 1000
            changed = bool(s["pending"])
            for pending in sorted(int(p) for p in s["pending"] if int(p) <= due):
                out += self._expire(key, rule, s, pending)
                value, offered = s["pending"].pop(str(pending))
                s["judged"] = pending
                out += self._judge(key, rule, s, pending, value, offered)
            expired = self._expire(key, rule, s, due)
            out += expired
            if changed or expired:
                self.state[key] = s  # reassigned: a runner that saves changed keys sees the change
        return out

    def _expire(self, key: str, rule: ThresholdRule, s: dict, known_ms: int) -> list[dict]:
        """Clear an open alert when every window up to ``known_ms`` is known and none it could judge came
        within ``expire_after_s`` after its last judged one (the same instant on any runner)."""
        if s["alert"] is None:
            return []
        until = s["last"]["start"] + rule.expire_after_s * 1000
        if known_ms < until:
            return []
        event = self._event(key, rule, s, "cleared", until + rule.window_s * 1000, None,
                            not_judged_s=rule.expire_after_s)
        s["alert"], s["calm"] = None, 0
        return [event]

    def _judge(self, key: str, rule: ThresholdRule, s: dict, start: int, value, offered: int) -> list[dict]:
        if value is None or offered < rule.min_offered:
            return []
        at = start + rule.window_s * 1000
        s["last"] = {"start": start, "value": value, "offered": offered}
        level = severity(rule, value)
        if level is not None:
            s["calm"] = 0
            if s["alert"] is None:
                s["alert"] = {"alert_id": f"{key}|{start}", "opened_ms": at, "signals": 0}
            s["alert"]["signals"] += 1
            return [self._event(key, rule, s, "open" if s["alert"]["signals"] == 1 else "update", at, level)]
        if s["alert"] is not None and (rule.warning - value) * rule.worse >= rule.clear_margin:
            s["calm"] += 1
            if s["calm"] >= rule.clear_after:
                event = self._event(key, rule, s, "cleared", at, None)
                s["alert"], s["calm"] = None, 0
                return [event]
        elif s["alert"] is not None:
            s["calm"] = 0  # inside the limit but not by the margin: not yet calm
        return []

    def _event(self, key: str, rule: ThresholdRule, s: dict, status: str, at: int, severity: str | None,
               **why) -> dict:
        level, site, entity, metric, _ = key.split("|")
        last = s["last"]
        evidence = {"rule": "below" if rule.worse < 0 else "above", "value": last["value"], "warning": rule.warning,
                    "critical": rule.critical, "clear_margin": rule.clear_margin, "offered": last["offered"],
                    "window_start": format_ms(last["start"]), "window_s": rule.window_s, **why}
        return {"alert_id": s["alert"]["alert_id"], "kind": "threshold", "status": status, "at": format_ms(at),
                "opened_at": format_ms(s["alert"]["opened_ms"]), "level": level, "site_id": site, "entity_id": entity,
                "metric": metric, "severity": severity, "signals": s["alert"]["signals"], "evidence": json.dumps(evidence)}
