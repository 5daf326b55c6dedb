"""Named QA reviewers (``CALLQA_REVIEWERS_FILE``) and their calibration standing.

A reviewer is ``id`` (the ``evaluator_id`` of their evaluations), ``name``, the ``sites`` they review
(a list, or ``"*"``: every site), the ``languages`` they review calls in, ``reviews_per_day`` (their daily
capacity) and ``coaching`` (whether they take side-by-side coaching sessions; default true). Without a
file the reviewers are the synthetic ``qa-01…`` of ``CALLQA_QA_REVIEWERS``, every site and language, each
``CALLQA_QA_REVIEWS_PER_HOUR × CALLQA_QA_REVIEW_HOURS`` a day.

**Calibration standing** (who may coach): a deviation over ``DEFAULT_THRESHOLD_PCT`` (6 points) from the
call's reference flags a calibration score. A reviewer's standing is the mean absolute deviation of their
calibrated calls in the ``WINDOW_DAYS`` (30) days ending on their latest calibration day: over 6 points they
are *outside* and get no coaching sessions until later calibrations bring that mean back to 6 or under. The
window ends at their latest calibration, not at the plan's day, so only a new calibration changes a standing
(time alone does not clear it); and it spans several calls because one call is a noisy measure (in the
simulator the evaluator who scores 9 points harsh is within 6 points on about one call in three). With no
calibration in ``STANDING_DAYS`` they are *not calibrated* (nothing holds against them: they may coach),
unless their latest standing was outside: that holds, however old, until a new calibration.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from .calibration import DEFAULT_THRESHOLD_PCT, calibrate

KEYS = ("id", "name", "sites", "languages", "reviews_per_day", "coaching")
REQUIRED = ("id", "sites", "languages", "reviews_per_day")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")
STANDING_DAYS = 90  # a reviewer whose latest calibration is older than this is not calibrated
WINDOW_DAYS = 30  # the calibrated calls a standing is measured on: those of the 30 days to the latest calibration


@dataclass(frozen=True)
class Reviewer:
    id: str
    name: str
    sites: tuple[str, ...] | None  # None: every site
    languages: tuple[str, ...] | None  # None: any language (the synthetic reviewers)
    reviews_per_day: int
    coaching: bool = True

    def covers(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def speaks(self, language: str) -> bool:
        """A call of unknown language ('') goes to any reviewer of its site."""
        return not language or self.languages is None or language.lower() in self.languages


def synthetic(count: int, per_day: int) -> tuple[Reviewer, ...]:
    """The reviewers without a file: ``qa-01…``, every site and language, ``per_day`` reviews each."""
    return tuple(Reviewer(f"qa-{i:02d}", f"qa-{i:02d}", None, None, per_day) for i in range(1, count + 1))


def parse_reviewers(spec) -> tuple[Reviewer, ...]:
    """Reviewers from the file's JSON (a list of objects); a ValueError with a one-line message otherwise."""
    if not isinstance(spec, list) or not spec:
        raise ValueError("must be a non-empty JSON list of reviewers")
    out: list[Reviewer] = []
    for n, entry in enumerate(spec, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"reviewer {n} is not a JSON object")
        rid = entry.get("id")
        where = f"reviewer {n}" + (f" ({rid})" if isinstance(rid, str) and rid else "")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key {', '.join(map(repr, unknown))} (known: {', '.join(KEYS)})")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if not isinstance(rid, str) or not rid.strip() or len(rid) > 128:
            raise ValueError(f"{where}: id must be a non-empty string (the evaluator_id of their evaluations)")
        name = entry.get("name", rid)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        sites = entry["sites"]
        if sites != "*" and (not isinstance(sites, list) or not sites
                             or not all(isinstance(s, str) and s.strip() for s in sites)):
            raise ValueError(f"{where}: sites must be \"*\" or a non-empty list of site ids")
        languages = entry["languages"]
        if not isinstance(languages, list) or not languages:
            raise ValueError(f"{where}: languages must be a non-empty list of language codes (e.g. [\"en\", \"fr\"])")
        for language in languages:
            if not isinstance(language, str) or not LANGUAGE.fullmatch(language.lower()):
                raise ValueError(f"{where}: language {language!r} is not a language code (e.g. en, zh, fr)")
        capacity = entry["reviews_per_day"]
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"{where}: reviews_per_day must be a positive whole number (got {capacity!r})")
        coaching = entry.get("coaching", True)
        if not isinstance(coaching, bool):
            raise ValueError(f"{where}: coaching must be true or false")
        if any(r.id == rid for r in out):
            raise ValueError(f"{where}: duplicate id {rid!r}")
        out.append(Reviewer(rid, name, None if sites == "*" else tuple(sites),
                            tuple(sorted({x.lower() for x in languages})), capacity, coaching))
    return tuple(out)


def standings(evaluations: list[dict], expert_ids: frozenset[str] = frozenset(),
              threshold_pct: float = DEFAULT_THRESHOLD_PCT, as_of: date | None = None) -> dict[str, dict]:
    """Each evaluator's calibration standing from calibration evaluations (as for ``calibrate``, with
    ``event_time``): over the ``WINDOW_DAYS`` ending on their latest calibration day (on or before ``as_of``;
    one inside the limit only within ``STANDING_DAYS`` of it, one outside however old), the calls, the mean absolute deviation from the reference, and
    ``outside`` (over ``threshold_pct`` points)."""
    if as_of is not None:
        evaluations = [e for e in evaluations if e["event_time"][:10] <= as_of.isoformat()]
    submitted = {(e["call_id"], e["evaluator_id"]): date.fromisoformat(e["event_time"][:10])
                 for e in evaluations if e.get("call_id")}
    deviations, _ = calibrate(evaluations, expert_ids, threshold_pct)
    scores: dict[str, list[tuple[date, float]]] = defaultdict(list)
    for d in deviations:
        scores[d.evaluator_id].append((submitted[(d.call_id, d.evaluator_id)], abs(d.deviation)))
    out = {}
    for who, days in scores.items():
        latest = max(day for day, _ in days)
        since = latest - timedelta(days=WINDOW_DAYS - 1)
        recent = [dev for day, dev in days if day >= since]
        mean = round(sum(recent) / len(recent), 2)
        if as_of is not None and (as_of - latest).days >= STANDING_DAYS and mean <= threshold_pct:
            continue  # inside long ago: not calibrated now (outside holds until a new calibration)
        out[who] = {"calibrated_on": latest.isoformat(), "since": since.isoformat(), "calls": len(recent),
                    "mean_abs_deviation": mean, "limit": threshold_pct, "outside": mean > threshold_pct}
    return out


def standing_words(standing: dict | None) -> str:
    """A standing in words: inside / outside the limit (mean |deviation| on the day), or not calibrated."""
    if not standing:
        return f"not calibrated in {STANDING_DAYS} days"
    side = "outside" if standing["outside"] else "inside"
    sign = ">" if standing["outside"] else "≤"
    return (f"{side} the calibration limit (mean |deviation| {standing['mean_abs_deviation']:g} {sign} "
            f"{standing['limit']:g} points, {standing['calls']} calls in the {WINDOW_DAYS} days to "
            f"{standing['calibrated_on']})")
