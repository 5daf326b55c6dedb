"""Which QA items matter to customers: how CSAT differs with each form item, among calls that have both a QA
evaluation (human, or automatic) and a post-call survey.

Two readings per kind of evaluation and item:

- *marginal* (``sinks.queries.CSAT_ITEMS``, the dashboard's panel too): mean CSAT of the calls that passed the
  item against those that failed it, the difference with a 95% confidence interval and the point-biserial
  correlation. Items fail together — an agent who gets the answer wrong often also listens badly — so a
  marginal difference carries the effect of the items that fail with it;
- *adjusted* (``adjusted_effects``, here): one least-squares regression of CSAT on every shown item's pass flag
  at once (statsmodels OLS, HC3 heteroskedasticity-robust standard errors: CSAT is bounded and discrete), so an
  item's coefficient is the CSAT difference of passing it with the other items held as they were. p-values are
  Holm-adjusted over the items of a kind (family-wise error 5%): an item is significant when its adjusted
  p-value is below 0.05. Items are ranked by the adjusted effect.

An item *passes* with at least ``ITEM_PASS_SHARE`` of its points; an evaluation that leaves an item out (not
applicable, e.g. the apology after a hold in a call without one) did not fail it. Items that always pass or
fail together (or one exactly when the other passes) cannot be told apart: they share one coefficient
(``same_as``; "not ITEM" for the opposite one); an item whose flags are a combination of others' is left out
of the regression (no adjusted effect). Only items with at least ``MIN_GROUP`` calls passed and
``MIN_GROUP`` failed are shown (the marginal query's rule), which also keeps the normal approximations of
both readings sound. Evaluations are not weighted by their inclusion
probability: the question is how items relate to CSAT in the calls reviewed, not a center-wide mean.
"""
from __future__ import annotations

import numpy as np

from callqa.core.surveys import ITEM_PASS_SHARE, MIN_GROUP  # noqa: F401 (MIN_GROUP: the report's)

ALPHA = 0.05


def _flags(pairs: list[dict], items: list[str]) -> np.ndarray:
    """One row per call, one column per item: 1 when the call passed the item (or it was not applicable)."""
    out = np.ones((len(pairs), len(items)))
    column = {item: j for j, item in enumerate(items)}
    for i, p in enumerate(pairs):
        for item, score, most in zip(p["item_ids"], p["item_scores"], p["item_max"]):
            j = column.get(item)
            if j is not None:
                out[i, j] = float(score >= ITEM_PASS_SHARE * most)
    return out


def adjusted_effects(pairs: list[dict], shown: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """Per (kind, item) of ``shown``: the adjusted effect of passing it on CSAT (``adjusted``), its 95% CI
    (``adjusted_low``, ``adjusted_high``), the Holm-adjusted p-value (``p_holm``), ``significant``, and
    ``same_as`` (the items it always passed or failed with). ``pairs``: rows of ``CSAT_PAIRS``."""
    import statsmodels.api as sm
    from statsmodels.stats.multitest import multipletests

    out: dict[tuple[str, str], dict] = {}
    for kind in sorted({k for k, _ in shown}):
        items = [item for k, item in shown if k == kind]
        rows = [p for p in pairs if p["kind"] == kind]
        if not rows or not items:
            continue
        x = _flags(rows, items)
        y = np.array([float(p["csat"]) for p in rows])
        # items whose pass flags are equal (or opposite) in every call: one column for them, each with its sign
        groups: dict[bytes, list[tuple[int, int]]] = {}
        for j in range(len(items)):
            sign = 1 if x[0, j] == 1 else -1
            groups.setdefault((x[:, j] if sign == 1 else 1 - x[:, j]).tobytes(), []).append((j, sign))
        columns: list[list[tuple[int, int]]] = []
        for members in sorted(groups.values(), key=lambda m: m[0][0]):
            trial = np.column_stack([np.ones(len(y))] + [x[:, c[0][0]] for c in columns + [members]])
            if np.linalg.matrix_rank(trial) == trial.shape[1]:  # else a combination of those kept: left out
                columns.append(members)
        if not columns or len(y) <= len(columns) + 1:
            continue
        fit = sm.OLS(y, np.column_stack([np.ones(len(y))] + [x[:, c[0][0]] for c in columns])).fit(cov_type="HC3")
        low_high = fit.conf_int(ALPHA)
        rejected, p_holm, *_ = multipletests(fit.pvalues[1:], alpha=ALPHA, method="holm")
        for n, members in enumerate(columns, 1):
            first = members[0][1]
            for j, sign in members:
                s = sign * first  # passing this item is passing the column's (1) or failing it (-1)
                low, high = sorted((s * float(low_high[n][0]), s * float(low_high[n][1])))
                out[(kind, items[j])] = {
                    "adjusted": round(s * float(fit.params[n]), 3), "adjusted_low": round(low, 3),
                    "adjusted_high": round(high, 3), "p_holm": float(p_holm[n - 1]),
                    "significant": bool(rejected[n - 1]),
                    "same_as": [("" if sk == sign else "not ") + items[k] for k, sk in members if k != j]}
    return out


def item_table(marginal: list[dict], pairs: list[dict]) -> list[dict]:
    """The rows of ``CSAT_ITEMS`` with their adjusted effects, ranked by it within each kind (human first)."""
    effects = adjusted_effects(pairs, [(r["kind"], r["item"]) for r in marginal])
    rows = [r | effects.get((r["kind"], r["item"]), {"adjusted": None, "adjusted_low": None, "adjusted_high": None,
                                                      "p_holm": None, "significant": None, "same_as": []})
            for r in marginal]
    return sorted(rows, key=lambda r: (r["kind"] != "human", r["kind"],
                                       -(r["adjusted"] if r["adjusted"] is not None else -np.inf), r["item"]))
