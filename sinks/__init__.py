"""Sinks: the ClickHouse schema (migrations), the stores (server and embedded chdb) and the batch writer."""
