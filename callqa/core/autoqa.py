"""Automated QA from ``speech.analyzed``: what a machine can check in a transcript with timings.

Checks (phrase lists in Chinese and English, ``callqa/forms/phrases.json``): the standard greeting
in the first seconds; the customer's name asked and their surname used; the need asked; before a
hold, the reason; after it, an apology; holds over 2 minutes explained (a check-in during the wait);
no interrupting (the agent starting while the customer speaks); the closing question and thanks;
forbidden phrases. A hold runs from an agent hold phrase to the next utterance that is not the agent
checking in, when that is at least ``HOLD_GAP_MS`` later.
Also measured: silence ratio and agent talk ratio. The result is an evaluation of kind ``auto`` on
the form's auto-checkable items, never mixed with human scores.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

from .scorecard import DEFAULT_FORM, FORMS, load_form

GREETING_WITHIN_MS = 10_000
HOLD_GAP_MS = 10_000
LONG_HOLD_MS = 120_000
INTERRUPT_OVERLAP_MS = 500


@lru_cache(maxsize=1)
def phrases() -> dict[str, dict[str, list[str]]]:
    return json.loads((FORMS / "phrases.json").read_text())


def says(text: str, kind: str, language: str) -> bool:
    lowered = text.lower()
    return any(p in lowered for p in phrases()[kind][language])


@dataclass
class AutoQa:
    checks: dict[str, bool] = field(default_factory=dict)  # form item id → passed
    findings: list[str] = field(default_factory=list)  # why an item failed, for the reviewer
    interruptions: int = 0
    forbidden: list[str] = field(default_factory=list)
    silence_ratio: float = 0.0
    agent_talk_ratio: float = 0.0


def holds(utterances: list[dict], language: str) -> list[tuple[int, int, dict, dict | None, list[dict]]]:
    """(start, end, the agent's hold utterance, the agent's first utterance back, check-ins) of each hold."""
    out = []
    for i, u in enumerate(utterances):
        if u["speaker"] != "agent" or not says(u["text"], "hold", language):
            continue
        j, check_ins = i + 1, []
        while j < len(utterances) and utterances[j]["speaker"] == "agent" and says(utterances[j]["text"], "check_in", language):
            check_ins.append(utterances[j])
            j += 1
        if j < len(utterances) and utterances[j]["start_ms"] - u["end_ms"] >= HOLD_GAP_MS:
            back = next((v for v in utterances[j:] if v["speaker"] == "agent"), None)
            out.append((u["end_ms"], utterances[j]["start_ms"], u, back, check_ins))
    return out


def analyse(speech: dict) -> AutoQa | None:
    """Check one ``speech.analyzed`` event; None when it has no utterances (flags only)."""
    utterances = sorted(speech.get("utterances") or [], key=lambda u: u["start_ms"])
    if not utterances:
        return None
    lang = speech["language"]
    agent = [u for u in utterances if u["speaker"] == "agent"]
    customer = [u for u in utterances if u["speaker"] == "customer"]
    r = AutoQa()

    def check(item: str, passed: bool, why: str) -> None:
        r.checks[item] = passed
        if not passed:
            r.findings.append(why)

    first = agent[0] if agent else None
    check("greeting.standard", first is not None and first["start_ms"] <= GREETING_WITHIN_MS
          and says(first["text"], "greeting", lang), "no standard greeting in the first 10 seconds")
    check("greeting.asks_name", any(says(u["text"], "asks_name", lang) for u in agent), "did not ask the customer's name")
    check("greeting.uses_surname", any(says(u["text"], "surname", lang) for u in agent), "never addressed the customer by surname")
    check("greeting.asks_need", any(says(u["text"], "asks_need", lang) for u in agent), "did not ask the customer's need")
    found = holds(utterances, lang)
    if found:
        check("waiting.reason_before_hold", all(says(h[2]["text"], "hold_reason", lang) for h in found),
              "put the customer on hold without saying why")
        check("waiting.apology_after_hold", all(h[3] is not None and says(h[3]["text"], "apology", lang) for h in found),
              "no apology after a hold")
        long_holds = [h for h in found if h[1] - h[0] > LONG_HOLD_MS]
        if long_holds:
            check("waiting.explains_long_hold", all(h[4] for h in long_holds), "a hold over 2 minutes without a check-in")
    r.interruptions = sum(1 for a in agent for c in customer
                          if c["start_ms"] < a["start_ms"] < c["end_ms"] - INTERRUPT_OVERLAP_MS)
    check("answering.lets_finish", r.interruptions == 0, f"interrupted the customer {r.interruptions} time(s)")
    tail = agent[-3:]
    check("closing.other_needs", any(says(u["text"], "other_needs", lang) for u in tail), "did not ask for other needs")
    check("closing.thanks", any(says(u["text"], "thanks", lang) for u in tail), "did not thank the customer for the call")
    r.forbidden = [u["text"] for u in agent if says(u["text"], "forbidden", lang)]
    check("overall.polite", not r.forbidden, "used a forbidden phrase")
    end = max(u["end_ms"] for u in utterances)
    spoken = _covered([(u["start_ms"], u["end_ms"]) for u in utterances])
    hold_time = sum(h[1] - h[0] - sum(c["end_ms"] - c["start_ms"] for c in h[4]) for h in found)
    r.silence_ratio = round(max(0, end - spoken - hold_time) / end, 4) if end else 0.0
    talk = sum(u["end_ms"] - u["start_ms"] for u in utterances)
    r.agent_talk_ratio = round(sum(u["end_ms"] - u["start_ms"] for u in agent) / talk, 4) if talk else 0.0
    return r


def _covered(intervals: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def auto_evaluation(speech: dict, result: AutoQa, form=DEFAULT_FORM) -> dict:
    """The automatic result as an ``evaluation.submitted`` event of kind ``auto``."""
    f = load_form(*form)
    items = f.items
    return {
        "event_id": f"autoqa:{speech['event_id']}", "event_type": "evaluation.submitted", "schema_version": 1,
        "event_time": speech["event_time"], "site_id": speech["site_id"], "source": "callqa-autoqa",
        "evaluation_id": f"auto:{speech['call_id']}", "call_id": speech["call_id"],
        "agent_id": speech.get("agent_id") or "unknown", "evaluator_id": "auto-qa",
        "form_id": f.form_id, "form_version": f.version, "kind": "auto",
        "items": [{"item_id": item, "score": items[item]["max"] if passed else 0, "max_score": items[item]["max"]}
                  for item, passed in result.checks.items()],
        "comment": "; ".join(result.findings)[:4096],
    }
