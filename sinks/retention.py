"""Retention: a TTL on every table, counted from when callqa stored the row (``ingested_at``).

Counting from ingestion rather than event time keeps a replay of old history (a 2010 month of
calls) instead of dropping it on arrival. Raw data lives ``raw_days``, rollups and audit history
``history_days``; ``apply`` changes a table's TTL only when it differs, so it is idempotent.
"""
from __future__ import annotations

from .store import Store

RAW_DAYS = 396  # about 13 months: a year and its same month last year
HISTORY_DAYS = 1827  # five years
RAW = ("raw_events", "dead_letters", "call_records", "kpi_windows", "sampling_decisions", "detector_state")
HISTORY = ("kpi_daily", "kpi_monthly", "evaluations", "alerts", "sampling_rates", "review_queue", "agents",
           "surveys")


def ttl(days: int) -> str:
    return f"ingested_at + toIntervalDay({days})"


def apply(store: Store, raw_days: int, history_days: int) -> list[str]:
    """Set each table's TTL; return a line per table changed."""
    wanted = {**{t: raw_days for t in RAW}, **{t: history_days for t in HISTORY}}
    names = ", ".join(f"'{t}'" for t in wanted)
    current = dict(store.query(f"SELECT name, engine_full FROM system.tables "
                               f"WHERE database = currentDatabase() AND name IN ({names})")[1])
    changed = []
    for table, days in wanted.items():
        if f"TTL {ttl(days)} " not in current[table]:
            store.execute(f"ALTER TABLE {table} MODIFY TTL {ttl(days)}")
            changed.append(f"{table} keeps {days} days")
    return changed
