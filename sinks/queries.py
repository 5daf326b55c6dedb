"""Named read queries: the one place each query lives (CLI, dashboards, alert rules and tests use these)."""
from __future__ import annotations

from callqa.core.calibration import DEFAULT_THRESHOLD_PCT
from callqa.core.monitor import METRICS
from callqa.core.sampling import PolicyConfig
from callqa.core.surveys import ITEM_PASS_SHARE, MIN_GROUP
from callqa.core.thresholds import RULES
from callqa.reasons import BAND_WORDS, METHOD_WORDS, METRIC_WORDS
from streams.gauges import REVIEW_DAYS

# Hourly service level, ASA, abandonment and AHT of one site and its local day (callqa query; README):
# ``timezone`` is the site's zone (CALLQA_SITE_TIMEZONES), the hours are its local hours.
SITE_HOURLY = """
SELECT formatDateTime(window_start, '%H:%i', '{timezone}') AS hour, offered, answered, abandoned,
       round(service_level, 3) AS service_level, asa_s, round(abandon_rate, 3) AS abandon_rate, aht_s
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 3600 AND site_id = '{site}' AND local_day = '{day}'
ORDER BY window_start
"""

# The live view: the last 30 minutes per site and queue, from the six latest 5-minute buckets.
LIVE_LAST_30_MINUTES = """
SELECT level, site_id, entity_id, sum(offered) AS calls_offered, sum(answered) AS calls_answered,
       sum(abandoned) AS calls_abandoned,
       round(sum(sl_numerator) / nullIf(sum(sl_denominator), 0), 3) AS service_level,
       round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 1) AS asa_s
FROM kpi_windows FINAL
WHERE level IN ('site', 'queue') AND window_s = 300
  AND window_start >= (SELECT max(window_start) FROM kpi_windows WHERE window_s = 300) - INTERVAL 25 MINUTE
GROUP BY level, site_id, entity_id
ORDER BY level, site_id, entity_id
"""

SITE_KPI_SUMMARY = """
SELECT site_id,
       sum(offered) AS calls_offered,
       sum(answered) AS calls_answered,
       sum(abandoned) AS calls_abandoned,
       round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 2) AS asa_s,
       round(sum(abandoned) / nullIf(sum(offered), 0), 4) AS abandon_rate
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = {window_s:d}
GROUP BY site_id
ORDER BY site_id
"""

CALL_OUTCOMES = """
SELECT site_id, outcome, count() AS calls
FROM call_records FINAL
GROUP BY site_id, outcome
ORDER BY site_id, outcome
"""

# Coaching library: calls tagged for coaching (outstanding, poor, fail:<item>) by item, agent and period.
COACHING_EXAMPLES = """
SELECT evaluated_at, agent_id, call_id, kind, pct, grade, coaching_tags, comment
FROM evaluations FINAL
WHERE has(coaching_tags, '{tag}') AND evaluated_at >= '{start}' AND evaluated_at < '{end}'{agent_filter}
ORDER BY evaluated_at
"""

# Section and category scores (%) per agent, team or site ({level}_id) and period, by kind.
QA_SECTION_SCORES = """
SELECT {level}_id, kind, section, round(100 * sum(score) / sum(max), 1) AS pct, count() AS evaluations
FROM evaluations FINAL
ARRAY JOIN section_ids AS section, section_scores AS score, section_max AS max
WHERE evaluated_at >= '{start}' AND evaluated_at < '{end}'
GROUP BY {level}_id, kind, section
ORDER BY {level}_id, kind, section
"""

# Evaluations per agent this month against the monthly target (human QA and internal test calls).
EVALUATIONS_THIS_MONTH = """
SELECT agent_id, countIf(kind = 'human') AS human, countIf(kind = 'test_call') AS test_calls,
       {target:d} AS target, countIf(kind = 'human') >= {target:d} AS on_target
FROM evaluations FINAL
WHERE toStartOfMonth(evaluated_at) = toStartOfMonth(toDateTime64('{month}-01', 3, 'UTC'))
GROUP BY agent_id
ORDER BY human
"""

# Calibration evaluations of one month, as the calibration report reads them.
CALIBRATION_EVALUATIONS = """
SELECT evaluation_id, call_id, agent_id, evaluator_id, form_id, form_version, toString(evaluated_at),
       item_ids, item_scores, item_max
FROM evaluations FINAL
WHERE kind = 'calibration' AND formatDateTime(evaluated_at, '%Y-%m') = '{month}'
"""

# A day's review queue (what the reviewers' plans are made from), with what explains each call's draw
# (callqa.reasons): the coverage rule's cell, and the agent's rate in force at the call (the latest change
# at or before it) with the signal that set it.
REVIEW_QUEUE_DAY = """
SELECT q.call_id AS call_id, q.agent_id AS agent_id, q.team_id AS team_id, q.site_id AS site_id, q.method AS method,
       q.reason AS reason, q.risk AS risk, toString(q.at) AS at, d.cell AS cell, r.new_rate AS agent_rate, r.signal_kind AS signal_kind,
       r.evidence AS signal_evidence
FROM (
    SELECT call_id, agent_id, team_id, site_id, at, method, reason, risk FROM review_queue FINAL
    WHERE day = '{day}' AND status = 'queued'
) AS q
LEFT JOIN (
    SELECT call_id, cell FROM sampling_decisions FINAL
    WHERE at >= toDateTime64('{day}', 3, 'UTC') - INTERVAL 2 DAY AND at < toDateTime64('{day}', 3, 'UTC') + INTERVAL 3 DAY
) AS d ON d.call_id = q.call_id
ASOF LEFT JOIN (
    SELECT agent_id, at, new_rate, signal_kind, evidence FROM sampling_rates FINAL
    WHERE at < toDateTime64('{day}', 3, 'UTC') + INTERVAL 3 DAY
) AS r ON r.agent_id = q.agent_id AND q.at >= r.at
ORDER BY q.risk DESC, q.call_id
"""

# The language of each call in a day's review queue (what `callqa plan` matches reviewers' languages with): the
# call's own (its speech analytics), else its agent's (the latest agent.profile's `language`), else ''.
REVIEW_QUEUE_LANGUAGES = """
SELECT q.call_id AS call_id, if(s.language != '', s.language, p.language) AS language
FROM (
    SELECT call_id, agent_id FROM review_queue FINAL WHERE day = '{day}' AND status = 'queued'
) AS q
LEFT JOIN (
    SELECT call_id, any(JSONExtractString(payload, 'language')) AS language FROM raw_events
    WHERE event_type = 'speech.analyzed' AND event_time >= toDateTime64('{day}', 3, 'UTC') - INTERVAL 2 DAY
      AND event_time < toDateTime64('{day}', 3, 'UTC') + INTERVAL 3 DAY
    GROUP BY call_id
) AS s ON s.call_id = q.call_id
LEFT JOIN (
    SELECT agent_id, argMax(JSONExtractString(payload, 'language'), event_time) AS language FROM raw_events
    WHERE event_type = 'agent.profile' AND event_time < toDateTime64('{day}', 3, 'UTC') + INTERVAL 1 DAY
    GROUP BY agent_id
) AS p ON p.agent_id = q.agent_id
"""

# Calibration evaluations submitted in the {days} days up to the end of a day (reviewers' calibration standing).
CALIBRATION_BEFORE = """
SELECT evaluation_id, call_id, agent_id, evaluator_id, form_id, form_version, toString(evaluated_at),
       item_ids, item_scores, item_max
FROM evaluations FINAL
WHERE kind = 'calibration' AND evaluated_at < toDateTime64('{day}', 3, 'UTC') + INTERVAL 1 DAY
"""

# Agents who took calls in the four weeks before a week, with the hours of day they worked (local hours
# of their site: ``local_hour`` is ``local_hour('answered_at', clock)``).
ACTIVE_AGENTS = """
SELECT agent_id, any(site_id) AS site_id, groupUniqArray(hour) AS hours
FROM (
    SELECT agent_id, site_id, {local_hour} AS hour
    FROM call_records FINAL
    WHERE agent_id != '' AND answered_at >= toDateTime64('{week}', 3, 'UTC') - INTERVAL 28 DAY
      AND answered_at < toDateTime64('{week}', 3, 'UTC')
)
GROUP BY agent_id
ORDER BY agent_id
"""


def local_hour(column: str, clock) -> str:
    """SQL of the local hour of day of ``column`` (a UTC time) at its row's site (``site_id``), for the
    zones of a ``callqa.core.clock.SiteClock`` (ClickHouse takes a time zone as a constant only)."""
    by_zone: dict[str, list[str]] = {}
    for site, zone in clock.zones.items():
        if zone != clock.default:
            by_zone.setdefault(zone, []).append(site)
    branches = [f"site_id IN ({', '.join(_quoted(s) for s in sites)}), toHour({column}, {_quoted(zone)})"
                for zone, sites in sorted(by_zone.items())]
    otherwise = f"toHour({column}, {_quoted(clock.default)})"
    return f"multiIf({', '.join(branches)}, {otherwise})" if branches else otherwise


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The evaluation items agents failed most in the four weeks before a week.
FAILING_ITEMS = """
SELECT substring(tag, 6) AS item, count() AS failures
FROM evaluations FINAL ARRAY JOIN coaching_tags AS tag
WHERE startsWith(tag, 'fail:') AND evaluated_at >= toDateTime64('{week}', 3, 'UTC') - INTERVAL 28 DAY
  AND evaluated_at < toDateTime64('{week}', 3, 'UTC')
GROUP BY item
ORDER BY failures DESC, item
LIMIT {limit}
"""


# ---------------------------------------------------------------------------------------------------
# Dashboard queries (Grafana). Written with Grafana's variables (${site:singlequote}, ...) and the
# ClickHouse plugin's macros ($__timeFilter, ...): sinks/macros.py expands them as Grafana does.
# dashboards/ builds the panels and alert rules from these; nothing else holds their SQL.
# ---------------------------------------------------------------------------------------------------

SITES = "site_id IN (${site:singlequote})"
QUEUES = "entity_id IN (${queue:singlequote})"
AGENTS = "agent_id IN (${agent:singlequote})"

# KPI ratios from summed counters (the formulas of callqa.core.kpi.row), for any slice of windows or rollups.
RATIOS = {
    "service_level": "round(sum(sl_numerator) / nullIf(sum(sl_denominator), 0), 3)",
    "asa_s": "round(sum(wait_answered_ms) / nullIf(sum(answered), 0) / 1000, 1)",
    "abandon_rate": "round(sum(abandoned) / nullIf(sum(offered), 0), 3)",
    "aht_s": "round((sum(talk_ms) + sum(hold_ms) + sum(acw_ms)) / nullIf(sum(handled), 0) / 1000, 1)",
    "transfer_rate": "round(sum(transferred) / nullIf(sum(handled), 0), 3)",
    "fcr_rate": "round(sum(fcr_resolved) / nullIf(sum(fcr_eligible), 0), 3)",
    "occupancy": "round((sum(talk_ms) + sum(hold_ms) + sum(acw_ms)) / nullIf(sum(logged_in_ms) - sum(not_ready_ms), 0), 3)",
    "qa_human_pct": "round(100 * sum(qa_human_score) / nullIf(sum(qa_human_max), 0), 1)",
    "qa_auto_pct": "round(100 * sum(qa_auto_score) / nullIf(sum(qa_auto_max), 0), 1)",
    "csat_pct": "round(100 * sum(csat_satisfied) / nullIf(sum(csat_responses), 0), 1)",  # top-two box (4-5 of 5)
    "csat_avg": "round(sum(csat_sum) / nullIf(sum(csat_responses), 0), 2)",
    "nps": "round(100 * (sum(nps_promoters) - sum(nps_detractors)) / nullIf(sum(nps_responses), 0), 1)",
}


def ratios(*names: str) -> str:
    return ", ".join(f"{RATIOS[n]} AS {n}" for n in names)


# Dashboard variables: sites, their queues, teams and agents (teams and agents as of their latest call).
VAR_SITE = "SELECT DISTINCT site_id FROM kpi_daily WHERE level = 'site' ORDER BY site_id"
VAR_QUEUE = f"SELECT DISTINCT entity_id FROM kpi_daily WHERE level = 'queue' AND {SITES} ORDER BY entity_id"
VAR_TEAM = f"SELECT DISTINCT team_id FROM agents FINAL WHERE {SITES} ORDER BY team_id"
VAR_AGENT = f"SELECT agent_id FROM agents FINAL WHERE {SITES} AND team_id IN (${{team:singlequote}}) ORDER BY agent_id"

# (1) Live operations wallboard ------------------------------------------------------------------
# "Now" is the end of the dashboard's range ($__toTime); "today" is each site's own local day (SITE_TODAY).
WAITING_LOOKBACK_H = 4  # a call queued longer ago than this with no outcome stored is not waiting (a lost end)
AGENT_LOOKBACK_H = 24  # an agent's state: their latest state change and call in the day before now

# The KPIs that callqa.core.thresholds.RULES judge, unrounded as the core compares them, over the windows
# where ``condition`` holds (the wallboard colours them with the rules' limits: dashboards/build.py).
_THRESHOLDED = {"service_level": ("sl_numerator", "sl_denominator", ""), "abandon_rate": ("abandoned", "offered", ""),
                "asa_s": ("wait_answered_ms", "answered", " / 1000")}
assert set(_THRESHOLDED) == {r.metric for r in RULES}, "a rule's KPI the wallboard cannot compute"


def kpi_where(metric: str, condition: str) -> str:
    numerator, denominator, scale = _THRESHOLDED[metric]
    return f"sumIf({numerator}, {condition}) / nullIf(sumIf({denominator}, {condition}), 0){scale}"


LOCAL_DAY_MAX_H = 26  # a local day is at most 25 hours long (a daylight-saving day): its buckets start after now - this

# Each chosen site's "today": its local day (CALLQA_SITE_TIMEZONES; the KPI rows' local_day, callqa.core.clock)
# that holds now. Exact from the site's day window (86400 s, from its local midnight to the next, 23 or 25 hours
# on a daylight-saving day) holding now; a site with day windows but none holding now has had no call yet
# today (the same calls make its buckets and its day window), so nothing counts as today. Where no day windows
# are kept (CALLQA_KPI_WINDOWS without 86400), the latest local_day of the site's buckets before now.
# ClickHouse takes a zone only as a constant, so the site's zone is read from its rows, not converted here.
SITE_TODAY = f"""
SELECT site_id, if(countIf(window_s = 86400) > 0, maxIf(local_day, window_s = 86400 AND window_end > $__toTime),
                   maxIf(local_day, window_s = 300 AND window_start < $__toTime)) AS today
FROM kpi_windows
WHERE level = 'site' AND window_s IN (300, 86400) AND {SITES} AND window_start <= $__toTime
  AND window_start > $__toTime - INTERVAL {LOCAL_DAY_MAX_H} HOUR
GROUP BY site_id"""

_TODAY = f"(site_id, local_day) IN (SELECT site_id, today FROM ({SITE_TODAY}))"
_LAST_30_MINUTES = "window_start >= $__toTime - INTERVAL 30 MINUTE"  # six 5-minute buckets, the current one partial


def _at_least(count: str, ratio: str) -> str:
    """``ratio``, left out (NULL) where ``count`` is below the ``min_calls`` dashboard constant
    (CALLQA_MIN_CALLS_FOR_RATIO, as the report's ``guard``)."""
    return f"if({count} < ${{min_calls}}, NULL, {ratio})"


def _service_now(by: str) -> str:
    """Service level today (each site's local day) and in the last 30 minutes, abandonment and speed of
    answer in the last 30 minutes, with the calls offered each is drawn from (none from fewer than
    ``min_calls``), from the chosen queues' 5-minute buckets; grouped ``by`` (nothing: one row)."""
    return f"""
    SELECT {by + ', ' if by else ''}sumIf(offered, {_TODAY}) AS offered_today,
           sumIf(offered, {_LAST_30_MINUTES}) AS offered_30m,
           {_at_least('offered_today', kpi_where('service_level', _TODAY))} AS service_level_today,
           {_at_least('offered_30m', kpi_where('service_level', _LAST_30_MINUTES))} AS service_level_30m,
           {_at_least('offered_30m', kpi_where('abandon_rate', _LAST_30_MINUTES))} AS abandon_rate_30m,
           {_at_least('offered_30m', kpi_where('asa_s', _LAST_30_MINUTES))} AS asa_s_30m
    FROM kpi_windows FINAL
    WHERE level = 'queue' AND window_s = 300 AND {SITES} AND {QUEUES} AND window_start < $__toTime
      AND window_start > $__toTime - INTERVAL {LOCAL_DAY_MAX_H} HOUR
    {'GROUP BY ' + by if by else ''}"""


# The chosen sites' and queues' service now (one row: the wallboard's big numbers).
LIVE_SERVICE_NOW = _service_now("")

# Contacts waiting now per queue: calls whose latest queue event is a call.queued (not answered, abandoned
# or ended since; a requeue after a transfer waits again in its new queue), and the oldest wait in the queue.
CONTACTS_WAITING = f"""
SELECT site_id, queue_id, count() AS waiting, max(waited_s) AS oldest_wait_s
FROM (
    SELECT site_id, call_id, argMax(event_type, (event_time, event_type != 'call.queued')) AS last,
           argMaxIf(JSONExtractString(payload, 'queue_id'), event_time, event_type = 'call.queued') AS queue_id,
           dateDiff('second', maxIf(event_time, event_type = 'call.queued'), $__toTime) AS waited_s
    FROM raw_events
    WHERE event_type IN ('call.queued', 'call.answered', 'call.abandoned', 'call.ended') AND {SITES}
      AND event_time > $__toTime - INTERVAL {WAITING_LOOKBACK_H} HOUR AND event_time <= $__toTime
    GROUP BY site_id, call_id
)
WHERE last = 'call.queued' AND queue_id IN (${{queue:singlequote}})
GROUP BY site_id, queue_id ORDER BY site_id, queue_id
"""

CONTACTS_WAITING_TOTAL = f"SELECT sum(waiting) AS waiting, max(oldest_wait_s) AS oldest_wait_s FROM ({CONTACTS_WAITING})"

# Each staffed agent's state now and since when: available, not_ready (with the reason), on_contact (and the
# call's queue) or after_call_work. From their latest agent.state_changed (logged_in counts as available)
# and their latest call event (answered: on contact; ended or transferred away: after-call work until the
# call.wrapup_ended, where the site's source reports wrap-ups, else back to their state). A state change
# during a call (a break that starts when it ends) does not end the contact; a log-off after it does.
# Marks naming queues (Asterisk ADDMEMBER/PAUSE in one queue) count as the agent's state.
AGENTS_NOW = f"""
SELECT site_id, agent_id, state, reason, since, dateDiff('second', since, $__toTime) AS time_in_state_s,
       if(state = 'on_contact', queue_of_call, '') AS queue_id
FROM (
    SELECT site_id, agent_id, queue_of_call,
           multiIf(presence = 'logged_out' AND presence_at >= call_at, 'logged_out',
                   activity = 'on_contact' AND presence NOT IN ('logged_out', 'after_call_work'), 'on_contact',
                   activity = 'after_call_work' AND call_at >= presence_at, 'after_call_work',
                   presence = '', 'available', presence) AS state,
           if(state = 'not_ready', presence_reason, '') AS reason,
           if(state IN ('on_contact', 'after_call_work') AND activity = state, call_at,
              greatest(presence_at, call_at)) AS since
    FROM (
        SELECT site_id, agent AS agent_id,
               argMaxIf(multiIf(state = 'logged_in', 'available', state = 'on_call', 'on_contact', state),
                        (event_time, event_id), event_type = 'agent.state_changed') AS presence,
               argMaxIf(reason, (event_time, event_id), event_type = 'agent.state_changed') AS presence_reason,
               maxIf(event_time, event_type = 'agent.state_changed') AS presence_at,
               argMaxIf(event_type, (event_time, event_id), event_type != 'agent.state_changed') AS last_call_event,
               maxIf(event_time, event_type != 'agent.state_changed') AS call_at,
               argMaxIf(queue_id, event_time, event_type = 'call.answered') AS queue_of_call,
               max(countIf(event_type = 'call.wrapup_ended')) OVER (PARTITION BY site_id) > 0 AS site_wraps_up,
               multiIf(last_call_event = 'call.answered', 'on_contact',
                       last_call_event IN ('call.ended', 'call.transferred') AND site_wraps_up, 'after_call_work',
                       '') AS activity
        FROM (
            SELECT site_id, event_id, event_type, event_time, JSONExtractString(payload, 'state') AS state,
                   JSONExtractString(payload, 'reason') AS reason, JSONExtractString(payload, 'queue_id') AS queue_id,
                   if(event_type = 'call.transferred', JSONExtractString(payload, 'from_agent_id'), agent_id) AS agent
            FROM raw_events
            WHERE event_type IN ('agent.state_changed', 'call.answered', 'call.ended', 'call.transferred',
                                 'call.wrapup_ended')
              AND {SITES} AND event_time > $__toTime - INTERVAL {AGENT_LOOKBACK_H} HOUR AND event_time <= $__toTime
        )
        WHERE agent != '' AND agent IN (${{agent:singlequote}})
        GROUP BY site_id, agent
    )
)
WHERE state != 'logged_out'
ORDER BY site_id, agent_id
"""

STAFFED_STATES = ("available", "on_contact", "after_call_work", "not_ready")

# Agents staffed now per site, and how many in each state.
AGENTS_BY_SITE = f"""
SELECT site_id, count() AS staffed, {', '.join(f"countIf(state = '{s}') AS {s}" for s in STAFFED_STATES)},
       maxIf(time_in_state_s, state = 'not_ready') AS longest_not_ready_s
FROM ({AGENTS_NOW})
GROUP BY site_id ORDER BY site_id
"""

SERVICE_LEVEL_TARGET = next(r.warning for r in RULES if r.metric == "service_level")

# Per queue now: contacts waiting and the oldest wait, agents on its calls, and its service today and in the
# last 30 minutes against the target (the service-level rule's warning limit), with the calls offered (no
# ratio from fewer than min_calls).
QUEUES_NOW = f"""
SELECT site_id, queue_id, waiting, oldest_wait_s, agents_on_contact, offered_today, service_level_today,
       offered_30m, service_level_30m, {SERVICE_LEVEL_TARGET} AS service_level_target, abandon_rate_30m, asa_s_30m
FROM ({_service_now('site_id, entity_id AS queue_id')}) AS service
FULL JOIN ({CONTACTS_WAITING}) AS waiting USING (site_id, queue_id)
FULL JOIN (SELECT site_id, queue_id, count() AS agents_on_contact FROM ({AGENTS_NOW})
           WHERE state = 'on_contact' GROUP BY site_id, queue_id) AS agents USING (site_id, queue_id)
ORDER BY site_id, queue_id
"""

# Each site over the range, from the 5-minute buckets.
LIVE_SITES = f"""
SELECT site_id, sum(offered) AS calls_offered, {ratios('service_level', 'asa_s', 'abandon_rate')},
       max(max_wait_ms) / 1000 AS longest_wait_s
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 300 AND {SITES} AND $__timeFilter(window_start)
GROUP BY site_id ORDER BY site_id
"""


def guarded(*names: str) -> str:
    """``ratios`` left out (NULL) where fewer calls were offered than the ``min_calls`` dashboard constant
    (CALLQA_MIN_CALLS_FOR_RATIO's default: dashboards/build.py), with the calls offered."""
    return ", ".join(["sum(offered) AS calls_offered"] + [
        f"if(sum(offered) < ${{min_calls}}, NULL, {RATIOS[n]}) AS {n}" for n in names])


# Service level and abandonment per site, every 15 minutes, over the chosen queues (none from too few calls).
LIVE_SERVICE_TREND = f"""
SELECT window_start AS time, site_id, {guarded('service_level', 'abandon_rate')}
FROM kpi_windows FINAL
WHERE level = 'queue' AND window_s = 900 AND {SITES} AND {QUEUES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# Speed of answer (none from too few calls) and the longest wait per site, every 15 minutes.
LIVE_WAIT_TREND = f"""
SELECT window_start AS time, site_id, {guarded('asa_s')}, max(max_wait_ms) / 1000 AS longest_wait_s
FROM kpi_windows FINAL
WHERE level = 'queue' AND window_s = 900 AND {SITES} AND {QUEUES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# (2) Agent quality --------------------------------------------------------------------------------
# Human and automatic QA score (%) and CSAT per day over the chosen agents; CSAT none from fewer survey
# answers than the min_calls dashboard constant (as the report's guard of its surveys), with the answers.
QA_TREND = f"""
SELECT toDateTime(day) AS time, {ratios('qa_human_pct', 'qa_auto_pct')},
       {_at_least('sum(csat_responses)', RATIOS['csat_pct'])} AS csat_pct, sum(csat_responses) AS surveys
FROM kpi_daily FINAL
WHERE level = 'agent' AND {SITES} AND entity_id IN (${{agent:singlequote}}) AND $__dateFilter(day)
GROUP BY time ORDER BY time
"""

# Section scores (%) of human evaluations.
QA_SECTIONS = f"""
SELECT section, round(100 * sum(score / inclusion_probability) / sum(max / inclusion_probability), 1) AS pct,
       count() AS evaluations
FROM evaluations FINAL ARRAY JOIN section_ids AS section, section_scores AS score, section_max AS max
WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY section ORDER BY section
"""

# Per agent: human evaluations, score and the three categories (%).
QA_AGENTS = f"""
SELECT agent_id, count() AS evaluations,
       round(100 * sum(total / inclusion_probability) / sum(max / inclusion_probability), 1) AS qa_pct,
       round(avgWeighted(etiquette_pct, 1 / inclusion_probability), 1) AS etiquette_pct,
       round(avgWeighted(knowledge_pct, 1 / inclusion_probability), 1) AS knowledge_pct,
       round(avgWeighted(procedure_pct, 1 / inclusion_probability), 1) AS procedure_pct,
       countIf(has(coaching_tags, 'poor')) AS poor
FROM evaluations FINAL
WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY agent_id ORDER BY qa_pct
"""

# Automatic QA: how often each checked item passed.
AUTO_QA_ITEMS = f"""
SELECT item, count() AS checked, round(countIf(score >= max) / count(), 3) AS pass_rate
FROM evaluations FINAL ARRAY JOIN item_ids AS item, item_scores AS score, item_max AS max
WHERE kind = 'auto' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
GROUP BY item ORDER BY pass_rate
"""

# Which QA items matter to customers. Surveys answered in the range joined with the QA evaluations of their
# calls: per kind (human, auto) and call, the latest evaluation's items and the latest survey's CSAT.
CSAT_PAIRS = f"""
WITH answered AS (
    SELECT call_id, argMax(csat, answered_at) AS csat
    FROM surveys FINAL
    WHERE {SITES} AND $__timeFilter(answered_at)
    GROUP BY call_id
)
SELECT e.kind AS kind, e.call_id AS call_id, e.item_ids AS item_ids, e.item_scores AS item_scores,
       e.item_max AS item_max, s.csat AS csat
FROM (
    SELECT kind, call_id, argMax(item_ids, evaluated_at) AS item_ids, argMax(item_scores, evaluated_at) AS item_scores,
           argMax(item_max, evaluated_at) AS item_max
    FROM evaluations FINAL
    WHERE kind IN ('human', 'auto') AND call_id IN (SELECT call_id FROM answered) AND {SITES} AND {AGENTS}
    GROUP BY kind, call_id
) AS e
INNER JOIN answered AS s ON e.call_id = s.call_id
ORDER BY kind, call_id
"""

# Per kind and form item, among those calls: mean CSAT of the calls that passed the item (at least
# ITEM_PASS_SHARE of its points) and of those that failed it, the difference with a 95% confidence interval
# (Welch's standard error, normal quantile 1.96) and the point-biserial correlation (Pearson's r of the pass
# flag and CSAT); items with at least MIN_GROUP calls passed and MIN_GROUP failed. A marginal reading: items
# fail together, so an item's difference carries its companions' too (callqa.csat adjusts for them).
CSAT_ITEMS = f"""
SELECT kind, item, calls, passed, failed, round(mean_passed, 2) AS csat_passed, round(mean_failed, 2) AS csat_failed,
       round(mean_passed - mean_failed, 2) AS difference, round(mean_passed - mean_failed - 1.96 * se, 2) AS ci_low,
       round(mean_passed - mean_failed + 1.96 * se, 2) AS ci_high, round(r, 3) AS correlation
FROM (
    SELECT kind, item, count() AS calls, countIf(ok) AS passed, countIf(NOT ok) AS failed,
           avgIf(csat, ok) AS mean_passed, avgIf(csat, NOT ok) AS mean_failed,
           sqrt(varSampIf(csat, ok) / passed + varSampIf(csat, NOT ok) / failed) AS se,
           corr(toFloat64(ok), toFloat64(csat)) AS r
    FROM (
        SELECT kind, csat, item, score >= {ITEM_PASS_SHARE} * max AS ok
        FROM ({CSAT_PAIRS}) ARRAY JOIN item_ids AS item, item_scores AS score, item_max AS max
    )
    GROUP BY kind, item
)
WHERE passed >= {MIN_GROUP} AND failed >= {MIN_GROUP}
ORDER BY kind = 'human' DESC, kind, difference DESC, item
"""

# Calls tagged for coaching (outstanding, poor, failed items), newest first.
COACHING = f"""
SELECT evaluated_at AS time, agent_id, call_id, kind, pct, grade, arrayStringConcat(coaching_tags, ' ') AS tags
FROM evaluations FINAL
WHERE notEmpty(coaching_tags) AND kind != 'calibration' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
ORDER BY time DESC LIMIT 200
"""

# (3) Drift and monitoring plan ---------------------------------------------------------------------
# The drift detector's own state (``detector_state``, callqa.core.monitor.state_row): every chart of a drift
# series draws these stored rows, nothing recomputed (one home for the rule). Per series and hour: the hour's
# value and the detector's expected value on the metric's scale, the alarm line (the hour's value that would
# have reached the limit), and the CUSUM statistic against its decision limit. A metric's scale is its
# family's (callqa.core.monitor.METRICS): QA in %, durations in seconds, yes/no metrics as a share of calls.
SCALES = {"normal": [m for m, f in METRICS.items() if f.scale == "normal"],
          "log": [m for m, f in METRICS.items() if f.scale == "log"],
          "binary": [m for m, f in METRICS.items() if f.scale == "binary"]}
assert sorted(m for ms in SCALES.values() for m in ms) == sorted(METRICS), "a drift metric of no known scale"


def detector_values(where: str, scale: str) -> str:
    """The chosen series' (``where``) of one scale, per hour: value (left out, for a share of fewer calls
    than the ``min_calls`` dashboard constant), expected (once the chart is warm), alarm line, the value
    again where the series is in alarm after the hour, and the observations behind the hour."""
    value = "if(d.observations < ${min_calls}, NULL, d.value)" if scale == "binary" else "d.value"
    return f"""
SELECT d.time AS time, d.series AS series, {value} AS value, if(d.ready, d.expected, NULL) AS expected,
       d.alarm_value AS alarm_value, if(d.in_alarm, {value}, NULL) AS in_alarm_value, d.observations AS observations
FROM detector_state AS d FINAL
WHERE {where} AND metric IN ({', '.join(_quoted(m) for m in SCALES[scale])}) AND $__timeFilter(time)
ORDER BY time, series
"""


def detector_cusum(where: str) -> str:
    """The chosen series' CUSUM statistic (the hour's highest) and its decision limit, per hour."""
    return f"""
SELECT time, series, statistic, decision_limit
FROM detector_state FINAL
WHERE {where} AND $__timeFilter(time)
ORDER BY time, series
"""


# The drift board's control chart: each chosen site's human-QA drift chart, as the detector holds it.
QA_CONTROL_WHERE = f"level = 'site' AND metric = 'qa_human' AND {SITES}"
QA_CONTROL_CHART = detector_values(QA_CONTROL_WHERE, "normal")
QA_CONTROL_CUSUM = detector_cusum(QA_CONTROL_WHERE)

# Each drift alert in the range: its latest status and the latest evidence it carried.
DRIFT_ALERTS = f"""
SELECT min(opened_at) AS opened_at, argMax(status, at) AS status, any(level) AS level, any(entity_id) AS entity_id,
       any(metric) AS metric, argMaxIf(evidence, at, evidence != '') AS latest_evidence,
       JSONExtractString(latest_evidence, 'chart') AS chart,
       round(JSONExtractFloat(latest_evidence, 'value'), 2) AS value,
       round(JSONExtractFloat(latest_evidence, 'baseline_mean'), 2) AS baseline,
       round(JSONExtractFloat(latest_evidence, 'statistic'), 2) AS statistic,
       round(JSONExtractFloat(latest_evidence, 'limit'), 2) AS limit, alert_id
FROM alerts FINAL
WHERE kind = 'drift' AND {SITES} AND $__timeFilter(at)
GROUP BY alert_id ORDER BY opened_at DESC
"""

# Moments drift was detected (dashboard annotations).
DRIFT_ANNOTATIONS = f"""
SELECT opened_at AS time, concat(level, ' ', entity_id, ': ', metric, ' drifted') AS text
FROM alerts FINAL
WHERE kind = 'drift' AND status = 'open' AND {SITES} AND $__timeFilter(opened_at)
ORDER BY time
"""

# Each agent's review rate at the end of the range, and why (the latest change).
SAMPLING_RATES_NOW = f"""
SELECT agent_id, any(team_id) AS team_id, argMax(new_rate, at) AS rate, argMax(cause, at) AS cause,
       argMax(factors, at) AS factors_changed, argMax(signal_kind, at) AS signal, argMax(reason, at) AS because,
       max(at) AS since
FROM (
    SELECT agent_id, team_id, new_rate, cause, at, signal_kind, arrayStringConcat(factors_changed, ', ') AS factors,
           splitByChar('|', JSONExtractString(evidence, 'series')) AS series,  -- level|site|entity|metric
           multiIf(length(series) = 4,
                   series[1] || ' ' || series[3] || ': ' || series[4] || ' drift (' || JSONExtractString(evidence, 'chart') || ')',
                   JSONHas(evidence, 'description'), JSONExtractString(evidence, 'description'), '') AS reason
    FROM sampling_rates FINAL
    WHERE {SITES} AND {AGENTS} AND at <= $__toTime
)
GROUP BY agent_id ORDER BY rate DESC, agent_id
"""

# Review-rate changes over the range, per agent.
SAMPLING_RATE_TREND = f"""
SELECT at AS time, agent_id, new_rate AS rate
FROM sampling_rates FINAL
WHERE {SITES} AND {AGENTS} AND $__timeFilter(at)
ORDER BY time
"""


def top_rate_trend(n: int) -> str:
    """SAMPLING_RATE_TREND of the ``n`` agents with the highest review rate in the range (the report's
    ``top_rates``): a chart of a few lines, not of every agent."""
    return f"""
SELECT at AS time, agent_id, new_rate AS rate
FROM sampling_rates FINAL
WHERE {SITES} AND {AGENTS} AND $__timeFilter(at) AND agent_id IN (
    SELECT agent_id FROM sampling_rates FINAL
    WHERE {SITES} AND {AGENTS} AND $__timeFilter(at)
    GROUP BY agent_id ORDER BY max(new_rate) DESC, agent_id LIMIT {int(n)}
)
ORDER BY time
"""

# Calls queued for review per day, by recommended method.
REVIEW_QUEUE_DAILY = f"""
SELECT toDateTime(day) AS time, method, count() AS queued
FROM review_queue FINAL
WHERE status = 'queued' AND {SITES} AND {AGENTS} AND $__dateFilter(day)
GROUP BY time, method ORDER BY time, method
"""

# Coverage against the targets: the share of recorded calls selected (base rate) and human
# evaluations (the monthly minimum, pro rata for the range).
COVERAGE = f"""
SELECT d.agent_id AS agent_id, recorded, selected, round(selected / recorded, 4) AS selected_share,
       {PolicyConfig.base_rate} AS target_share, coalesce(e.evaluated, 0) AS evaluated,
       round({PolicyConfig.min_per_month} * dateDiff('second', $__fromTime, $__toTime) / (30 * 86400), 1) AS target_evaluations
FROM (
    SELECT agent_id, count() AS recorded, countIf(selected) AS selected
    FROM sampling_decisions FINAL
    WHERE {SITES} AND {AGENTS} AND $__timeFilter(at)
    GROUP BY agent_id
) AS d
LEFT JOIN (
    SELECT agent_id, count() AS evaluated
    FROM evaluations FINAL
    WHERE kind = 'human' AND {SITES} AND {AGENTS} AND $__timeFilter(evaluated_at)
    GROUP BY agent_id
) AS e ON d.agent_id = e.agent_id
ORDER BY selected_share, agent_id
"""

# (4) Calibration ----------------------------------------------------------------------------------
# Calibration scores against each call's mean (the reference when no expert is named).
_CALIBRATED = f"""
    SELECT evaluator_id, call_id, evaluated_at, pct, pct - avg(pct) OVER (PARTITION BY call_id) AS deviation
    FROM evaluations FINAL
    WHERE kind = 'calibration' AND {SITES} AND $__timeFilter(evaluated_at)
"""

CALIBRATION_EVALUATORS = f"""
SELECT evaluator_id, count() AS calls, round(avg(deviation), 1) AS mean_deviation,
       round(avg(abs(deviation)), 1) AS mean_abs_deviation, countIf(abs(deviation) > {DEFAULT_THRESHOLD_PCT}) AS flagged
FROM ({_CALIBRATED})
GROUP BY evaluator_id ORDER BY mean_abs_deviation DESC, evaluator_id
"""

CALIBRATION_TREND = f"""
SELECT toDateTime(toStartOfWeek(evaluated_at, 1)) AS time, evaluator_id, round(avg(deviation), 1) AS mean_deviation
FROM ({_CALIBRATED})
GROUP BY time, evaluator_id ORDER BY time, evaluator_id
"""

# Per form item: how often all evaluators of a calibration call gave the same score.
CALIBRATION_ITEMS = f"""
SELECT item, count() AS calls, round(countIf(spread = 0) / count(), 2) AS full_agreement,
       round(avg(spread), 2) AS mean_spread
FROM (
    SELECT call_id, item, max(score) - min(score) AS spread
    FROM evaluations FINAL ARRAY JOIN item_ids AS item, item_scores AS score
    WHERE kind = 'calibration' AND {SITES} AND $__timeFilter(evaluated_at)
    GROUP BY call_id, item
)
GROUP BY item ORDER BY full_agreement, item
"""

# (5) Site comparison -------------------------------------------------------------------------------
SITE_COMPARISON = f"""
SELECT site_id, sum(offered) AS calls_offered, sum(handled) AS calls_handled,
       {ratios('service_level', 'asa_s', 'abandon_rate', 'aht_s', 'transfer_rate', 'fcr_rate', 'occupancy',
               'qa_human_pct', 'qa_auto_pct', 'csat_pct', 'nps')}, sum(csat_responses) AS surveys
FROM kpi_daily FINAL
WHERE level = 'site' AND {SITES} AND $__dateFilter(day)
GROUP BY site_id ORDER BY site_id
"""


def site_daily(metric: str) -> str:
    """One KPI per site and day (a time series per site)."""
    return f"""
SELECT toDateTime(day) AS time, site_id, {RATIOS[metric]} AS {metric}
FROM kpi_daily FINAL
WHERE level = 'site' AND {SITES} AND $__dateFilter(day)
GROUP BY time, site_id ORDER BY time, site_id
"""


# Months the range touches, from the month rollup.
SITE_MONTHLY = f"""
SELECT toString(day) AS month, site_id, sum(offered) AS calls_offered,
       {ratios('service_level', 'aht_s', 'qa_human_pct', 'qa_auto_pct', 'csat_pct')}
FROM kpi_monthly FINAL
WHERE level = 'site' AND {SITES} AND day >= toStartOfMonth(toDate($__fromTime)) AND day <= toDate($__toTime)
GROUP BY month, site_id ORDER BY month, site_id
"""

# Alert rules (Grafana alerting; labels from the string columns, the value from the number).
# KPI thresholds: the alerts the core's threshold monitor (callqa.core.thresholds) raised and has not
# cleared at the range's end, one per site or queue window series, with the core's latest severity as a
# label (an escalation from warning to critical is a new alert instance). Grafana judges nothing itself:
# the value is the number of windows that breached so far (always 1 or more).


def threshold_alerts_open(metric: str) -> str:
    assert metric in {r.metric for r in RULES}, metric
    return f"""
SELECT level, site_id, entity_id, assumeNotNull(severity) AS severity, alert_id, toFloat64(signals) AS windows_breached
FROM (
    SELECT alert_id, argMax(status, at) AS latest_status, argMaxIf(severity, at, status != 'cleared') AS severity,
           any(level) AS level, any(site_id) AS site_id, any(entity_id) AS entity_id, max(signals) AS signals
    FROM alerts FINAL
    WHERE kind = 'threshold' AND metric = '{metric}' AND at <= $__toTime
    GROUP BY alert_id
)
WHERE latest_status != 'cleared'
ORDER BY alert_id
"""


# Quality incidents still open (not closed or merged): what the alert rule notifies on. Labelled by the
# incident and the scope it opened on, so a change of scope does not notify again (Grafana keys an alert
# instance by its labels).
OPEN_INCIDENTS = """
SELECT level, site_id, entity_id, metric, alert_id, toFloat64(1) AS open_incidents
FROM (
    SELECT alert_id, argMax(status, at) AS status, argMin(level, at) AS level, any(site_id) AS site_id,
           argMin(entity_id, at) AS entity_id, argMin(metric, at) AS metric
    FROM alerts FINAL
    WHERE kind = 'incident' AND at <= $__toTime
    GROUP BY alert_id
)
WHERE status NOT IN ('closed', 'merged')
ORDER BY alert_id
"""

# Report (callqa report / demo) ----------------------------------------------------------------------
# Service level and speed of answer per site and hour.
SITE_HOURLY_TREND = f"""
SELECT window_start AS time, site_id, {ratios('service_level', 'asa_s')}
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 3600 AND {SITES} AND $__timeFilter(window_start)
GROUP BY time, site_id ORDER BY time, site_id
"""

# Shift-hour shares per site: recorded calls and calls selected for review by where in the agent's shift
# they fell (first hour, middle, last two hours: the sampler's bands, in the site's local time), against
# the monitoring policy's target shares of reviews.
_BANDS = PolicyConfig().shift_share
SHIFT_BAND_SHARES = f"""
SELECT site_id, band, recorded, round(recorded / sum(recorded) OVER (PARTITION BY site_id), 3) AS recorded_share,
       selected, round(selected / nullIf(sum(selected) OVER (PARTITION BY site_id), 0), 3) AS selected_share,
       transform(band, {list(_BANDS)}, {list(_BANDS.values())}, 0.0) AS target_share
FROM (
    SELECT site_id, splitByChar('-', cell)[2] AS band, count() AS recorded, countIf(selected) AS selected
    FROM sampling_decisions FINAL
    WHERE {SITES} AND $__timeFilter(at)
    GROUP BY site_id, band
)
ORDER BY site_id, indexOf({list(_BANDS)}, band)
"""

# Alerts opened in the range, by kind and metric.
ALERTS_OPENED = f"""
SELECT kind, metric, count() AS opened
FROM alerts FINAL
WHERE status = 'open' AND {SITES} AND $__timeFilter(at)
GROUP BY kind, metric ORDER BY kind, opened DESC, metric
"""

# Drift alarms and incidents as they opened or changed scope, with their evidence (matched against
# injected drifts by the demo).
DRIFTS_OPENED = f"""
SELECT alert_id, kind, status, level, entity_id, metric, concat(replaceOne(toString(at), ' ', 'T'), 'Z') AS opened,
       evidence
FROM alerts FINAL
WHERE kind IN ('drift', 'incident') AND status IN ('open', 'widened', 'narrowed') AND {SITES} AND $__timeFilter(at)
ORDER BY at
"""

# The report's "Today": the decisions of one day ($__fromTime to $__toTime, a whole day) ------------------
# Quality incidents open at the day's end and those cleared (closed) during it, with their latest scope and
# evidence: open first, the widest scope first, then the most series behind it, then the oldest.
TODAY_INCIDENTS = f"""
SELECT alert_id, status, level, site_id, entity_id, metric, opened_at, last_at, signals, evidence
FROM (
    SELECT alert_id, site_id, argMax(status, at) AS status, argMax(level, at) AS level,
           argMax(entity_id, at) AS entity_id, argMax(metric, at) AS metric, min(opened_at) AS opened_at,
           max(at) AS last_at, argMax(signals, at) AS signals, argMax(evidence, at) AS evidence
    FROM alerts FINAL
    WHERE kind = 'incident' AND {SITES} AND at < $__toTime
    GROUP BY alert_id, site_id
)
WHERE status NOT IN ('closed', 'merged') OR (status = 'closed' AND last_at >= $__fromTime)
ORDER BY status = 'closed', indexOf(['site', 'team', 'agent'], level), signals DESC, opened_at, alert_id
"""

# The drift charts' own state (callqa.core.monitor.state_row) of the chosen series, per hour: what an
# incident's chart and a site's QA chart draw (no limits recomputed here).
DETECTOR_SERIES = """
SELECT series, time, last_at, steps, observations, value, expected, alarm_value, start_statistic, statistic,
       decision_limit, ready, in_alarm
FROM detector_state FINAL
WHERE series IN (${series:singlequote}) AND time >= $__fromTime AND time < $__toTime
ORDER BY series, time
"""

# The day's review queue with why each call is there: the draw's reason (rate, coverage, pace), the cell
# of the coverage rule, and the agent's review rate in force at the call with the signal behind it (the
# latest rate change at or before the call).
TODAY_REVIEWS = f"""
SELECT q.call_id AS call_id, q.recording_id AS recording_id, q.storage_uri AS storage_uri, q.agent_id AS agent_id,
       q.team_id AS team_id, q.site_id AS site_id, q.at AS at, q.method AS method, q.reason AS reason, q.risk AS risk,
       d.cell AS cell, r.new_rate AS agent_rate, r.signal_kind AS signal_kind, r.evidence AS signal_evidence,
       r.factors AS rate_factors
FROM (
    SELECT call_id, recording_id, storage_uri, agent_id, team_id, site_id, at, method, reason, risk
    FROM review_queue FINAL
    WHERE status = 'queued' AND {SITES} AND day = toDate($__fromTime)
) AS q
LEFT JOIN (
    SELECT call_id, cell FROM sampling_decisions FINAL
    WHERE {SITES} AND at >= $__fromTime - INTERVAL 1 DAY AND at < $__toTime + INTERVAL 1 DAY
) AS d ON d.call_id = q.call_id
ASOF LEFT JOIN (
    SELECT agent_id, at, new_rate, signal_kind, evidence, factors FROM sampling_rates FINAL
    WHERE {SITES} AND at < $__toTime + INTERVAL 1 DAY
) AS r ON r.agent_id = q.agent_id AND q.at >= r.at
ORDER BY q.risk DESC, q.at, q.call_id
"""


def agents_behind_target(target: int) -> str:
    """Agents with fewer human evaluations this month, to the end of the day, than their monthly target
    pro rata: ``target`` × the share of the month since their first recorded call in it (the sampler's
    pace); with the calls queued for them that day."""
    return f"""
SELECT agent_id, team_id, site_id, first_call, evaluated, due, {int(target)} AS target, queued_today
FROM (
    SELECT d.agent_id AS agent_id, d.team_id AS team_id, d.site_id AS site_id, d.first_call AS first_call,
           e.evaluated AS evaluated, q.queued AS queued_today,
           round({int(target)} * dateDiff('second', d.first_call, $__toTime)
                 / (toDayOfMonth(toLastDayOfMonth(toDate($__fromTime))) * 86400), 1) AS due
    FROM (
        SELECT agent_id, site_id, any(team_id) AS team_id, min(at) AS first_call
        FROM sampling_decisions FINAL
        WHERE {SITES} AND at >= toStartOfMonth(toDate($__fromTime)) AND at < $__toTime
        GROUP BY agent_id, site_id
    ) AS d
    LEFT JOIN (
        SELECT agent_id, count() AS evaluated FROM evaluations FINAL
        WHERE kind = 'human' AND {SITES} AND evaluated_at >= toStartOfMonth(toDate($__fromTime)) AND evaluated_at < $__toTime
        GROUP BY agent_id
    ) AS e ON e.agent_id = d.agent_id
    LEFT JOIN (
        SELECT agent_id, count() AS queued FROM review_queue FINAL
        WHERE status = 'queued' AND {SITES} AND day = toDate($__fromTime)
        GROUP BY agent_id
    ) AS q ON q.agent_id = d.agent_id
)
WHERE evaluated < due
ORDER BY evaluated - due, agent_id
"""

# The first and last day the store holds calls for (the report's default period and its --day's range).
DATA_DAYS = "SELECT toString(min(day)), toString(max(day)) FROM kpi_daily WHERE level = 'site' AND offered > 0"

# Reviewers against their monthly target (the report's Today, callqa.review_plan.reviewer_targets): the days
# of the month before {day} with calls queued for review (each a day whose plan assigned reviews), and each
# evaluator's human evaluations this month to the end of {day} (UTC).
REVIEW_DAYS_OF_MONTH = """
SELECT DISTINCT toString(day) AS queue_day FROM review_queue FINAL
WHERE status = 'queued' AND day >= toStartOfMonth(toDate('{day}')) AND day < toDate('{day}')
ORDER BY queue_day
"""

HUMAN_EVALUATIONS_BY_EVALUATOR = """
SELECT evaluator_id, count() AS evaluated FROM evaluations FINAL
WHERE kind = 'human' AND evaluated_at >= toStartOfMonth(toDate('{day}'))
  AND evaluated_at < toDateTime64('{day}', 3, 'UTC') + INTERVAL 1 DAY
GROUP BY evaluator_id
"""

# The recordings of some calls ({calls}: a quoted, comma-separated list): the latest recording.completed of each.
CALL_RECORDINGS = """
SELECT call_id, argMax(JSONExtractString(payload, 'recording_id'), event_time) AS recording_id,
       argMax(JSONExtractString(payload, 'storage_uri'), event_time) AS storage_uri
FROM raw_events
WHERE event_type = 'recording.completed' AND call_id IN ({calls})
GROUP BY call_id
"""


# Per agent over the range: calls handled, handle time, transfers and human QA (the report's agent rows).
AGENT_SUMMARY = f"""
SELECT k.agent_id AS agent_id, a.team_id AS team_id, k.site_id AS site_id, calls_handled, aht_s, transfer_rate,
       qa_human_pct
FROM (
    SELECT entity_id AS agent_id, site_id, sum(handled) AS calls_handled,
           {ratios('aht_s', 'transfer_rate', 'qa_human_pct')}
    FROM kpi_daily FINAL
    WHERE level = 'agent' AND {SITES} AND $__dateFilter(day)
    GROUP BY agent_id, site_id
) AS k
LEFT JOIN (SELECT agent_id, team_id FROM agents FINAL) AS a ON a.agent_id = k.agent_id
ORDER BY agent_id
"""

# Service level and speed of answer per site and hour, with the calls behind them (the report leaves out
# ratios of fewer than CALLQA_MIN_CALLS_FOR_RATIO calls).
SITE_HOURLY_CALLS = f"""
SELECT window_start AS time, site_id, sum(offered) AS calls_offered, {ratios('service_level', 'asa_s', 'abandon_rate')}
FROM kpi_windows FINAL
WHERE level = 'site' AND window_s = 3600 AND {SITES} AND window_start >= $__fromTime AND window_start < $__toTime
GROUP BY time, site_id ORDER BY time, site_id
"""

# The Grafana "Today" board (dashboards/build.py) ---------------------------------------------------------
# Its range is the charts' context (by default the seven days to the end of today); its decisions are those
# of the range's last UTC day: the report's day queries above with the day starting at that day's start.
LAST_DAY = "toStartOfDay($__toTime - INTERVAL 1 SECOND, 'UTC')"
_DAY_END = f"({LAST_DAY} + INTERVAL 1 DAY)"


def on_last_day(sql: str) -> str:
    """A query of one day ($__fromTime to $__toTime, as the report runs it) as a query of the range's last day."""
    return sql.replace("$__fromTime", LAST_DAY)


def _array(values) -> str:
    return "[" + ", ".join(_quoted(v) for v in values) + "]"


def _words(column: str, words: dict[str, str], otherwise: str | None = None) -> str:
    """SQL of ``words.get(column, otherwise)`` (default: the value itself)."""
    return f"transform({column}, {_array(words)}, {_array(words.values())}, {otherwise or column})"


def metric_words(column: str) -> str:
    """SQL of ``callqa.reasons.metric_words``."""
    return _words(column, METRIC_WORDS, f"replaceAll(replaceRegexpOne({column}, '^item:', ''), '_', ' ')")


def _thousands(number: str) -> str:
    """A whole number's text with thousands separators (Python's ``{:,.0f}``)."""
    return f"reverse(arrayStringConcat(extractAll(reverse(printf('%.0f', {number})), '\\\\d{{1,3}}'), ','))"


# An incident's status as a person says it (the report's STATUS_WORDS).
INCIDENT_STATUS_WORDS = {"open": "open", "widened": "open", "narrowed": "open", "updated": "open", "closed": "cleared",
                         "merged": "merged"}
CHARTED_METRICS = 3  # an incident's charts show at most this many of its metrics (the report's MAX_CHARTED_METRICS)

# The day's incidents (TODAY_INCIDENTS) with the series their charts show: per metric the series at the
# incident's own scope when its evidence lists it, else the first listed series of that metric.
_TODAY_CHARTED = f"""
    SELECT *, if(JSONType(evidence, 'series') = 'String', [JSONExtractString(evidence, 'series')],
                 JSONExtract(evidence, 'series', 'Array(String)')) AS listed,
           arrayFilter(s -> s != '', arrayMap(m -> if(has(listed, concat(level, '|', site_id, '|', entity_id, '|', m)),
                                                      concat(level, '|', site_id, '|', entity_id, '|', m),
                                                      arrayFirst(s -> endsWith(s, concat('|', m)), listed)),
                                             arraySlice(splitByChar(',', metric), 1, {CHARTED_METRICS}))) AS charted
    FROM ({on_last_day(TODAY_INCIDENTS)})
"""

# The Today board's ``series`` variable: the series of the day's incidents (all of them by default), and the
# incident charts: each chosen series' detector state (one query per scale) and its CUSUM.
VAR_INCIDENT_SERIES = f"SELECT DISTINCT arrayJoin(charted) AS series FROM ({_TODAY_CHARTED}) ORDER BY series"
INCIDENT_CHART_WHERE = "series IN (${series:singlequote})"
INCIDENT_CHART = {scale: detector_values(INCIDENT_CHART_WHERE, scale) for scale in SCALES}
INCIDENT_CUSUM = detector_cusum(INCIDENT_CHART_WHERE)


def _shown(value: str, scale: str) -> str:
    """A value on its metric's scale as the report writes it: a share in %, seconds, a QA score in %."""
    return (f"multiIf({scale} = 'binary', printf('%.0f%%', 100 * {value}), "
            f"{scale} = 'log', concat({_thousands(value)}, ' s'), printf('%.1f %%', {value}))")


_SCALE_OF = f"transform(first_metric, {_array(METRICS)}, {_array(f.scale for f in METRICS.values())}, 'normal')"

# The day's incidents as the Today board lists them: status in words, scope, metrics in words, opened to the
# minute, how long open (to its clearing, or to the day's end or now), and the evidence — what its first
# charted series showed in the hour it opened (its detector_state row), else the alarm's own numbers;
# ``series_params`` is the board's link to the incident's charts (var-series=... for each).
TODAY_INCIDENT_LIST = f"""
WITH incidents AS (
    SELECT *, charted[1] AS first_series, arrayElement(splitByChar('|', first_series), -1) AS first_metric,
           toStartOfHour(toDateTime(opened_at, 'UTC')) AS opened_hour
    FROM ({_TODAY_CHARTED})
)
SELECT i.alert_id AS alert_id, {_words('i.status', INCIDENT_STATUS_WORDS)} AS status,
       concat(i.level, ' ', i.entity_id) AS scope, i.site_id AS site_id,
       arrayStringConcat(arrayMap(m -> {metric_words('m')}, splitByChar(',', i.metric)), ', ') AS metrics,
       formatDateTime(i.opened_at, '%Y-%m-%d %H:%i', 'UTC') AS opened,
       intDiv(greatest(0, dateDiff('second', toDateTime(i.opened_at, 'UTC'),
                                   if(status = 'cleared', toDateTime(i.last_at, 'UTC'), least({_DAY_END}, now())))), 60) AS minutes_open,
       concat(if(minutes_open >= 1440, concat(toString(intDiv(minutes_open, 1440)), ' d '), ''),
              toString(intDiv(minutes_open % 1440, 60)), ' h ', leftPad(toString(minutes_open % 60), 2, '0'), ' min') AS open_for,
       if(s.series != '',
          concat({metric_words('i.first_metric')}, ' ', {_shown('s.value', 'i.scale')}, ' over ', toString(s.observations),
                 if(i.scale = 'normal', ' evaluations', ' calls'), ' in the hour it opened, ', {_shown('s.expected', 'i.scale')},
                 ' expected; CUSUM ', printf('%.1f', s.statistic), ' past its limit ', printf('%.1f', s.decision_limit)),
          concat('value ', toString(JSONExtractFloat(i.evidence, 'value')), ', expected ',
                 toString(JSONExtractFloat(i.evidence, 'baseline_mean')), '; CUSUM ',
                 printf('%.1f', JSONExtractFloat(i.evidence, 'statistic')), ' past its limit ',
                 printf('%.1f', JSONExtractFloat(i.evidence, 'limit')))) AS evidence,
       arrayStringConcat(i.charted, ', ') AS series,
       arrayStringConcat(arrayMap(x -> concat('var-series=', x), i.charted), '&') AS series_params
FROM (SELECT *, {_SCALE_OF} AS scale FROM incidents) AS i
LEFT JOIN (
    SELECT series, toDateTime(time, 'UTC') AS hour, value, expected, observations, statistic, decision_limit
    FROM detector_state FINAL
    WHERE series IN (SELECT first_series FROM incidents) AND time < {_DAY_END}
) AS s ON s.series = i.first_series AND s.hour = i.opened_hour
ORDER BY status = 'cleared', indexOf(['site', 'team', 'agent'], i.level), i.signals DESC, i.opened_at, alert_id
"""

# Why a queued call is there, in the words of callqa.reasons.why (its SQL twin, from the same word lists):
# the coverage rule's weekday and shift band, the monthly minimum, or what holds the agent's rate up.
_RATE = "printf('%.1f%%', 100 * agent_rate)"
_INCIDENT = "JSONExtractString(signal_evidence, 'incident')"


def review_why(monthly_target: int) -> str:
    weekday = "if(position(cell, '-') > 0, substring(cell, 1, position(cell, '-') - 1), cell)"
    band = "if(position(cell, '-') > 0, substring(cell, position(cell, '-') + 1), '')"
    part = lambda i: f"splitByChar('|', {_INCIDENT})[{i}]"
    metrics = (f"arrayStringConcat(arrayMap(m -> {metric_words('m')}, "
               "JSONExtract(signal_evidence, 'metrics', 'Array(String)')), ', ')")
    description = "JSONExtractString(signal_evidence, 'description')"
    return f"""multiIf(
    reason = 'coverage', concat('coverage rule: the first review this month on a ', if({weekday} = '', '?', {weekday}),
                                ', ', {_words(band, BAND_WORDS)}),
    reason = 'pace', 'monthly minimum: behind pace for {int(monthly_target)} reviews this month',
    startsWith(signal_kind, 'drift:') AND {_INCIDENT} != '',
    concat('incident on ', {part(1)}, ' ', {part(3)}, ': ', {metrics}, ', since ',
           formatDateTime(fromUnixTimestamp64Milli(toInt64({part(4)})), '%Y-%m-%d %H:%i', 'UTC'), ' (review rate ', {_RATE}, ')'),
    startsWith(signal_kind, 'ops:'),
    concat('operational change: ', if({description} != '', {description}, replaceAll(substring(signal_kind, 5), '_', ' ')),
           ' (review rate ', {_RATE}, ')'),
    concat('random draw at the agent\\'s review rate ', {_RATE}))"""


def _encoded(column: str) -> str:
    """Percent-encoded but for / and : (the report's ``recording_link``)."""
    return f"replaceAll(replaceAll(encodeURLComponent({column}), '%2F', '/'), '%3A', ':')"


# A recording's link from the ``recording_url`` dashboard constant (CALLQA_RECORDING_URL's template): the call's
# storage_uri, call_id and recording_id put in (percent-encoded but for / and :); the plain `{storage_uri}`
# template is the storage URI as it is.
_TEMPLATE = "${recording_url:singlequote}"
RECORDING_LINK = (f"if({_TEMPLATE} = '{{storage_uri}}', storage_uri, replaceAll(replaceAll(replaceAll({_TEMPLATE}, "
                  f"'{{storage_uri}}', {_encoded('storage_uri')}), '{{call_id}}', {_encoded('call_id')}), "
                  f"'{{recording_id}}', {_encoded('recording_id')}))")


def today_review_list(monthly_target: int) -> str:
    """The day's review queue (TODAY_REVIEWS) as the Today board lists it: the time to the minute, the method
    and the reason in words, the recording's link."""
    return f"""
SELECT call_id, formatDateTime(at, '%H:%i', 'UTC') AS time, agent_id, team_id, site_id,
       {_words('method', METHOD_WORDS)} AS method_words, {review_why(monthly_target)} AS why, risk,
       {RECORDING_LINK} AS recording
FROM ({on_last_day(TODAY_REVIEWS)})
ORDER BY risk DESC, at, call_id
"""


def today_behind_target(target: int) -> str:
    """``agents_behind_target`` on the range's last day."""
    return on_last_day(agents_behind_target(target))


# Evaluators with a calibration score more than DEFAULT_THRESHOLD_PCT points from the reference (the call's
# mean over its evaluators, callqa.core.calibration.calibrate) this month to the end of the day: their scores,
# flagged scores, mean and largest deviation, and the call of the largest.
TODAY_CALIBRATION_OUTLIERS = f"""
SELECT evaluator_id, count() AS calls, countIf(abs(deviation) > {DEFAULT_THRESHOLD_PCT}) AS flagged,
       round(avg(deviation), 1) AS mean_deviation, round(argMax(deviation, abs(deviation)), 1) AS largest_deviation,
       argMax(call_id, abs(deviation)) AS call_id
FROM (
    SELECT evaluator_id, call_id, round(pct - avg(pct) OVER w, 3) AS deviation, count() OVER w AS evaluators
    FROM evaluations FINAL
    WHERE kind = 'calibration' AND call_id != '' AND {SITES} AND evaluated_at >= toStartOfMonth({LAST_DAY})
      AND evaluated_at < {_DAY_END}
    WINDOW w AS (PARTITION BY call_id, form_id, form_version)
)
WHERE evaluators >= 2
GROUP BY evaluator_id
HAVING flagged > 0
ORDER BY flagged DESC, abs(mean_deviation) DESC, evaluator_id
"""

# (6) Pipeline health: what the store itself says of the pipeline (the dashboard works without Prometheus).
# The tables the sink writes, each with ``ingested_at`` (when the row was stored).
PIPELINE_TABLES = ("raw_events", "call_records", "kpi_windows", "evaluations", "alerts", "detector_state",
                   "sampling_rates", "sampling_decisions", "review_queue", "surveys", "dead_letters")

# A dead letter's kind of reason, as ``callqa.metrics.reason_kind`` labels ``callqa_dead_letters_total``.
DEAD_LETTER_KIND = """multiIf(
    startsWith(reason, 'late event'), 'late event', startsWith(reason, 'not valid JSON'), 'not valid JSON',
    startsWith(reason, 'unknown event_type'), 'unknown event_type',
    startsWith(reason, 'event must be a JSON object'), 'event must be a JSON object',
    startsWith(reason, 'event of ') AND position(reason, 'CALLQA_MAX_EVENT_BYTES') > 0, 'too large',
    countSubstrings(splitByChar(':', reason)[1], '.') = 1 AND position(splitByChar(':', reason)[1], ' ') = 0, 'schema',
    startsWith(reason, 'embedded ClickHouse') OR startsWith(reason, 'ClickHouse server'), 'store',
    'source')"""

_UNION = "\n    UNION ALL "

# Dead letters per interval by kind of reason, when callqa received them.
DEAD_LETTERS_BY_REASON = f"""
SELECT $__timeInterval(received_at) AS time, {DEAD_LETTER_KIND} AS reason_kind, count() AS dead_letters
FROM dead_letters FINAL
WHERE $__timeFilter(received_at)
GROUP BY time, reason_kind ORDER BY time, reason_kind
"""

# Rows stored per table and interval (every stored version of a row: what the sink wrote).
ROWS_STORED = f"""
SELECT time, table, rows
FROM ({_UNION.join(f"SELECT $__timeInterval(ingested_at) AS time, '{t}' AS table, count() AS rows "
                          f"FROM {t} WHERE $__timeFilter(ingested_at) GROUP BY time" for t in PIPELINE_TABLES)})
ORDER BY time, table
"""

# Per table: rows stored in the range, the last time a row was stored by the range's end, and how long
# before the range's end that was (empty when the table has none).
TABLE_FRESHNESS = f"""
SELECT table, rows_in_range, last_stored, dateDiff('second', last_stored, $__toTime) AS seconds_since_last
FROM ({_UNION.join(f"SELECT '{t}' AS table, countIf($__timeFilter(ingested_at)) AS rows_in_range, "
                          f"nullIf(maxIf(ingested_at, ingested_at <= $__toTime), toDateTime(0)) AS last_stored "
                          f"FROM {t}" for t in PIPELINE_TABLES)})
ORDER BY table
"""

# Calls queued for review in the week to the range's end (queue days), neither dropped since nor
# evaluated by a person: what the worker's ``callqa_review_queue`` gauge counts, from the store.
REVIEW_BACKLOG = f"""
SELECT count() AS review_backlog
FROM review_queue FINAL
WHERE status = 'queued' AND day > toDate($__toTime) - {REVIEW_DAYS} AND day <= toDate($__toTime)
  AND call_id NOT IN (SELECT call_id FROM evaluations WHERE kind != 'auto' AND call_id != '')
"""

# Quality incidents open at the range's end (not closed or merged), per the scope level they are at now
# (their latest row's): what the workers' ``callqa_open_incidents`` gauge counts, from the store.
OPEN_INCIDENTS_BY_LEVEL = """
SELECT level, count() AS open_incidents
FROM (
    SELECT alert_id, argMax(status, at) AS status, argMax(level, at) AS level
    FROM alerts FINAL
    WHERE kind = 'incident' AND at <= $__toTime
    GROUP BY alert_id
)
WHERE status NOT IN ('closed', 'merged')
GROUP BY level ORDER BY level
"""
