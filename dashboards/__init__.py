"""Grafana dashboards and alerting for callqa, generated from code (see build.py)."""
