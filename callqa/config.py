"""All configuration, from environment variables with documented defaults.

``SETTINGS`` is the single list of what can be set; the README's configuration table mirrors it
(a test keeps them in step). With neither ``KAFKA_BOOTSTRAP_SERVERS`` nor ``CLICKHOUSE_URL`` set,
everything runs on the embedded default: in one process, on chdb, under ``CALLQA_DATA_DIR``.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from sinks import retention

from .core.clock import SiteClock
from .core.kpi import KpiConfig, QueueRules
from .core.reviewers import Reviewer, parse_reviewers
from .core.sampling import PolicyConfig


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("KAFKA_BOOTSTRAP_SERVERS", None, "Kafka brokers (host:port,...). Unset: no Kafka; `replay` runs embedded."),
    Setting("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "How every Kafka client of callqa (confluent-kafka and faust's aiokafka) connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)."),
    Setting("KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism with SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    Setting("KAFKA_SASL_USERNAME", None, "SASL user name (required with SASL_PLAINTEXT and SASL_SSL)."),
    Setting("KAFKA_SASL_PASSWORD", None, "SASL password (required with SASL_PLAINTEXT and SASL_SSL; never logged)."),
    Setting("KAFKA_SSL_CA_FILE", None, "PEM file of the CA certificates the brokers' certificates are checked against (SSL, SASL_SSL). Unset: the system's trust store."),
    Setting("KAFKA_SSL_CERT_FILE", None, "Client certificate (PEM) for mutual TLS, with KAFKA_SSL_KEY_FILE (SSL, SASL_SSL)."),
    Setting("KAFKA_SSL_KEY_FILE", None, "Private key (PEM, not encrypted) of KAFKA_SSL_CERT_FILE."),
    Setting("CLICKHOUSE_URL", None, "ClickHouse server, native protocol (clickhouse://user:pass@host:9000/db; TLS: port 9440 and ?secure=True&ca_certs=/path/ca.pem). Unset: the embedded chdb store."),
    Setting("CALLQA_DATA_DIR", ".callqa", "Folder of the embedded store (chdb data lives in DATA_DIR/chdb)."),
    Setting("CALLQA_APP_ID", "callqa", "faust application id: consumer group and prefix of its internal topics."),
    Setting("CALLQA_TOPIC_EVENTS", "callqa.events", "Canonical events in (JSON, keyed by call or agent id)."),
    Setting("CALLQA_TOPIC_DEAD_LETTERS", "callqa.dead-letters", "Rejected input: reason, raw payload, origin."),
    Setting("CALLQA_TOPIC_CALL_RECORDS", "callqa.call-records", "Assembled call records out."),
    Setting("CALLQA_TOPIC_KPIS", "callqa.kpis", "KPI window rows out (latest version wins)."),
    Setting("CALLQA_TOPIC_EVALUATIONS", "callqa.evaluations", "Scored evaluations out (human, automatic, test calls, calibration)."),
    Setting("CALLQA_TOPIC_ALERTS", "callqa.alerts", "Alerts out."),
    Setting("CALLQA_TOPIC_SAMPLING", "callqa.sampling", "Agents' review-rate changes out (the audit trail: old and new rate, cause, evidence)."),
    Setting("CALLQA_TOPIC_SAMPLING_DECISIONS", "callqa.sampling-decisions", "One select-or-skip decision per recorded call, with the reason."),
    Setting("CALLQA_TOPIC_REVIEW_QUEUE", "callqa.review-queue", "Calls selected for review (queued, or dropped for a call of lower priority)."),
    Setting("CALLQA_TOPIC_DETECTOR_STATE", "callqa.detector-state", "The drift charts' state per series and hour (value, expected value, CUSUM statistic and limit) out: what the report's incident charts draw."),
    Setting("CALLQA_TOPIC_RAW_EVENTS", "callqa.raw-events", "The input events the worker applied, as received, out (the raw_events table: what an embedded replay stores; late and repeated events are dead letters or duplicates instead)."),
    Setting("CALLQA_TOPIC_PARTITIONS", "4", "Partitions of the topics callqa creates (at most 256)."),
    Setting("CALLQA_KPI_WINDOWS", "900,3600,86400", "Tumbling KPI window sizes in seconds, comma-separated, each at most 366 days and none twice (site and queue also get 300 s buckets for the live last 30 minutes)."),
    Setting("CALLQA_ALLOWED_LATENESS_S", "3600", "How far behind the latest event time of its site (in its partition) an event may arrive and still correct its call and windows."),
    Setting("CALLQA_ORDERING_SLACK_S", "0", "Drift charts and the sampler take their input in event-time order once every input partition has passed it by this many seconds: input later than that is taken as it comes. The worker holds (and saves) the input of this many seconds, so keep it small at high rates."),
    Setting("CALLQA_MAX_FUTURE_S", "86400", "An event more than this many seconds ahead of the machine's clock (or before 2000) is a dead letter, so one mistyped date cannot move the watermark and make every other call late."),
    Setting("CALLQA_WATERMARK_QUORUM", "2", "How many distinct calls or agents must reach an event time before a partition's (and a site's) watermark moves to it (at most 16): with 2, one call dated ahead, even within CALLQA_MAX_FUTURE_S, times out, closes and settles nothing of the others. 1: the latest event time seen."),
    Setting("CALLQA_MAX_EVENT_BYTES", "1048576", "An input event larger than this (at most 2097152) is a dead letter, not parsed (bounds the memory one message can take)."),
    Setting("CALLQA_CALL_TIMEOUT_S", "14400", "A call with no end this long after its last event is closed as incomplete."),
    Setting("CALLQA_REDELIVERY_S", "86400", "A finished call is remembered this long after its last event (at most CALLQA_FCR_HORIZON_S): a record delivered again (Amazon Connect delivers at least once) is a duplicate, and a newer version of the record updates the call, instead of being refused as late."),
    Setting("CALLQA_FCR_HORIZON_S", "259200", "First-call resolution: no repeat call from the same caller within this many seconds (72 h)."),
    Setting("CALLQA_SL_THRESHOLD_S", "20", "Service level: answered within this many seconds."),
    Setting("CALLQA_SHORT_ABANDON_S", "5", "Abandons within this many seconds are short abandons, left out of abandoned and service level."),
    Setting("CALLQA_SL_FORMULA", "answered_and_abandoned", "Service-level denominator: answered_and_abandoned, offered or answered."),
    Setting("CALLQA_QUEUE_READING", "standard", "How queue windows count a call that visits several queues (a transfer, an overflow): standard (each queue counts its own stint, as QueueMetrics' standard reading) or multi_stint (the call counts once, in the queue it first entered). Site windows always count it once."),
    Setting("CALLQA_SITE_TIMEZONES", None, "Each site's IANA time zone, comma-separated site=zone pairs (e.g. site-1=Asia/Shanghai,site-2=Europe/Berlin): shift hours and bands, weekdays, peak hours, test-call slots, review-queue days and KPI windows of whole days are the site's local time. The store keeps UTC."),
    Setting("CALLQA_TIMEZONE", "UTC", "IANA time zone of sites not in CALLQA_SITE_TIMEZONES, and of the QA team's day (review capacity per day)."),
    Setting("CALLQA_QUEUE_RULES", None, "JSON file of per-queue overrides: {\"queue\": {\"sl_threshold_s\": 30, \"short_abandon_s\": 10, \"sl_formula\": \"offered\"}}."),
    Setting("CALLQA_BATCH_EVENTS", "5000", "The worker's stages take up to this many messages (and 2 MiB) at a time (a micro-batch)..."),
    Setting("CALLQA_BATCH_SECONDS", "0.2", "...or what arrived within this many seconds."),
    Setting("CALLQA_METRICS_PORT", "0", "Port of the Prometheus metrics endpoint (/metrics) of `callqa run` and `callqa sink`: the sink's rows written per table, events by type, dead letters by reason, insert latency, last write, store up and consumer lag; the worker's messages applied and lag per stage, open incidents and review-queue size (README, Operating callqa). 0: not served."),
    Setting("CALLQA_SINK_STALE_S", "20", "`callqa check` fails (exit 2) when a message has waited longer than this in the sink's topics without being stored."),
    Setting("CALLQA_LOG_LEVEL", "WARN", "Log level of `callqa run` and `callqa sink` (DEBUG, INFO, WARN, ERROR)."),
    Setting("CALLQA_FLUSH_INTERVAL_S", "1.0", "The worker emits a changed KPI window's row at most once per this many seconds, and checkpoints each stage partition (state to its changelog, input offsets committed) as often."),
    Setting("CALLQA_IDLE_AFTER_S", "3", "An input partition of the worker with nothing to read for this many seconds is announced caught up. Once every partition is, the drift charts, the sampler and the threshold rules take what they hold back for the partitions' event time instead of waiting for more input; input that comes later with event times already passed is charted after what was taken (a replay of the same events charts it in event-time order)."),
    Setting("CALLQA_SINK_BATCH_ROWS", "20000", "The ClickHouse writer flushes a table's batch at this many rows..."),
    Setting("CALLQA_SINK_BATCH_SECONDS", "1.0", "...or when its oldest row has waited this long."),
    Setting("CALLQA_RETENTION_RAW_DAYS", str(retention.RAW_DAYS), "Days ClickHouse keeps raw data (events, dead letters, call records, KPI windows, sampling decisions, the drift charts' state), counted from when it was stored; applied by `callqa migrate`."),
    Setting("CALLQA_RETENTION_HISTORY_DAYS", str(retention.HISTORY_DAYS), "Days it keeps history (day and month rollups, evaluations, alerts, sampling-rate changes, review queue)."),
    Setting("CALLQA_QA_MONTHLY_TARGET", "30", "Human evaluations each agent should get a month."),
    Setting("CALLQA_RECORDING_URL", "{storage_uri}", "Link of a recording in the report: a template with {storage_uri}, {call_id} and {recording_id} (e.g. https://recordings.example/play?uri={storage_uri}; the values percent-encoded but for / and :). Default: the storage URI itself."),
    Setting("CALLQA_MIN_CALLS_FOR_RATIO", "20", "The report draws no ratio (service level, ASA, abandonment, a share of calls) from fewer calls than this: the cell is blank, the point left out."),
    Setting("CALLQA_SAMPLING_POLICY", None, "JSON file of monitoring-policy overrides (fields of `callqa.core.sampling.PolicyConfig`, e.g. {\"base_rate\": 0.05, \"tier_factor\": {\"high\": 0.5, \"middle\": 1, \"low\": 2}})."),
    Setting("CALLQA_QA_REVIEWERS", "12", "QA reviewers: review capacity is reviewers × reviews per hour × review hours a day."),
    Setting("CALLQA_QA_REVIEWS_PER_HOUR", "12", "Reviews one reviewer completes in an hour."),
    Setting("CALLQA_QA_REVIEW_HOURS", "7", "Hours a day a reviewer spends reviewing."),
    Setting("CALLQA_REVIEWERS_FILE", None, "JSON file of the named QA reviewers: a list of {\"id\", \"name\", \"sites\": [...] or \"*\", \"languages\": [...], \"reviews_per_day\": N, \"coaching\": true/false} (README, Named reviewers and daily plans). Set: review capacity is the sum of reviews_per_day (CALLQA_QA_REVIEWERS, CALLQA_QA_REVIEWS_PER_HOUR and CALLQA_QA_REVIEW_HOURS are not used), `callqa plan` assigns each review to a reviewer of its site and language, and the simulator's evaluators are these reviewers. Unset: reviewers qa-01... of CALLQA_QA_REVIEWERS, every site and language."),
    Setting("CALLQA_SAMPLING_KEY", "", "Secret key of the sampling draws (a keyed hash of the call id: unpredictable, and the same on a replay). Empty: a fixed development key."),
    Setting("CALLQA_TEST_CALLS_PER_WEEK", "200", "Internal test (mystery) calls in a weekly plan."),
    Setting("CALLQA_CALLER_HASH_KEY", "", "Secret key of the keyed hash (HMAC-SHA256) of caller numbers, made in the adapters. Required when Kafka or a ClickHouse server is configured; empty on the embedded default: a fixed development key and a warning."),
)


# the largest CALLQA_MAX_EVENT_BYTES: a dead letter of such an event, JSON-escaped (up to 6 bytes a byte), still
# fits the topics' message limit (callqa.topics.MESSAGE_MAX_BYTES, 16 MiB)
MAX_EVENT_BYTES = 2 << 20
_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _int(name: str, value: str, minimum: int = 1, maximum: int = 10**12) -> int:
    """A whole number written in ASCII digits (``int`` alone would take ``1_000`` or Arabic-Indic digits),
    from ``minimum`` to ``maximum``; else a one-line ConfigError naming the setting and the value."""
    if not _WHOLE.fullmatch(value.strip()):
        raise ConfigError(f"{name}={value!r} is not a whole number")
    if len(value.strip().lstrip("+-").lstrip("0")) > 15:  # int() refuses over 4300 digits: say what is wrong
        raise ConfigError(f"{name}={value[:40]!r} is too large" + (" (at most 10^12)" if maximum == 10**12 else f" (at most {maximum})"))
    number = int(value)
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum}")
    if number > maximum:
        limit = "10^12" if maximum == 10**12 else str(maximum)
        raise ConfigError(f"{name}={value!r} is too large (at most {limit})")
    return number


def _float(name: str, value: str) -> float:
    text = value.strip()
    if not _DECIMAL.fullmatch(text) and text.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
        raise ConfigError(f"{name}={value!r} is not a number")
    number = float(text)
    if not math.isfinite(number) or number <= 0 or number > 1e12:
        raise ConfigError(f"{name}={value!r} must be a positive finite number (at most 10^12)")
    return number


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _rules(names: tuple[str, str, str], threshold, short, formula) -> QueueRules:
    """A queue's service-level rules; ``names`` say where each of the three values comes from."""
    from .core.kpi import SL_FORMULAS

    if formula not in SL_FORMULAS:
        raise ConfigError(f"{names[2]}={formula!r} must be one of {', '.join(SL_FORMULAS)}")

    def whole(name: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):  # JSON null, 1.5, true, ...
            raise ConfigError(f"{name}={value!r} is not a whole number")
        return _int(name, str(value), 0)

    return QueueRules(whole(names[0], threshold), whole(names[1], short), formula)


def _json_object(raw: dict, name: str) -> dict:
    """The JSON object in the file a setting names ({} when unset)."""
    if not raw[name]:
        return {}
    path = Path(raw[name])
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ConfigError(f"{name}={path}: not a readable JSON object ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{name}={path}: not a JSON object (it holds a {type(spec).__name__})")
    return spec


def _clock(raw: dict) -> SiteClock:
    """The sites' time zones: CALLQA_SITE_TIMEZONES (site=zone,...) and CALLQA_TIMEZONE for the rest."""
    zones: dict[str, str] = {}
    for pair in (raw["CALLQA_SITE_TIMEZONES"] or "").split(","):
        if not pair.strip():
            continue
        site, eq, name = (part.strip() for part in pair.partition("="))
        if not eq or not site or not name:
            raise ConfigError(f"CALLQA_SITE_TIMEZONES: {pair.strip()!r} is not site=zone (e.g. site-1=Asia/Shanghai)")
        if site in zones:
            raise ConfigError(f"CALLQA_SITE_TIMEZONES: site {site!r} is given twice")
        zones[site] = name
    for name, value in [("CALLQA_TIMEZONE", raw["CALLQA_TIMEZONE"]), *((f"CALLQA_SITE_TIMEZONES[{s}]", z) for s, z in zones.items())]:
        try:
            SiteClock({}, value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return SiteClock(zones, raw["CALLQA_TIMEZONE"])


def _kpi_config(raw: dict, windows: tuple[int, ...]) -> KpiConfig:
    default = _rules(("CALLQA_SL_THRESHOLD_S", "CALLQA_SHORT_ABANDON_S", "CALLQA_SL_FORMULA"), raw["CALLQA_SL_THRESHOLD_S"],
                     raw["CALLQA_SHORT_ABANDON_S"], raw["CALLQA_SL_FORMULA"])
    queues = {}
    for queue, rules in _json_object(raw, "CALLQA_QUEUE_RULES").items():
        where = f"CALLQA_QUEUE_RULES[{queue!r}]"
        if not isinstance(rules, dict):
            raise ConfigError(f"{where}={rules!r}: each queue's rules are a JSON object "
                              '(e.g. {"sl_threshold_s": 30, "short_abandon_s": 10, "sl_formula": "offered"})')
        unknown = set(rules) - {"sl_threshold_s", "short_abandon_s", "sl_formula"}
        if unknown:
            raise ConfigError(f"{where}: unknown fields {', '.join(sorted(unknown))} (sl_threshold_s, short_abandon_s, sl_formula)")
        queues[queue] = _rules(tuple(f"{where}.{key}" for key in ("sl_threshold_s", "short_abandon_s", "sl_formula")),
                               rules.get("sl_threshold_s", default.sl_threshold_s),
                               rules.get("short_abandon_s", default.short_abandon_s),
                               rules.get("sl_formula", default.sl_formula))
    from .core.kpi import QUEUE_READINGS

    if raw["CALLQA_QUEUE_READING"] not in QUEUE_READINGS:
        raise ConfigError(f"CALLQA_QUEUE_READING={raw['CALLQA_QUEUE_READING']!r} must be one of {', '.join(QUEUE_READINGS)}")
    fcr_horizon_s = _int("CALLQA_FCR_HORIZON_S", raw["CALLQA_FCR_HORIZON_S"])
    redelivery_s = _int("CALLQA_REDELIVERY_S", raw["CALLQA_REDELIVERY_S"], 0)
    if redelivery_s > fcr_horizon_s:
        raise ConfigError(f"CALLQA_REDELIVERY_S={redelivery_s} must be at most CALLQA_FCR_HORIZON_S={fcr_horizon_s} "
                          "(a call's windows are kept that long for corrections)")
    return KpiConfig(window_sizes_s=windows, default_rules=default, queue_rules=queues,
                     queue_reading=raw["CALLQA_QUEUE_READING"],
                     allowed_lateness_s=_int("CALLQA_ALLOWED_LATENESS_S", raw["CALLQA_ALLOWED_LATENESS_S"], 0),
                     call_timeout_s=_int("CALLQA_CALL_TIMEOUT_S", raw["CALLQA_CALL_TIMEOUT_S"]),
                     ordering_slack_s=_int("CALLQA_ORDERING_SLACK_S", raw["CALLQA_ORDERING_SLACK_S"], 0),
                     watermark_quorum=_int("CALLQA_WATERMARK_QUORUM", raw["CALLQA_WATERMARK_QUORUM"], 1, 16),
                     fcr_horizon_s=fcr_horizon_s, redelivery_s=redelivery_s, clock=_clock(raw))


def _reviewers(raw: dict) -> tuple[Reviewer, ...]:
    """The named reviewers of CALLQA_REVIEWERS_FILE (none when unset); a one-line ConfigError otherwise."""
    name = "CALLQA_REVIEWERS_FILE"
    if not raw[name]:
        return ()
    path = Path(raw[name])
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ConfigError(f"{name}={path}: not a readable JSON file ({exc})") from None
    try:
        return parse_reviewers(spec)
    except ValueError as exc:
        raise ConfigError(f"{name}={path}: {exc}") from None


def _policy(raw: dict, reviewers: tuple[Reviewer, ...] = ()) -> PolicyConfig:
    spec = _json_object(raw, "CALLQA_SAMPLING_POLICY")
    capacity = {"reviewers": _int("CALLQA_QA_REVIEWERS", raw["CALLQA_QA_REVIEWERS"]),
                "reviews_per_hour": _int("CALLQA_QA_REVIEWS_PER_HOUR", raw["CALLQA_QA_REVIEWS_PER_HOUR"]),
                "review_hours": _float("CALLQA_QA_REVIEW_HOURS", raw["CALLQA_QA_REVIEW_HOURS"]),
                "daily_reviews": sum(r.reviews_per_day for r in reviewers)}
    _policy_shapes(spec)
    _finite_and_positive(spec, "CALLQA_SAMPLING_POLICY")
    for rate in ("base_rate", "max_rate"):
        if rate in spec and not 0 < spec[rate] <= 1:
            raise ConfigError(f"CALLQA_SAMPLING_POLICY: {rate} {spec[rate]!r} must be a probability above 0 and at most 1")
    try:
        return PolicyConfig.from_json(spec, **capacity)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"CALLQA_SAMPLING_POLICY: {exc}") from None


_CAPACITY_SETTINGS = {"reviewers": "CALLQA_QA_REVIEWERS", "reviews_per_hour": "CALLQA_QA_REVIEWS_PER_HOUR",
                      "review_hours": "CALLQA_QA_REVIEW_HOURS", "daily_reviews": "CALLQA_REVIEWERS_FILE"}


def _policy_number(where: str, value, whole: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}={value!r}: a number, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 <= value <= 1e12:
        raise ConfigError(f"{where}={value!r}: a finite number from 0 to 10^12")
    if whole and value != int(value):
        raise ConfigError(f"{where}={value!r}: a whole number")


def _policy_shapes(spec: dict) -> None:
    """Each override of CALLQA_SAMPLING_POLICY has its default's shape: a number (whole where the default
    is), an object of numbers with the default's keys, or a list of numbers ([low, high] for a clip);
    a string or null there would fail deep in the sampler, not here."""
    defaults = PolicyConfig()
    for key, value in spec.items():
        where = f"CALLQA_SAMPLING_POLICY.{key}"
        if key in _CAPACITY_SETTINGS:
            raise ConfigError(f"{where}: review capacity is set by {_CAPACITY_SETTINGS[key]}, not here")
        if key not in PolicyConfig.__dataclass_fields__:
            continue  # PolicyConfig.from_json names the unknown fields
        default = getattr(defaults, key)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: a JSON object of numbers with keys {', '.join(default)}")
            unknown = set(value) - set(default)
            missing = set(default) - set(value) if key == "drift_factor" else set()  # every level is looked up
            if unknown or missing:
                raise ConfigError(f"{where}: keys must be {', '.join(default)}"
                                  + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
                                  + (f" (missing: {', '.join(sorted(missing))})" if missing else ""))
            for name, item in value.items():
                _policy_number(f"{where}.{name}", item)
        elif isinstance(default, tuple):
            pair = len(default) == 2
            if not isinstance(value, list) or not value or (pair and len(value) != 2):
                raise ConfigError(f"{where}={value!r}: " + ("[low, high], two numbers" if pair else "a list of numbers"))
            for i, item in enumerate(value):
                _policy_number(f"{where}[{i}]", item)
            if pair and value[0] > value[1]:
                raise ConfigError(f"{where}={value!r}: low above high")
        else:
            _policy_number(where, value, whole=isinstance(default, int))


def _finite_and_positive(value, where: str) -> None:
    """Every number in a JSON override is finite and not negative (NaN, Infinity or -1 would silently
    select every call or none); else a one-line ConfigError naming where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_and_positive(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _finite_and_positive(item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}={value!r}: a finite number, not negative")


TOPIC_SETTINGS = ("CALLQA_TOPIC_EVENTS", "CALLQA_TOPIC_DEAD_LETTERS", "CALLQA_TOPIC_CALL_RECORDS", "CALLQA_TOPIC_KPIS",
                  "CALLQA_TOPIC_EVALUATIONS", "CALLQA_TOPIC_ALERTS", "CALLQA_TOPIC_SAMPLING",
                  "CALLQA_TOPIC_SAMPLING_DECISIONS", "CALLQA_TOPIC_REVIEW_QUEUE", "CALLQA_TOPIC_DETECTOR_STATE",
                  "CALLQA_TOPIC_RAW_EVENTS")
MAX_PARTITIONS = 256
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _pem(name: str, path: str, load=None) -> str:
    """``path``, a file that exists and that ``load`` (an ssl loader) reads; else a one-line ConfigError."""
    import ssl

    if not Path(path).is_file():
        raise ConfigError(f"{name}={path}: " + ("a folder, not a PEM file" if Path(path).is_dir() else "no such file"))
    try:
        if load is not None:
            load(path)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{name}={path}: not a usable PEM file ({exc})") from None
    return path


def _kafka_security(raw: dict) -> dict:
    """The Kafka security fields of Config, checked: a known protocol and mechanism, SASL with a user
    and a password, TLS files that exist and load. Settings the protocol would ignore are refused, so
    that a forgotten KAFKA_SECURITY_PROTOCOL cannot leave the clients silently unauthenticated."""
    import ssl

    protocol = _choice("KAFKA_SECURITY_PROTOCOL", raw["KAFKA_SECURITY_PROTOCOL"].upper(), KAFKA_SECURITY_PROTOCOLS)
    mechanism = _choice("KAFKA_SASL_MECHANISM", raw["KAFKA_SASL_MECHANISM"].upper(), KAFKA_SASL_MECHANISMS)
    user, password = raw["KAFKA_SASL_USERNAME"], raw["KAFKA_SASL_PASSWORD"]
    ca, cert, key = raw["KAFKA_SSL_CA_FILE"], raw["KAFKA_SSL_CERT_FILE"], raw["KAFKA_SSL_KEY_FILE"]
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl and not (user and password):
        raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    if not sasl and (user or password):
        raise ConfigError(f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL={protocol} "
                          "does not use SASL (SASL_PLAINTEXT or SASL_SSL)")
    if not tls and (ca or cert or key):
        raise ConfigError(f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                          "(SSL or SASL_SSL)")
    if bool(cert) != bool(key):
        raise ConfigError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (mutual TLS): set both or neither")
    if ca:
        _pem("KAFKA_SSL_CA_FILE", ca, lambda path: ssl.create_default_context(cafile=path))
    if cert:
        _pem("KAFKA_SSL_KEY_FILE", key)
        _pem("KAFKA_SSL_CERT_FILE", cert, lambda path: ssl.create_default_context().load_cert_chain(path, key))
    return {"kafka_security_protocol": protocol, "kafka_sasl_mechanism": mechanism, "kafka_sasl_username": user,
            "kafka_sasl_password": password, "kafka_ssl_ca_file": ca, "kafka_ssl_cert_file": cert,
            "kafka_ssl_key_file": key}


_USERINFO = re.compile(r"(//)[^/?#@\s]*@")


def _masked(url: str) -> str:
    """``url`` with the user and password of every ``scheme://user:password@host`` in it masked."""
    return _USERINFO.sub(r"\1***@", url)


SCRIPT_LINK = re.compile(r"[\x00-\x20]*(javascript|vbscript|data):", re.IGNORECASE)  # a link that runs or inlines


def _recording_url(template: str) -> str:
    """The recording link template, checked: only {storage_uri}, {call_id} and {recording_id}. Messages
    show it with any user:password@ of a URL masked."""
    import string

    shown = _masked(template)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise ConfigError(f"CALLQA_RECORDING_URL={shown!r}: {exc}") from None
    names = {name for name, _, _ in fields}
    if not names or names - {"storage_uri", "call_id", "recording_id"} or any(spec or conv for _, spec, conv in fields):
        raise ConfigError(f"CALLQA_RECORDING_URL={shown!r} must use {{storage_uri}}, {{call_id}} or {{recording_id}} "
                          "(plain, no format spec or conversion) and nothing else")
    if SCRIPT_LINK.match(template):
        raise ConfigError(f"CALLQA_RECORDING_URL={shown!r}: a link to a script or inline data is refused")
    return template


_BOOLEANS = ("true", "yes", "on", "y", "t", "1", "false", "no", "off", "n", "f", "0")  # clickhouse-driver's asbool
_HOST = re.compile(r"\[[0-9A-Fa-f:.%A-Za-z]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def _host_port(name: str, text: str, example: str, required: bool = True) -> None:
    """``text`` is host:port (a name, an IPv4 address or a bracketed IPv6 one; a port 1 to 65535, which
    may be left out where not ``required``); else a one-line ConfigError naming ``name`` and ``text``."""
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host, port = text, None
    if not host or not _HOST.fullmatch(host):
        raise ConfigError(f"{name}: {text!r} is not host:port (e.g. {example})")
    if port is None:
        if required:
            raise ConfigError(f"{name}: {text!r} has no port (host:port, e.g. {example})")
        return
    if not _WHOLE.fullmatch(port) or port.startswith(("+", "-")) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name}: {text!r}: the port {port!r} is not a number from 1 to 65535")


def _kafka_servers(value: str | None) -> str | None:
    """KAFKA_BOOTSTRAP_SERVERS, checked: host:port,... (what librdkafka and faust's kafka:// URLs both take)."""
    if value is None:
        return None
    servers = [entry.strip() for entry in value.split(",")]
    if not any(servers):
        raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS={value!r} names no broker (host:port,...)")
    for entry in servers:
        if not entry:
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS={value!r} has an empty entry (host:port,host:port,...)")
        if "://" in entry:
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS: {entry!r}: give host:port without a scheme "
                              "(the protocol is KAFKA_SECURITY_PROTOCOL)")
        _host_port("KAFKA_BOOTSTRAP_SERVERS", entry, "kafka-1:9092")
    return ",".join(servers)


# clickhouse-driver's typed URL options (clickhouse_driver.util.helpers.parse_url): checked here, so a typo is
# one line naming the option rather than a traceback from the driver
_CH_BOOLEANS = ("secure", "verify", "check_hostname", "use_numpy", "round_robin", "settings_is_important")
_CH_TIMEOUTS = ("connect_timeout", "send_receive_timeout", "sync_request_timeout")
_CH_WHOLE = ("compress_block_size", "client_revision", "insert_block_size")


def _clickhouse_url(url: str | None) -> str | None:
    """The URL, checked: a ``clickhouse://`` or ``clickhouses://`` URL with a host and a valid port, its
    typed options valid, and its TLS options checked: ``ca_certs`` (``certfile``, ``keyfile``) only with
    ``secure=True`` (or a ``clickhouses://`` URL), and naming a file that exists. Messages never repeat
    the URL (it may hold the password): at most the host and port."""
    if url is None:
        return None
    import ssl
    from urllib.parse import parse_qs, unquote, urlsplit

    if not url.strip():
        raise ConfigError("CLICKHOUSE_URL is blank: unset it for the embedded store, or give "
                          "clickhouse://user:password@host:9000/database")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise ConfigError(f"CLICKHOUSE_URL is not a URL ({exc}): clickhouse://user:password@host:9000/database") from None
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise ConfigError("CLICKHOUSE_URL must start with clickhouse:// (or clickhouses:// for TLS): callqa speaks "
                          "ClickHouse's native protocol, e.g. clickhouse://user:password@host:9000/database"
                          + (f" (not {parts.scheme}://)" if parts.scheme in ("http", "https", "tcp") else ""))
    rest = url.strip().split("://", 1)[-1][len(parts.netloc):]  # the path, query and fragment
    if "@" in rest and "@" not in parts.netloc and ("=" not in rest or rest.index("@") < rest.index("=")):
        # an @ outside a query value: a / ? or # in the password ended the host part early (never echo it)
        raise ConfigError("CLICKHOUSE_URL: the user or password holds a character that must be percent-encoded "
                          "(/ ? # as %2F %3F %23)")
    address = parts.netloc.rpartition("@")[2]  # host:port, without the user and password
    if not address:
        raise ConfigError("CLICKHOUSE_URL has no host: clickhouse://user:password@host:9000/database")
    try:
        _host_port("CLICKHOUSE_URL", address, "clickhouse-1:9000", required=False)
    except ConfigError:
        if "@" in rest and "@" not in parts.netloc:  # what looks like the host may be part of a password
            raise ConfigError("CLICKHOUSE_URL: no valid host:port (if the password holds / ? or #, percent-encode "
                              "them: %2F %3F %23)") from None
        raise
    if parts.path.strip("/").count("/"):
        raise ConfigError(f"CLICKHOUSE_URL: the path {parts.path!r} must be one database name (/database)")
    pairs = parse_qs(parts.query, keep_blank_values=True)
    twice = sorted(name for name, values in pairs.items() if len(values) > 1)
    if twice:  # the driver takes the first, a reader the last: say it once
        raise ConfigError(f"CLICKHOUSE_URL: {', '.join(twice)}= given more than once")
    query = {name: values[0] for name, values in pairs.items()}
    for name in _CH_BOOLEANS + ("compression",):
        if name in query and query[name].strip().lower() not in _BOOLEANS + (("lz4", "lz4hc", "zstd") if name == "compression" else ()):
            raise ConfigError(f"CLICKHOUSE_URL: {name}={query[name]} must be True or False"
                              + (" (or lz4, lz4hc, zstd)" if name == "compression" else ""))
    for name in _CH_TIMEOUTS:
        if name in query:
            try:
                seconds = float(query[name])
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or not 0 < seconds <= 86_400:
                raise ConfigError(f"CLICKHOUSE_URL: {name}={query[name]} must be a number of seconds above 0 (at most 86400)")
    for name in _CH_WHOLE:
        if name in query and (not _WHOLE.fullmatch(query[name]) or not 0 < int(query[name]) <= 10**12):
            raise ConfigError(f"CLICKHOUSE_URL: {name}={query[name]} must be a whole number above 0")
    version = query.get("ssl_version")
    if version is not None and not (version.startswith("PROTOCOL_") and isinstance(getattr(ssl, version, None), int)):
        raise ConfigError(f"CLICKHOUSE_URL: ssl_version={query['ssl_version']} is not one of Python's ssl.PROTOCOL_* "
                          "(e.g. PROTOCOL_TLS_CLIENT)")
    if "alt_hosts" in query:
        for host in query["alt_hosts"].split(","):
            _host_port("CLICKHOUSE_URL alt_hosts", host.strip(), "clickhouse-2:9000", required=False)
    if "tcp_keepalive" in query and query["tcp_keepalive"].strip().lower() not in _BOOLEANS:
        numbers = query["tcp_keepalive"].split(",")
        if len(numbers) != 3 or not all(_WHOLE.fullmatch(n.strip()) and int(n) > 0 for n in numbers):
            raise ConfigError(f"CLICKHOUSE_URL: tcp_keepalive={query['tcp_keepalive']} must be True, False or "
                              "idle,interval,probes (three whole numbers)")
    secure = parts.scheme == "clickhouses" or query.get("secure", "false").strip().lower() in _BOOLEANS[:6]
    for option in ("ca_certs", "certfile", "keyfile"):
        if option in query:
            if not secure:
                raise ConfigError(f"CLICKHOUSE_URL has {option}= but not secure=True: the connection would not use TLS")
            if not Path(query[option]).is_file():
                raise ConfigError(f"CLICKHOUSE_URL: {option}={query[option]}: no such file")
    try:  # what the driver makes of it (it connects later): anything left that it refuses, in one line
        from clickhouse_driver import Client

        Client.from_url(url.strip())
    except Exception as exc:  # noqa: BLE001 - the driver raises ValueError, AttributeError, IndexError, ...
        message = str(exc)
        if parts.password:
            message = message.replace(unquote(parts.password), "***").replace(parts.password, "***")
        raise ConfigError(f"CLICKHOUSE_URL is not usable by clickhouse-driver ({type(exc).__name__}: {message})") from None
    return url.strip()


def _data_dir(value: str) -> Path:
    """CALLQA_DATA_DIR: not blank, and not a file (nor inside one). Whether it can be written is found out
    when the embedded store opens it (sinks.store.EmbeddedStore)."""
    if not value.strip():
        raise ConfigError(f"CALLQA_DATA_DIR={value!r} is blank: give a folder (default .callqa)")
    path = Path(value)
    for folder in (path, *path.parents):
        try:
            if not folder.exists():
                continue
            is_dir = folder.is_dir()
        except OSError:  # not even to be looked at (no permission): the store says so when it opens it
            break
        if not is_dir:
            where = "is a file" if folder == path else f"is inside {folder}, which is a file"
            raise ConfigError(f"CALLQA_DATA_DIR={value} {where}, not a folder")
        break
    return path


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names


def _topic(name: str, value: str, reserve: int = 0) -> str:
    """A Kafka topic name (or, with ``reserve``, a prefix of topic names that leaves that many characters)."""
    if not _TOPIC.fullmatch(value) or value in (".", "..") or len(value) > 249 - reserve:
        raise ConfigError(f"{name}={value!r} is not a Kafka topic name: 1 to {249 - reserve} of the letters "
                          "a-z, A-Z, the digits and . _ - (not . or ..)")
    return value


def _windows(raw: dict) -> tuple[int, ...]:
    name, text = "CALLQA_KPI_WINDOWS", raw["CALLQA_KPI_WINDOWS"]
    windows = tuple(_int(name, w.strip(), 1, 366 * 86_400) for w in text.split(",") if w.strip())
    if not windows:
        raise ConfigError(f"{name} must name at least one window size in seconds")
    if len(set(windows)) != len(windows):
        raise ConfigError(f"{name}={text!r} names a window size twice")
    if 3600 not in windows:
        raise ConfigError(f"{name} must include 3600: the hourly windows feed the day and month rollups")
    return windows


@dataclass(frozen=True)
class Config:
    kafka_bootstrap_servers: str | None
    clickhouse_url: str | None
    data_dir: Path
    app_id: str
    topic_events: str
    topic_dead_letters: str
    topic_call_records: str
    topic_kpis: str
    topic_evaluations: str
    topic_alerts: str
    topic_sampling: str
    topic_sampling_decisions: str
    topic_review_queue: str
    topic_partitions: int
    kpi_windows: tuple[int, ...]
    kpi: "KpiConfig"
    batch_events: int
    batch_seconds: float
    flush_interval_s: float
    idle_after_s: float
    log_level: str
    sink_batch_rows: int
    sink_batch_seconds: float
    retention_raw_days: int
    retention_history_days: int
    qa_monthly_target: int
    policy: "PolicyConfig"
    sampling_key: bytes
    test_calls_per_week: int
    caller_hash_key: str
    max_future_s: int = 86_400
    metrics_port: int = 0
    max_event_bytes: int = 1_048_576
    sink_stale_s: int = 20
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_ca_file: str | None = None
    kafka_ssl_cert_file: str | None = None
    kafka_ssl_key_file: str | None = None
    topic_detector_state: str = "callqa.detector-state"
    topic_raw_events: str = "callqa.raw-events"
    recording_url: str = "{storage_uri}"
    min_calls_for_ratio: int = 20
    reviewers: tuple[Reviewer, ...] = ()  # named reviewers (CALLQA_REVIEWERS_FILE); none: the synthetic qa-01...

    @property
    def embedded(self) -> bool:
        """True when the store is the in-process chdb engine."""
        return not self.clickhouse_url

    def apply(self) -> "Config":
        """Make the process-wide parts of the configuration take effect (the validator's time guard)."""
        import schemas

        schemas.MAX_FUTURE_S = self.max_future_s
        schemas.MAX_EVENT_BYTES = self.max_event_bytes
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Config":
        env = os.environ if env is None else env
        raw = {s.env: (env.get(s.env) or s.default) for s in SETTINGS}
        kafka = _kafka_servers(raw["KAFKA_BOOTSTRAP_SERVERS"])
        clickhouse = _clickhouse_url(raw["CLICKHOUSE_URL"])
        if (kafka or clickhouse) and not raw["CALLQA_CALLER_HASH_KEY"]:
            raise ConfigError("CALLQA_CALLER_HASH_KEY must be set when Kafka or a ClickHouse server is configured: "
                              "caller numbers are hashed with it (the development key is for the embedded default only)")
        windows = _windows(raw)
        topics = {name: _topic(name, raw[name]) for name in TOPIC_SETTINGS}
        same = sorted(name for name in topics if list(topics.values()).count(topics[name]) > 1)
        if same:
            raise ConfigError(f"{' and '.join(same)} name the same topic {topics[same[0]]!r}: each needs its own")
        reviewers = _reviewers(raw)
        return cls(
            kafka_bootstrap_servers=kafka,
            clickhouse_url=clickhouse,
            data_dir=_data_dir(raw["CALLQA_DATA_DIR"]),
            app_id=_topic("CALLQA_APP_ID", raw["CALLQA_APP_ID"], reserve=60),  # a prefix of its internal topics
            topic_events=topics["CALLQA_TOPIC_EVENTS"],
            topic_dead_letters=topics["CALLQA_TOPIC_DEAD_LETTERS"],
            topic_call_records=topics["CALLQA_TOPIC_CALL_RECORDS"],
            topic_kpis=topics["CALLQA_TOPIC_KPIS"],
            topic_evaluations=topics["CALLQA_TOPIC_EVALUATIONS"],
            topic_alerts=topics["CALLQA_TOPIC_ALERTS"],
            topic_sampling=topics["CALLQA_TOPIC_SAMPLING"],
            topic_sampling_decisions=topics["CALLQA_TOPIC_SAMPLING_DECISIONS"],
            topic_review_queue=topics["CALLQA_TOPIC_REVIEW_QUEUE"],
            # the embedded runner's work and memory grow with the partitions (1000: minutes and gigabytes)
            topic_partitions=_int("CALLQA_TOPIC_PARTITIONS", raw["CALLQA_TOPIC_PARTITIONS"], 1, MAX_PARTITIONS),
            kpi_windows=windows,
            kpi=_kpi_config(raw, windows),
            batch_events=_int("CALLQA_BATCH_EVENTS", raw["CALLQA_BATCH_EVENTS"]),
            batch_seconds=_float("CALLQA_BATCH_SECONDS", raw["CALLQA_BATCH_SECONDS"]),
            flush_interval_s=_float("CALLQA_FLUSH_INTERVAL_S", raw["CALLQA_FLUSH_INTERVAL_S"]),
            idle_after_s=_float("CALLQA_IDLE_AFTER_S", raw["CALLQA_IDLE_AFTER_S"]),
            log_level=_choice("CALLQA_LOG_LEVEL", raw["CALLQA_LOG_LEVEL"].upper(), ("DEBUG", "INFO", "WARN", "ERROR")),
            sink_batch_rows=_int("CALLQA_SINK_BATCH_ROWS", raw["CALLQA_SINK_BATCH_ROWS"]),
            sink_batch_seconds=_float("CALLQA_SINK_BATCH_SECONDS", raw["CALLQA_SINK_BATCH_SECONDS"]),
            retention_raw_days=_int("CALLQA_RETENTION_RAW_DAYS", raw["CALLQA_RETENTION_RAW_DAYS"]),
            retention_history_days=_int("CALLQA_RETENTION_HISTORY_DAYS", raw["CALLQA_RETENTION_HISTORY_DAYS"]),
            qa_monthly_target=_int("CALLQA_QA_MONTHLY_TARGET", raw["CALLQA_QA_MONTHLY_TARGET"]),
            policy=_policy(raw, reviewers),
            reviewers=reviewers,
            sampling_key=(raw["CALLQA_SAMPLING_KEY"] or "callqa-development").encode(),
            test_calls_per_week=_int("CALLQA_TEST_CALLS_PER_WEEK", raw["CALLQA_TEST_CALLS_PER_WEEK"]),
            caller_hash_key=raw["CALLQA_CALLER_HASH_KEY"] or "",
            max_future_s=_int("CALLQA_MAX_FUTURE_S", raw["CALLQA_MAX_FUTURE_S"], 0),
            metrics_port=_int("CALLQA_METRICS_PORT", raw["CALLQA_METRICS_PORT"], 0, 65535),
            max_event_bytes=_int("CALLQA_MAX_EVENT_BYTES", raw["CALLQA_MAX_EVENT_BYTES"], 1024, MAX_EVENT_BYTES),
            sink_stale_s=_int("CALLQA_SINK_STALE_S", raw["CALLQA_SINK_STALE_S"]),
            topic_detector_state=topics["CALLQA_TOPIC_DETECTOR_STATE"],
            topic_raw_events=topics["CALLQA_TOPIC_RAW_EVENTS"],
            recording_url=_recording_url(raw["CALLQA_RECORDING_URL"]),
            min_calls_for_ratio=_int("CALLQA_MIN_CALLS_FOR_RATIO", raw["CALLQA_MIN_CALLS_FOR_RATIO"], 0),
            **_kafka_security(raw),
        )


# every setting is a Config field, except the KPI rules, watermark quorum and site time zones (13, making up Config.kpi) and the
# policy's (4, Config.policy)
assert len(SETTINGS) - 13 - 4 == len(fields(Config)) - 2
