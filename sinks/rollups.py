"""The day and month rollups (refreshable views of migration 0005).

On a server ClickHouse runs them on their schedule. A batch run (replay, ingest, simulate) calls
``refresh`` when it is done, so its history is rolled up before the command returns.
"""
from __future__ import annotations

from .store import Store

VIEWS = ("kpi_daily_refresh", "kpi_monthly_refresh")  # in dependency order


def refresh(store: Store) -> None:
    """Run each rollup now and wait for it."""
    for view in VIEWS:
        store.execute(f"SYSTEM REFRESH VIEW {view}")
        store.execute(f"SYSTEM WAIT VIEW {view}")
