"""Evaluator calibration: when several evaluators score the same call, how far each is from the
reference, and how well they agree.

The reference is an expert's score when the call has one (``expert_ids``), else the mean. A
deviation over ``threshold_pct`` percentage points is flagged. Agreement per month and form
version: per item, Cohen's kappa (two evaluators) or Fleiss' kappa (more) over the item's grade
band (优/良/合格/稍差/差 by percent of the item's points), from statsmodels; for totals ICC(2,1),
two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .scorecard import load_form, score


@dataclass
class Deviation:
    call_id: str
    evaluator_id: str
    form_version: str
    pct: float
    reference_pct: float
    deviation: float
    flagged: bool


def by_evaluator(deviations: list[Deviation]) -> list[dict]:
    """Each evaluator's calls, mean and mean absolute deviation (points) and flagged calls, the farthest first."""
    groups: dict[str, list[Deviation]] = defaultdict(list)
    for d in deviations:
        groups[d.evaluator_id].append(d)
    out = [{"evaluator_id": who, "calls": len(ds), "mean_deviation": round(sum(d.deviation for d in ds) / len(ds), 2),
            "mean_abs_deviation": round(sum(abs(d.deviation) for d in ds) / len(ds), 2),
            "flagged": sum(d.flagged for d in ds)} for who, ds in groups.items()]
    return sorted(out, key=lambda e: (-e["mean_abs_deviation"], e["evaluator_id"]))


def icc_2_1(ratings: np.ndarray) -> float:
    """ICC(2,1) of an n subjects × k raters matrix (no missing values)."""
    n, k = ratings.shape
    grand = ratings.mean()
    ms_rows = k * ((ratings.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((ratings.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    resid = ratings - ratings.mean(axis=1, keepdims=True) - ratings.mean(axis=0, keepdims=True) + grand
    ms_err = (resid ** 2).sum() / ((n - 1) * (k - 1))
    return float((ms_rows - ms_err) / (ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n))


def _band(form, item: str, value: float) -> int:
    """Index of the grade band the item's percentage reaches (0 = 优)."""
    pct = 100 * value / form.items[item]["max"]
    return next(i for i, g in enumerate(form.spec["grades"]) if pct >= g["min_pct"])


DEFAULT_THRESHOLD_PCT = 6.0  # points of deviation from the reference that flag an evaluation


def calibrate(evaluations: list[dict], expert_ids: frozenset[str] = frozenset(),
              threshold_pct: float = DEFAULT_THRESHOLD_PCT):
    """(deviations, agreement rows) for the calls scored by two or more evaluators."""
    from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa  # 0.7 s to import

    by_call: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for e in evaluations:
        if e.get("call_id"):
            by_call[(e["call_id"], e["form_id"], e["form_version"])][e["evaluator_id"]] = e
    deviations: list[Deviation] = []
    groups: dict[tuple, list[dict[str, dict]]] = defaultdict(list)
    for (call, form_id, version), raters in sorted(by_call.items()):
        if len(raters) < 2:
            continue
        pcts = {who: score(e)["pct"] for who, e in raters.items()}
        experts = [pcts[w] for w in raters if w in expert_ids]
        reference = experts[0] if experts else sum(pcts.values()) / len(pcts)
        for who, pct in sorted(pcts.items()):
            if who in expert_ids:
                continue
            dev = round(pct - reference, 3)
            deviations.append(Deviation(call, who, version, pct, round(reference, 3), dev, abs(dev) > threshold_pct))
        month = min(e["event_time"][:7] for e in raters.values())
        groups[(month, form_id, version)].append(raters)
    agreement = []
    for (month, form_id, version), calls in sorted(groups.items()):
        form = load_form(form_id, version)
        # the evaluators who scored every call of the group make a complete calls × raters matrix
        raters = sorted(set.intersection(*(set(c) for c in calls)))
        if len(raters) < 2 or len(calls) < 2:
            continue
        totals = np.array([[score(c[r])["pct"] for r in raters] for c in calls])
        row = {"month": month, "form_id": form_id, "form_version": version, "calls": len(calls),
               "evaluators": raters, "icc_total": round(icc_2_1(totals), 4), "kappa": {}}
        for item in form.items:
            bands = [[_band(form, item, v) for r in raters
                      for v in [next((i["score"] for i in c[r]["items"] if i["item_id"] == item), None)] if v is not None]
                     for c in calls]
            bands = [b for b in bands if len(b) == len(raters)]
            if len(bands) < 2 or len({x for b in bands for x in b}) < 2:
                continue  # every rating alike: agreement is trivially perfect, kappa undefined
            matrix = np.array(bands)
            if len(raters) == 2:
                categories = sorted({x for b in bands for x in b})
                table = np.array([[np.sum((matrix[:, 0] == a) & (matrix[:, 1] == b)) for b in categories] for a in categories])
                kappa = cohens_kappa(table).kappa
            else:
                kappa = fleiss_kappa(aggregate_raters(matrix)[0])
            row["kappa"][item] = round(float(kappa), 4)
        agreement.append(row)
    return deviations, agreement
