"""QA scorecards: versioned forms (``callqa/forms/<form>/<version>.json``) and how an evaluation is scored.

A form has sections of weighted items with Chinese and English labels, categories that group
sections (phone etiquette, knowledge, procedure adherence) and grade bands by percentage of the
maximum (优 100%, 良 80%, 合格 60%, 稍差 40%, 差 0%: a result gets the highest band it reaches).
A score always names its form and version.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FORMS = Path(__file__).resolve().parent.parent / "forms"
DEFAULT_FORM = ("hotline-100", "2024.1")


class UnknownForm(ValueError):
    """An evaluation names a form or version that is not configured, or an item the form lacks."""


@dataclass(frozen=True)
class Form:
    form_id: str
    version: str
    spec: dict

    @property
    def items(self) -> dict[str, dict]:
        """item id → item (with its section id)."""
        return {i["id"]: i | {"section": s["id"]} for s in self.spec["sections"] for i in s["items"]}

    @property
    def auto_items(self) -> list[str]:
        return [i for i, item in self.items.items() if item.get("auto")]

    def grade(self, pct: float) -> str:
        return next(g["grade"] for g in self.spec["grades"] if pct >= g["min_pct"])


@lru_cache(maxsize=64)
def load_form(form_id: str, version: str) -> Form:
    path = FORMS / form_id / f"{version}.json"
    if not path.is_file() or FORMS.resolve() not in path.resolve().parents:  # ids are never paths
        raise UnknownForm(f"no QA form {form_id} version {version} (expected {path})")
    spec = json.loads(path.read_text())
    return Form(spec["form_id"], spec["version"], spec)


def _pct(score: float, maximum: float) -> float | None:
    return round(100 * score / maximum, 3) if maximum else None


def score(evaluation: dict) -> dict:
    """Total, percentage, grade, and section and category scores of an ``evaluation.submitted`` event.

    Items the form lacks raise UnknownForm; items the evaluation leaves out are not applicable and
    count neither way (their points leave the maximum).
    """
    form = load_form(evaluation["form_id"], evaluation["form_version"])
    items = form.items
    sections: dict[str, list[float]] = {}
    for entry in evaluation["items"]:
        item = items.get(entry["item_id"])
        if item is None:
            raise UnknownForm(f"item {entry['item_id']!r} is not on form {form.form_id} {form.version}")
        if entry["score"] > item["max"]:
            raise UnknownForm(f"item {entry['item_id']!r} scored {entry['score']} of at most {item['max']}")
        got = sections.setdefault(item["section"], [0.0, 0.0])
        got[0] += entry["score"]
        got[1] += item["max"]
    total = sum(s for s, _ in sections.values())
    maximum = sum(m for _, m in sections.values())
    pct = _pct(total, maximum) or 0.0
    categories = {}
    for name, category in form.spec["categories"].items():
        parts = [sections[s] for s in category["sections"] if s in sections]
        categories[name] = _pct(sum(p[0] for p in parts), sum(p[1] for p in parts))
    return {"total": total, "max": maximum, "pct": pct, "grade": form.grade(pct),
            "sections": {k: {"score": v[0], "max": v[1]} for k, v in sections.items()}, "categories": categories}
