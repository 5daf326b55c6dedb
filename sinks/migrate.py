"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied in order, each recorded once."""
from __future__ import annotations

from pathlib import Path

from . import retention
from .store import Store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LEDGER = ("CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime64(3, 'UTC') "
          "DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY name")


def statements(sql: str) -> list[str]:
    """Split a migration file into statements (';' at the end of a line ends one)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip().rstrip(";").strip()]


def pending(store: Store) -> list[Path]:
    """The migration files not yet recorded in the ledger (all of them when there is no ledger yet)."""
    ledger = store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                         "AND name = 'schema_migrations'")[1][0][0]
    done = {name for (name,) in store.query("SELECT name FROM schema_migrations FINAL")[1]} if ledger else set()
    return [path for path in sorted(MIGRATIONS.glob("*.sql")) if path.stem not in done]


def migrate(store: Store, raw_days: int = retention.RAW_DAYS, history_days: int = retention.HISTORY_DAYS) -> list[str]:
    """Apply the migrations not yet recorded and the retention; return what changed."""
    store.execute(LEDGER)
    applied = []
    for path in pending(store):
        for statement in statements(path.read_text()):
            store.execute(statement.rstrip(";"))
        store.insert("schema_migrations", [{"name": path.stem}])
        applied.append(path.stem)
    return applied + retention.apply(store, raw_days, history_days)
