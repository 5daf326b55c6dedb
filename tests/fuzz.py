"""A seeded corpus of invalid input: lines that must each become one dead letter and change nothing else.

``invalid_lines(valid, n, seed)`` mutates valid canonical events into ``n`` lines of the kinds that have
broken runs before: truncated JSON, wrong types, huge strings, unknown types, control characters in
enumerations, far-future and far-past times, key separators inside ids, dates that match the pattern
but are not dates, paths as identifiers, missing fields, non-objects. Used by ``tests/test_fuzz.py``
(a slice in CI) and ``bench/fuzz.py`` (10,000 lines).
"""
from __future__ import annotations

import json
import random

ID_FIELDS = ("site_id", "queue_id", "agent_id")


def _mutations(rng: random.Random, event: dict) -> list:
    e = dict(event)
    time = e["event_time"]
    missing = rng.choice(["event_id", "site_id", "event_time", "event_type"])
    out = [
        lambda: json.dumps(e)[: rng.randrange(1, len(json.dumps(e)) - 1)],  # truncated
        lambda: json.dumps(e | {"event_time": rng.choice([0, 1.5, None, True, [], {}])}),  # wrong type
        lambda: json.dumps(e | {"schema_version": rng.choice(["1", 2, -1, None])}),
        lambda: json.dumps(e | {"event_id": "x" * rng.choice([300, 5_000, 100_000])}),  # huge string
        lambda: json.dumps(e | {"event_type": rng.choice(["call.exploded", "", "CALL.OFFERED", "call.offered\x00"])}),
        lambda: json.dumps(e | {"event_time": rng.choice(["2100-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                                                          "1970-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z"])}),
        lambda: json.dumps(e | {"event_time": time[:5] + rng.choice(["02-30", "13-01", "00-10", "04-31"]) + time[10:]}),
        lambda: json.dumps(e | {"event_time": time.replace("T", " ").rstrip("Z")}),  # not the contract's form
        lambda: json.dumps(e | {"site_id": rng.choice(["a|b", "|", "S|x|y"])}),  # the key separator
        lambda: json.dumps({k: v for k, v in e.items() if k != missing}),
        lambda: json.dumps(e | {"unexpected": "field"}),
        lambda: json.dumps(rng.choice([[], "text", 42, None, [e]])),  # not an object
        lambda: "\ufeff{" + "é" * rng.randrange(1, 50),
    ]
    if "queue_id" in e:
        out.append(lambda: json.dumps(e | {"queue_id": rng.choice(["q|1", "", "x" * 300])}))
    if "agent_id" in e:
        out.append(lambda: json.dumps(e | {"agent_id": rng.choice(["a|1", "", 7, ["a1"]])}))
    return out


def evaluation_paths(rng: random.Random) -> str:
    """An evaluation naming its form by a path."""
    return json.dumps({"event_id": f"fuzz-eval-{rng.random()}", "event_type": "evaluation.submitted", "schema_version": 1,
                       "event_time": "2024-03-04T12:00:00.000Z", "site_id": "A", "source": "fuzz",
                       "evaluation_id": "ev-fuzz", "call_id": "c1", "agent_id": "a1", "evaluator_id": "qa-1",
                       "kind": "human", "form_id": rng.choice(["../../etc", "hotline-100/../x", "/tmp"]),
                       "form_version": rng.choice(["../1", "1/../../x", "..", "1.0"]), "answers": {}})


def invalid_lines(valid: list[dict], n: int, seed: int) -> list[str]:
    """``n`` invalid lines made from ``valid`` events (seeded: the same corpus every run)."""
    rng = random.Random(seed)
    lines = []
    while len(lines) < n:
        if rng.random() < 0.03:
            lines.append(evaluation_paths(rng))
            continue
        event = rng.choice(valid)
        lines.append(rng.choice(_mutations(rng, event))())
    return [line.replace("\n", " ") for line in lines]


def spread(lines: list[str], bad: list[str]) -> tuple[list[str], set[str]]:
    """``bad`` spread evenly through ``lines``; also the 1-based positions of the bad lines."""
    mixed, positions = [], set()
    for i, line in enumerate(lines):
        mixed.append(line)
        for _ in range(len(bad) * (i + 1) // len(lines) - len(bad) * i // len(lines)):
            mixed.append(bad[len(positions)])
            positions.add(str(len(mixed)))
    return mixed, positions
