"""Incidents: series alarms grouped by root cause, at most three notices each (open, widened, closed).

A series alarm (``monitor``) joins an open incident that has its metric, or a metric of the same kind
(handling: handle, hold, transfers; quality: QA, sentiment, items) and opened less than ``group_ms``
(three days: human reviews come a working day later) before it — one cause shows on several related
metrics within days; a handling move beside a quality problem, or a week later, is another cause — when that incident is on the same scope, or on the scope above
it (an agent's team, a team's or agent's site) and the incident
has the metric or already holds a series of the alarming entity. Otherwise, open incidents inside
its scope on the same metric are its cause: one team's incident takes a site alarm in (the team's
move, seen diluted on its site); else the oldest widens to the alarm's scope and takes the others in
(they end as ``merged``). Otherwise it opens an incident. An incident closes a day (``quiet_ms``) after
every series in it has come back (or its new level was accepted), unless a new alarm joins it
meanwhile: a drift that flickers around its limit stays one incident. An incident nothing joined for
``stale_ms`` (8 days: longer than a chart holds an alarm before accepting it) closes too — a series
that stopped reporting (an agent on leave) cannot hold it open.

A site's incident is rescoped to a team (``narrowed``) when that team alarms while the site's other
teams are in control on the metric (the monitor says so).

Each incident row is an alert of kind ``incident`` (status open, widened, narrowed, updated, merged or closed; metric:
the metrics that moved, comma-separated; evidence: its series and the first alarm's evidence). The
review signals it sends: while open, the agents in its scope are reviewed more (one signal id per
level it reached); closed, the signals end.
"""
from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping

from schemas import format_ms

LEVELS = ("agent", "team", "site")
HANDLING = {"handle_s", "hold_s", "transferred"}  # how calls are handled; the other metrics are quality


def _kind(metric: str) -> str:
    return "handling" if metric in HANDLING else "quality"


class Incidents:
    def __init__(self, state: MutableMapping[str, dict], team_of: Callable[[str], str],
                 calm_elsewhere: Callable[[str, str, str], bool] = lambda site, team, metric: False,
                 group_ms: int = 3 * 86_400_000, quiet_ms: int = 86_400_000, stale_ms: int = 8 * 86_400_000):
        self.open = state.setdefault("open", {})  # incident id → incident
        self.of_series = state.setdefault("of_series", {})  # series key → incident id
        self.team_of = team_of
        self.calm_elsewhere = calm_elsewhere  # (site, team, metric): the site's other teams are in control on it
        self.group_ms, self.quiet_ms, self.stale_ms = group_ms, quiet_ms, stale_ms

    def signal(self, key: str, level: str, site: str, entity: str, metric: str, at_ms: int, alarm: dict
               ) -> tuple[list[dict], list[tuple]]:
        """A series went into alarm: (incident rows, review signals)."""
        opened = sorted(self.open.values(), key=lambda i: (i["opened_ms"], i["id"]))

        def joins(i: dict) -> bool:  # the alarm belongs to incident i: same scope, or the scope above it
            if metric not in i["metrics"] and (at_ms - i["opened_ms"] > self.group_ms
                                               or _kind(metric) not in {_kind(m) for m in i["metrics"]}):
                return False
            if (i["level"], i["entity"]) == (level, entity):
                return True
            above = ((level == "agent" and i["level"] == "team" and i["entity"] == self.team_of(entity))
                     or (level in ("agent", "team") and i["level"] == "site" and i["entity"] == site))
            return above and (metric in i["metrics"] or any(k.startswith(f"{level}|{site}|{entity}|") for k in i["series"]))

        wider = [i for i in opened if joins(i)]
        if wider:
            incident = wider[0]
            if (level == "team" and incident["level"] == "site" and not self._others(incident, entity)
                    and self.calm_elsewhere(site, entity, metric)):
                return self._rescope(incident, [], key, level, entity, metric, at_ms)  # the site's move is this team's
            self._join(incident, key, metric, at_ms)
            return [], []
        inside = [i for i in opened if metric in i["metrics"] and i["site"] == site and (
            (level == "team" and i["level"] == "agent" and self.team_of(i["entity"]) == entity)
            or (level == "site" and i["level"] in ("agent", "team")))]
        if len(inside) == 1 and inside[0]["level"] == "team":  # one team's move, seen diluted on its site
            self._join(inside[0], key, metric, at_ms)
            return [], []
        if inside:
            return self._rescope(inside[0], inside[1:], key, level, entity, metric, at_ms)
        incident = {"id": f"{level}|{site}|{entity}|{at_ms}", "level": level, "site": site, "entity": entity,
                    "metrics": [metric], "series": {key: 1}, "opened_ms": at_ms, "levels": [level],
                    "evidence": json.loads(alarm["evidence"]) | {"series": key}}
        self.open[incident["id"]] = incident
        self.of_series[key] = incident["id"]
        return [self._row(incident, "open", at_ms)], [self._review(incident, level, True)]

    def cleared(self, key: str, at_ms: int) -> tuple[list[dict], list[tuple]]:
        """A series came back (or its new level was accepted); once none is in alarm the incident is
        calm, and closes after ``quiet_ms`` without a new alarm joining it (``tick``)."""
        incident = self.open.get(self.of_series.pop(key, ""))
        if incident is None:
            return [], []
        incident["series"][key] = 0
        if not any(incident["series"].values()):
            incident["calm_ms"] = at_ms
        self.open[incident["id"]] = incident
        return [], []

    def tick(self, at_ms: int) -> tuple[list[dict], list[tuple]]:
        """Close the incidents calm for ``quiet_ms`` by ``at_ms``: (rows, review signals)."""
        rows, reviews = [], []
        stale = lambda i: at_ms - max(i["opened_ms"], i.get("last_ms", 0)) >= self.stale_ms  # a series stopped reporting
        for incident in [i for i in self.open.values() if at_ms - i.get("calm_ms", at_ms) >= self.quiet_ms or stale(i)]:
            del self.open[incident["id"]]
            for series in incident["series"]:
                if self.of_series.get(series) == incident["id"]:
                    del self.of_series[series]
            rows.append(self._row(incident, "closed", at_ms))
            reviews += [self._review(incident, level, False) for level in incident["levels"]]
        return rows, reviews

    def _join(self, incident: dict, key: str, metric: str, at_ms: int) -> None:
        incident["series"][key] = 1
        incident.pop("calm_ms", None)
        incident["last_ms"] = max(incident.get("last_ms", 0), at_ms)
        if metric not in incident["metrics"]:
            incident["metrics"].append(metric)
        self.of_series[key] = incident["id"]
        self.open[incident["id"]] = incident

    def _others(self, incident: dict, team: str) -> bool:
        """Whether the incident holds a series of a team other than ``team`` (or of its agents)."""
        for series in incident["series"]:
            level, _, entity, _ = series.split("|", 3)
            if (level == "team" and entity != team) or (level == "agent" and self.team_of(entity) != team):
                return True
        return False

    def _rescope(self, incident: dict, others: list[dict], key: str, level: str, entity: str, metric: str, at_ms: int
                 ) -> tuple[list[dict], list[tuple]]:
        """The incident's scope moves to ``level`` ``entity`` (wider, taking ``others`` in; or from a site
        to the one team behind it); the first move is a notice (``widened`` or ``narrowed``), later ones
        are ``updated``."""
        rows, actions = [], []
        for other in others:
            del self.open[other["id"]]
            for series, active in other["series"].items():
                incident["series"][series] = max(active, incident["series"].get(series, 0))
                if active:
                    self.of_series[series] = incident["id"]
            incident["metrics"] += [m for m in other["metrics"] if m not in incident["metrics"]]
            rows.append(self._row(other, "merged", at_ms) | {"evidence": json.dumps({"merged_into": incident["id"]})})
            actions += [self._review(other, lvl, False) for lvl in other["levels"]]
        narrower = LEVELS.index(level) < LEVELS.index(incident["level"])
        status = "updated" if incident.get("moved") else "narrowed" if narrower else "widened"
        if narrower:  # the wider scope's signal ends
            actions.append(self._review(incident, incident["level"], False))
            incident["levels"].remove(incident["level"])
        incident.update(level=level, entity=entity, levels=incident["levels"] + [level], moved=True)
        self._join(incident, key, metric, at_ms)
        return rows + [self._row(incident, status, at_ms)], actions + [self._review(incident, level, True)]

    @staticmethod
    def _review(incident: dict, level: str, active: bool) -> tuple:
        """(scope level, site, entity, signal id, active, the level whose review factor applies, evidence):
        a review signal for the agents in the incident's scope."""
        return (incident["level"], incident["site"], incident["entity"], f"{incident['id']}|{level}", active, level,
                {"incident": incident["id"], "metrics": incident["metrics"], **incident["evidence"]})

    @staticmethod
    def _row(incident: dict, status: str, at_ms: int) -> dict:
        return {"alert_id": incident["id"], "kind": "incident", "status": status, "at": format_ms(at_ms),
                "opened_at": format_ms(incident["opened_ms"]), "level": incident["level"], "site_id": incident["site"],
                "entity_id": incident["entity"], "metric": ",".join(incident["metrics"]),
                "severity": "warning" if status in ("open", "widened") else None, "signals": len(incident["series"]),
                "evidence": json.dumps({**incident["evidence"], "series": sorted(incident["series"])})}
