"""Names of the tables the pipeline writes (created by the migrations)."""
CALL_RECORDS = "call_records"
KPI_WINDOWS = "kpi_windows"
DEAD_LETTERS = "dead_letters"
