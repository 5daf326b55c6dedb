"""Evaluations in the stream: scored rows, coaching tags, and QA counters in the KPI windows.

Human, automatic (from ``speech.analyzed``) and internal test-call evaluations are counted apart
(``qa_<kind>_*``); calibration evaluations feed calibration only. An evaluation re-submitted with the
same id replaces its earlier contribution (sums applied as differences, like calls).
Human QA under adaptive sampling: an evaluation of a call selected with probability p (its
``inclusion_probability``) adds score/p and max/p to the windows, so a window's ``qa_human_pct`` is the
Hájek (ratio) inverse-probability-weighted estimate of the mean over all calls (Horvitz & Thompson
1952); ``qa_human_n`` counts evaluations. Raising an agent's review rate does not move their average.
Coaching tags: ``outstanding`` (≥ 95%), ``poor`` (< 60%), and ``fail:<item>`` for an item scored 0.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

from schemas import time_ms

from . import kpi
from .assembly import Update
from .autoqa import analyse, auto_evaluation
from .monitor import ITEMS
from .scorecard import UnknownForm, load_form, score

KINDS = ("human", "auto", "test_call")
CATEGORIES = ("etiquette", "knowledge", "procedure")
OUTSTANDING_PCT, POOR_PCT = 95.0, 60.0


def coaching_tags(evaluation: dict, scored: dict) -> list[str]:
    tags = ["outstanding"] if scored["pct"] >= OUTSTANDING_PCT else ["poor"] if scored["pct"] < POOR_PCT else []
    return tags + [f"fail:{i['item_id']}" for i in evaluation["items"] if i["score"] == 0]


class QaAssembler:
    def __init__(self, states: MutableMapping[str, dict], config: kpi.KpiConfig,
                 team_of: Callable[[str], str | None] = lambda agent: None):
        self.states = states
        self.config = config
        self.team_of = team_of

    def apply(self, event: dict) -> Update | None:
        """An ``evaluation.submitted`` or a ``speech.analyzed`` (scored automatically)."""
        metrics = {"interruptions": None, "silence_ratio": None, "agent_talk_ratio": None}
        speech_sentiment, checks = None, {}
        if event["event_type"] == "speech.analyzed":
            customer = (event.get("sentiment") or {}).get("customer")
            speech_sentiment = max(0.0, -customer) if customer is not None else None
            result = analyse(event)
            if result is None:
                return None
            event = auto_evaluation(event, result)
            checks = result.checks
            metrics = {"interruptions": result.interruptions, "silence_ratio": result.silence_ratio,
                       "agent_talk_ratio": result.agent_talk_ratio}
        try:
            scored = score(event)
        except UnknownForm as exc:
            return Update(refused=str(exc))
        key = event["evaluation_id"]
        state = self.states.get(key) or {"version": 0, "contrib": {}, "seen": []}
        if event["event_id"] in state["seen"]:
            return None
        state["seen"] = (state["seen"] + [event["event_id"]])[-10:]
        state["version"] += 1
        contrib = self._contribution(event, scored)
        row = self._row(event, scored, state["version"]) | metrics
        update = Update(deltas=kpi.diff(state["contrib"], contrib), evaluations=[row])
        if state["version"] == 1 and event["kind"] in KINDS:  # detectors see each evaluation once
            at = time_ms(event["event_time"])
            prefixes = [f"{level}|{e_site}|{entity}|" for level, e_site, entity in self._levels(event)]
            weight = 1 / event.get("inclusion_probability", 1.0)  # charts weigh reviews as the windows do
            update.observations = [(p + f"qa_{event['kind']}", scored["pct"], at, weight) for p in prefixes]
            # the automatic-QA items, 1 = failed
            update.observations += [(p + f"item:{item}", float(not checks[item]), at)
                                    for item in ITEMS if item in checks for p in prefixes]
            if event["kind"] == "auto" and event.get("call_id"):  # this call's analytics, for its sampling decision
                update.analyses = [(event["agent_id"], event["call_id"], at,
                                    {"shortfall": 100 - scored["pct"], "negative": speech_sentiment or 0.0})]
            if speech_sentiment is not None:
                update.observations += [(p + "sentiment_negative", speech_sentiment, at) for p in prefixes]
        state["contrib"] = contrib
        self.states[key] = state
        return update

    def _contribution(self, e: dict, scored: dict) -> dict:
        if e["kind"] not in KINDS:
            return {}
        k = e["kind"]
        w = 1 / e.get("inclusion_probability", 1.0) if k == "human" else 1.0  # inverse-probability weight
        counters = {f"qa_{k}_n": 1, f"qa_{k}_score": w * scored["total"], f"qa_{k}_max": w * scored["max"]}
        if k == "human":
            for name in CATEGORIES:
                sections = [s for s in _category_sections(e, name) if s in scored["sections"]]
                counters[f"qa_{name}_score"] = w * sum(scored["sections"][s]["score"] for s in sections)
                counters[f"qa_{name}_max"] = w * sum(scored["sections"][s]["max"] for s in sections)
        out: dict = {}
        kpi.add(out, [k2 for k2 in kpi.keys_at(self.config, time_ms(e["event_time"]), self._levels(e))
                      if k2.split("|")[3] != str(kpi.LIVE_WINDOW_S)], counters)
        return out

    def _levels(self, e: dict) -> list[tuple[str, str, str]]:
        levels = [("agent", e["site_id"], e["agent_id"]), ("site", e["site_id"], e["site_id"])]
        team = self.team_of(e["agent_id"])
        if team:
            levels.append(("team", e["site_id"], team))
        return levels

    def _row(self, e: dict, scored: dict, version: int) -> dict:
        sections = scored["sections"]
        return {
            "evaluation_id": e["evaluation_id"], "kind": e["kind"], "call_id": e.get("call_id") or "",
            "agent_id": e["agent_id"], "team_id": self.team_of(e["agent_id"]) or "", "site_id": e["site_id"],
            "evaluator_id": e["evaluator_id"], "form_id": e["form_id"], "form_version": e["form_version"],
            "evaluated_at": e["event_time"], "total": scored["total"], "max": scored["max"], "pct": scored["pct"],
            "grade": scored["grade"], **{f"{c}_pct": scored["categories"].get(c) for c in CATEGORIES},
            "section_ids": list(sections), "section_scores": [s["score"] for s in sections.values()],
            "section_max": [s["max"] for s in sections.values()],
            "item_ids": [i["item_id"] for i in e["items"]], "item_scores": [i["score"] for i in e["items"]],
            "item_max": [i["max_score"] for i in e["items"]], "coaching_tags": coaching_tags(e, scored),
            "comment": e.get("comment", ""), "inclusion_probability": e.get("inclusion_probability", 1.0),
            "version": version,
        }


def _category_sections(e: dict, name: str) -> list[str]:
    return load_form(e["form_id"], e["form_version"]).spec["categories"][name]["sections"]
