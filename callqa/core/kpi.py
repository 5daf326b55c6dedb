"""KPI windows: what each call contributes to a window, and the window aggregate.

A call's contribution is recomputed from its state on every event; only the difference from its
previous contribution is applied to the windows. Windows hold sums, so updates are O(1) and
order-independent, and a duplicate event (dropped by the assembler) never counts twice.

A window's ``version`` counts the deltas applied to it: it grows with every change in one run,
so the newest row wins downstream; it is not meant to be equal across different arrival orders.

Window keys are ``level|site|entity|size_s|start_ms`` strings (they are Kafka keys too).
"""
from __future__ import annotations

from collections.abc import MutableMapping

from schemas import format_ms

COUNTERS = ("offered", "answered", "abandoned", "wait_answered_ms")


def window_key(level: str, site: str, entity: str, size_s: int, start_ms: int) -> str:
    return f"{level}|{site}|{entity}|{size_s}|{start_ms}"


def contribution(state: dict, arrived_ms: int | None, wait: int | None, sizes_s: tuple[int, ...]) -> dict:
    """The counters one call adds to each of its windows (site level, and queue level if known)."""
    offered = state["queued_ms"] is not None or state["answered_ms"] is not None or (
        state["abandoned_ms"] is not None and state["abandon_stage"] != "ivr")
    if arrived_ms is None or not offered:
        return {}
    answered = state["answered_ms"] is not None
    counters = {
        "offered": 1,
        "answered": 1 if answered else 0,
        "abandoned": 1 if not answered and state["abandon_reason"] == "caller_hangup" else 0,
        "wait_answered_ms": wait if answered and wait is not None else 0,
    }
    entities = [("site", state["site_id"])]
    if state["queue_id"]:
        entities.append(("queue", state["queue_id"]))
    out = {}
    for size in sizes_s:
        start = arrived_ms - arrived_ms % (size * 1000)
        for level, entity in entities:
            out[window_key(level, state["site_id"], entity, size, start)] = counters
    return out


def diff(old: dict, new: dict) -> list[tuple[str, dict]]:
    """Per window, what must be added to move from the old contribution to the new one."""
    deltas = []
    for key in old.keys() | new.keys():
        before, after = old.get(key, {}), new.get(key, {})
        delta = {c: after.get(c, 0) - before.get(c, 0) for c in COUNTERS}
        if any(delta.values()):
            deltas.append((key, delta))
    deltas.sort()
    return deltas


def row(key: str, acc: dict) -> dict:
    """The KPI row of a window aggregate (what goes to the KPI topic and table)."""
    level, site, entity, size, start = key.split("|")
    size_s, start_ms = int(size), int(start)
    answered = acc["answered"]
    return {
        "level": level, "site_id": site, "entity_id": entity, "window_s": size_s,
        "window_start": format_ms(start_ms), "window_end": format_ms(start_ms + size_s * 1000),
        "offered": acc["offered"], "answered": answered, "abandoned": acc["abandoned"],
        "wait_answered_ms": acc["wait_answered_ms"],
        "asa_s": round(acc["wait_answered_ms"] / answered / 1000, 3) if answered else None,
        "abandon_rate": round(acc["abandoned"] / acc["offered"], 6) if acc["offered"] else None,
        "version": acc["version"],
    }


class KpiAggregator:
    """Applies contribution deltas to window aggregates and returns the window's new row."""

    def __init__(self, windows: MutableMapping[str, dict]):
        self.windows = windows

    def apply(self, key: str, delta: dict) -> dict:
        acc = self.windows.get(key) or {c: 0 for c in COUNTERS} | {"version": 0}
        for c in COUNTERS:
            acc[c] += delta.get(c, 0)
        acc["version"] += 1
        self.windows[key] = acc
        return row(key, acc)
