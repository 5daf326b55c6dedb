"""The pure core: call assembly, KPI windows (later drift and sampling). No Kafka, no ClickHouse.

State lives in mappings the caller supplies (a dict in the embedded runner, a faust Table in the
worker), so both paths run exactly this code.
"""
