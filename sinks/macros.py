"""Grafana's side of a dashboard query: template variables and the ClickHouse plugin's macros.

``expand`` turns a panel's SQL into what ClickHouse receives for a time range and variable values,
the way Grafana (variables) and grafana-clickhouse-datasource v4 (``$__`` macros, pkg/macros) do.
Tests run every panel through it; anything else that reads dashboard queries can too.
"""
from __future__ import annotations

import re
from datetime import datetime

MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


class MacroError(ValueError):
    """A macro or variable the query uses that Grafana would not know how to fill in."""


def _seconds(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def _millis(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.strftime('%Y-%m-%d')}')"


def _quote(value: str, style: str | None) -> str:
    if style in (None, "raw", "csv"):
        return value
    if style == "singlequote":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if style == "doublequote":
        return '"' + value.replace('"', '\\"') + '"'
    raise MacroError(f"variable format {style!r} is not supported")


def expand_variables(sql: str, variables: dict[str, list[str]]) -> str:
    """Grafana's interpolation: a multi-value variable joins its values with commas, each formatted."""

    def one(match: re.Match) -> str:
        name, style = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), None)
        if name.startswith("__"):
            return match.group(0)  # a plugin macro, not a variable
        if name not in variables:
            raise MacroError(f"unknown variable ${name}")
        return ",".join(_quote(v, style) for v in variables[name])

    return VARIABLE.sub(one, sql)


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int = 60) -> str:
    """The plugin's macros for the range [start, end] (timezone-aware datetimes)."""

    def one(match: re.Match) -> str:
        name, args = match.group(1), [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
        if name in ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"):
            return {"fromTime": _seconds(start), "toTime": _seconds(end), "fromTime_ms": _millis(start),
                    "toTime_ms": _millis(end), "interval_s": str(max(interval_s, 1))}[name]
        if name in ("timeFilter", "timeFilter_ms", "dateFilter", "timeInterval", "timeInterval_ms"):
            if len(args) != 1:
                raise MacroError(f"$__{name} takes one column, got {args}")
            column = args[0]
            if name == "timeFilter":
                return f"{column} >= {_seconds(start)} AND {column} <= {_seconds(end)}"
            if name == "timeFilter_ms":
                return f"{column} >= {_millis(start)} AND {column} <= {_millis(end)}"
            if name == "dateFilter":
                return f"{column} >= {_date(start)} AND {column} <= {_date(end)}"
            if name == "timeInterval":
                return f"toStartOfInterval(toDateTime({column}), INTERVAL {max(interval_s, 1)} second)"
            return f"toStartOfInterval(toDateTime64({column}, 3), INTERVAL {max(interval_s, 1) * 1000} millisecond)"
        raise MacroError(f"unknown macro $__{name}")

    return MACRO.sub(one, sql)


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, list[str]], interval_s: int = 60) -> str:
    """Variables first (Grafana's frontend), then macros (the plugin's backend), as in Grafana."""
    return expand_macros(expand_variables(sql, variables), start, end, interval_s)
