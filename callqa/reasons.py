"""Why a call is to be reviewed, in words a QA lead uses (the report's review list and ``callqa plan``).

A queued call's ``reason`` is the sampler's draw (``callqa.core.sampling``): ``rate`` (the agent's review
rate), ``coverage`` (the coverage rule: a weekday × shift-band cell with no review yet this month, the
seed of the month's spread) or ``pace`` (the monthly minimum). A ``rate`` draw is explained by what holds
the agent's rate up: the latest rate change at or before the call names its strongest signal — a quality
incident (its id, metrics and since when) or an operational change; with none it is a random draw at
the agent's ordinary rate.

>>> why({"reason": "rate", "agent_rate": 0.045, "signal_kind": "drift:site",
...      "signal_evidence": '{"incident": "site|s1|s1|1709716099552", "metrics": ["handle_s"]}'})
'incident on site s1: handle time, since 2024-03-06 09:08 (review rate 4.5%)'
>>> why({"reason": "coverage", "cell": "Tue-first_hour"})
'coverage rule: the first review this month on a Tue, first hour of the shift'
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

METHOD_WORDS = {"side_by_side": "side by side", "live_remote": "live remote listening",
                "recording_review": "recording review"}
BAND_WORDS = {"first_hour": "first hour of the shift", "middle": "middle of the shift",
              "last_two_hours": "last two hours of the shift"}
# what a drift metric is, in words (for yes/no metrics: the worse outcome counted)
METRIC_WORDS = {
    "qa_human": "human QA score", "qa_test_call": "test-call QA score", "handle_s": "handle time",
    "hold_s": "hold time", "transferred": "calls transferred", "sentiment_negative": "negative customers",
    "item:greeting.standard": "no standard greeting", "item:greeting.asks_name": "name not asked",
    "item:waiting.reason_before_hold": "no reason before a hold",
    "item:waiting.apology_after_hold": "no apology after a hold",
    "item:answering.lets_finish": "customer interrupted", "item:closing.thanks": "no thanks at the close",
    "item:overall.polite": "forbidden phrases",
}


def metric_words(metric: str) -> str:
    return METRIC_WORDS.get(metric, metric.removeprefix("item:").replace("_", " "))


def incident_opened(incident_id: str) -> str:
    """When an incident opened (its id ends with the time in ms), to the minute, UTC."""
    return datetime.fromtimestamp(int(incident_id.rsplit("|", 1)[1]) / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def why(row: dict, monthly_target: int = 30, numbers: dict[str, int] | None = None, ids: bool = False) -> str:
    """Why a queued call is there, in words. ``row``: ``reason``, and as the queries give them ``cell``,
    ``agent_rate``, ``signal_kind``, ``signal_evidence``. ``numbers``: incident id → its number in the
    report; ``ids``: name the incident by its id."""
    reason = row["reason"]
    if reason == "coverage":
        weekday, _, band = (row.get("cell") or "").partition("-")
        return f"coverage rule: the first review this month on a {weekday or '?'}, {BAND_WORDS.get(band, band)}"
    if reason == "pace":
        return f"monthly minimum: behind pace for {monthly_target} reviews this month"
    evidence = json.loads(row.get("signal_evidence") or "{}")
    kind = row.get("signal_kind") or ""
    rate = f"{row['agent_rate']:.1%}" if row.get("agent_rate") is not None else "the agent's rate"
    if kind.startswith("drift:") and evidence.get("incident"):
        incident = evidence["incident"]
        level, _, entity, _ = incident.split("|")
        metrics = ", ".join(metric_words(m) for m in evidence.get("metrics") or [])
        number = (numbers or {}).get(incident)
        name = f"{incident} " if ids else f"#{number} " if number else ""
        return f"incident {name}on {level} {entity}: {metrics}, since {incident_opened(incident)} (review rate {rate})"
    if kind.startswith("ops:"):
        return f"operational change: {evidence.get('description') or kind[4:].replace('_', ' ')} (review rate {rate})"
    return f"random draw at the agent's review rate {rate}"
