"""The event contract: versioned JSON Schema files and the one validator every entry point uses.

``validate(raw)`` takes the bytes (or str) of one event and returns the parsed dict, or raises
``InvalidEvent`` with a reason fit for the dead-letter record. Schemas are compiled once with
fastjsonschema (code generation; fast enough for the hot path).
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

SCHEMA_DIR = Path(__file__).resolve().parent
VERSION = 1
_BASE = f"https://callqa.dev/schemas/v{VERSION}/"


class InvalidEvent(ValueError):
    """An event that does not satisfy the contract; ``str(exc)`` is the reason."""


def _load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"v{VERSION}" / name).read_text())


def _compile() -> dict[str, tuple[Callable[[Any], Any], str]]:
    handlers = {"https": lambda uri: _load(uri.removeprefix(_BASE))}
    compiled = {}
    for path in sorted((SCHEMA_DIR / f"v{VERSION}").glob("*.json")):
        if path.name == "envelope.json":
            continue
        schema = _load(path.name)
        compiled[path.stem] = (fastjsonschema.compile(schema, handlers=handlers), schema["x-key"])
    return compiled


_VALIDATORS = _compile()
EVENT_TYPES: tuple[str, ...] = tuple(_VALIDATORS)


# Reference data every per-event partition needs in its own order: published to every partition of the
# events topic (``callqa.publish.Publisher`` does), so an agent's calls published after their profile
# find it on whichever partition they are, as the embedded run finds it.
BROADCAST = ("agent.profile",)


def key_field(event_type: str) -> str:
    """The field an event of this type is keyed (partitioned) by: call id, agent id, ..."""
    return _VALIDATORS[event_type][1]


def validate_dict(event: Any) -> dict:
    """Check an already-parsed event against its type's schema."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    event_type = event.get("event_type")
    entry = _VALIDATORS.get(event_type) if isinstance(event_type, str) else None
    if entry is None:
        raise InvalidEvent(f"unknown event_type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")
    try:
        entry[0](event)
        t = time_ms(event["event_time"])
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent(f"{event_type}: {exc.message}") from None
    except ValueError as exc:
        raise InvalidEvent(f"{event_type}: data.event_time is not a real UTC time: {exc}") from None
    if not plausible_ms(t):
        raise InvalidEvent(f"{event_type}: data.event_time {event['event_time']} is implausible: before 2000, or more "
                           f"than CALLQA_MAX_FUTURE_S ({MAX_FUTURE_S} s) ahead of this machine's clock")
    for name in KEY_PARTS:
        value = event.get(name)
        if isinstance(value, str) and "|" in value:
            raise InvalidEvent(f"{event_type}: data.{name} {value!r} contains '|', which callqa's keys use as a separator")
    return event


# Event times are plausible: not before 2000 and not more than MAX_FUTURE_S ahead of the wall clock (set from
# CALLQA_MAX_FUTURE_S), so one mistyped date cannot move a stream's watermark and make every other call late.
EARLIEST_MS = 946_684_800_000
MAX_FUTURE_S = 86_400
MAX_EVENT_BYTES = 1_048_576  # set from CALLQA_MAX_EVENT_BYTES
KEY_PARTS = ("site_id", "queue_id", "agent_id", "team_id", "from_agent_id", "to_agent_id")  # parts of window and series keys


def plausible_ms(t: int) -> bool:
    """Whether an event time (epoch ms) is one callqa takes: from 2000 on, and at most MAX_FUTURE_S ahead
    of this machine's clock."""
    return EARLIEST_MS <= t <= time.time() * 1000 + MAX_FUTURE_S * 1000


def time_ms(text: str) -> int:
    """Epoch milliseconds of a contract timestamp (``2024-03-04T09:15:02.120Z``)."""
    return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)


def format_ms(ms: int) -> str:
    """The contract's timestamp text for epoch milliseconds.

    >>> format_ms(1709543702120), format_ms(-1)
    ('2024-03-04T09:15:02.120Z', '1969-12-31T23:59:59.999Z')
    """
    seconds, millis = divmod(ms, 1000)
    days, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{_format_day(days)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


@lru_cache(maxsize=4096)
def _format_day(days: int) -> str:
    """The UTC date of a day since the epoch (UTC days have no leap seconds: the time of day is arithmetic)."""
    return datetime.fromtimestamp(days * 86400, UTC).strftime("%Y-%m-%d")


PAYLOAD_PREFIX_BYTES = 4096  # the dead letter of input over MAX_EVENT_BYTES keeps this much of it (its start)


def payload_prefix(text: str | bytes, limit: int | None = None) -> str | bytes:
    """The first ``limit`` (default ``PAYLOAD_PREFIX_BYTES``) bytes of ``text`` (text: whole characters)."""
    limit = PAYLOAD_PREFIX_BYTES if limit is None else limit
    if isinstance(text, bytes) or text.isascii():
        return text[:limit]
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def too_large(size: int, kept: int | None = None, refused_by: str | None = None) -> str:
    """The dead-letter reason of input of ``size`` bytes over the limit (``kept``: the bytes of it the dead
    letter keeps; ``refused_by``: what refused it, when not the limit itself). It starts "event of N bytes"
    and names CALLQA_MAX_EVENT_BYTES: the reason kind ``too large`` of ``callqa.metrics.reason_kind`` and
    ``sinks.queries.DEAD_LETTER_KIND``."""
    if refused_by:
        text = (f"event of {size:,} bytes is larger than {refused_by} accepts (CALLQA_MAX_EVENT_BYTES is "
                f"{MAX_EVENT_BYTES:,}): not published")
    else:
        text = f"event of {size:,} bytes is larger than CALLQA_MAX_EVENT_BYTES ({MAX_EVENT_BYTES:,}): not parsed"
    return text + (f"; the payload kept is its first {kept:,} bytes" if kept is not None else "")


def validate(raw: bytes | str) -> dict:
    """Parse and validate one serialized event (one larger than ``MAX_EVENT_BYTES`` is not parsed)."""
    if len(raw) > MAX_EVENT_BYTES:  # its dead letter keeps its first PAYLOAD_PREFIX_BYTES (every runner cuts it)
        raise InvalidEvent(too_large(len(raw), PAYLOAD_PREFIX_BYTES))
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    return validate_dict(event)
