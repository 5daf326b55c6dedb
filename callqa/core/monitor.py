"""Quality monitoring: observations of a series go through its drift detector; signals become alerts.

As in SPC practice, the charts watch subgroup means (an x-bar chart; a p chart for 0/1 metrics):
per-call values are skewed (handle time) or binary (transferred, answered in SL, abandoned), so each
metric is averaged over ``subgroup`` observations before the detector sees it; sparse human QA
scores are charted one by one.

Alerts are about quality getting worse (``WORSE`` gives each metric's bad direction): a signal the
other way restarts the chart but raises nothing. An alert opens on the first such signal of a series; while it is open, further signals only update its
evidence (de-duplication). It clears after ``clear_after`` consecutive in-control observations and
no sooner than ``min_open_ms`` after it opened (hysteresis: no flapping). Severity: ``critical``
for a Shewhart jump or a shift of at least ``critical_sigmas``, else ``warning``. Each alert event
carries its evidence: the series, the chart, the statistic and its limit, the baseline.
Series keys are ``level|site|entity|metric`` (the faust stage is keyed by them).
"""
from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass

from schemas import format_ms

from .drift import ChartConfig, Signal, new_state, update


@dataclass(frozen=True)
class MetricChart:
    chart: ChartConfig
    subgroup: int = 1


# which way each metric goes when quality gets worse
WORSE = {"qa_human": -1, "qa_auto": -1, "qa_test_call": -1, "handle_s": 1, "hold_s": 1, "transferred": 1,
         "sentiment_negative": 1, "service_level": -1, "abandoned": 1}

# per metric: the chart (sigma floor in the metric's unit, for subgroup means) and the subgroup size
CHARTS = {
    "qa_human": MetricChart(ChartConfig(min_sigma=2.0)),
    "qa_test_call": MetricChart(ChartConfig(min_sigma=2.0)),
    "qa_auto": MetricChart(ChartConfig(warmup=20, min_sigma=2.0), 10),
    "handle_s": MetricChart(ChartConfig(warmup=30, min_sigma=10.0), 20),
    "hold_s": MetricChart(ChartConfig(warmup=30, min_sigma=5.0), 25),
    "sentiment_negative": MetricChart(ChartConfig(warmup=20, min_sigma=0.03), 10),
    "transferred": MetricChart(ChartConfig(warmup=20, min_sigma=0.03), 25),
    "service_level": MetricChart(ChartConfig(warmup=20, min_sigma=0.03), 25),
    "abandoned": MetricChart(ChartConfig(warmup=20, min_sigma=0.03), 25),
}


@dataclass(frozen=True)
class AlertConfig:
    clear_after: int = 10
    min_open_ms: int = 24 * 3600 * 1000
    critical_sigmas: float = 2.0


class QualityMonitor:
    def __init__(self, series: MutableMapping[str, dict], charts: dict[str, MetricChart] = CHARTS,
                 alerts: AlertConfig = AlertConfig()):
        self.series = series
        self.charts = charts  # metric → chart settings
        self.alerts = alerts

    def observe(self, key: str, value: float, at_ms: int) -> list[dict]:
        """One observation; returns alert events (opened, updated, cleared)."""
        metric = key.rsplit("|", 1)[1]
        chart = self.charts[metric]
        s = self.series.get(key) or {"chart": new_state(), "alert": None, "calm": 0, "sum": 0.0, "n": 0}
        s["sum"] += value
        s["n"] += 1
        if s["n"] < chart.subgroup:
            self.series[key] = s
            return []
        mean, s["sum"], s["n"] = s["sum"] / s["n"], 0.0, 0
        signal = update(s["chart"], mean, chart.chart)
        out = []
        if signal is not None and signal.direction == WORSE[metric]:
            s["calm"] = 0
            if s["alert"] is None:
                s["alert"] = {"alert_id": f"{key}|{at_ms}", "opened_ms": at_ms, "signals": 0}
            s["alert"]["signals"] += 1
            out.append(self._event(key, s["alert"], "open" if s["alert"]["signals"] == 1 else "update", at_ms, signal))
        elif s["alert"] is not None:
            s["calm"] += 1
            if s["calm"] >= self.alerts.clear_after and at_ms - s["alert"]["opened_ms"] >= self.alerts.min_open_ms:
                out.append(self._event(key, s["alert"], "cleared", at_ms, None))
                s["alert"] = None
        self.series[key] = s
        return out

    def _event(self, key: str, alert: dict, status: str, at_ms: int, signal: Signal | None) -> dict:
        level, site, entity, metric = key.split("|")
        severity = None
        if signal is not None:
            shift = abs(signal.value - signal.baseline_mean) / signal.baseline_sigma
            severity = "critical" if signal.chart == "shewhart" or shift >= self.alerts.critical_sigmas else "warning"
        return {"alert_id": alert["alert_id"], "kind": "drift", "status": status, "at": format_ms(at_ms),
                "opened_at": format_ms(alert["opened_ms"]), "level": level, "site_id": site, "entity_id": entity,
                "metric": metric, "severity": severity, "signals": alert["signals"],
                "evidence": json.dumps(asdict(signal)) if signal else ""}
