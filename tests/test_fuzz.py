"""A slice of the invalid-input corpus (tests/fuzz.py) mixed into a valid day (replay) and into a valid
file of each ingest format: zero crashes, every invalid line one dead letter with a reason at its file and
line, and the valid data exactly as in a clean run. bench/fuzz.py runs 10,000 lines per format."""
from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sinks.store import EmbeddedStore
from sources import FORMATS
from tests.conftest import FIXTURES, callqa_env, run_callqa
from tests.fuzz import conflicting_versions, invalid_lines, invalid_source_lines, spread, valid_source

DAY = FIXTURES / "day.jsonl"


def valid_events() -> list[dict]:
    out = []
    for line in DAY.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def tables(data_dir):
    store = EmbeddedStore(data_dir / "chdb")
    try:
        # a window's version counts the partial sums it was built from, which depends on how the input
        # was batched; its values must not change
        kept = {name: store.query(f"SELECT * EXCEPT {extra} FROM {name} FINAL ORDER BY ALL")[1]
                for name, extra in (("kpi_windows", "(ingested_at, version)"), ("call_records", "ingested_at"),
                                    ("evaluations", "ingested_at"), ("raw_events", "ingested_at"))}
        dead = store.query("SELECT position, reason FROM dead_letters FINAL")[1]
        return kept, dead
    finally:
        store.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_invalid_lines_are_dead_letters_and_change_nothing(tmp_path, seed):
    clean_dir, fuzzed_dir = tmp_path / "clean", tmp_path / "fuzzed"
    assert run_callqa(["replay", str(DAY)], callqa_env(clean_dir)).returncode == 0
    clean, clean_dead = tables(clean_dir / "data")
    lines = DAY.read_text().splitlines()
    mixed, positions = spread(lines, invalid_lines(valid_events(), 300, seed))
    path = tmp_path / "fuzzed.jsonl"
    path.write_text("\n".join(mixed) + "\n")
    done = run_callqa(["replay", "--json", str(path)], callqa_env(fuzzed_dir))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    fuzzed, dead = tables(fuzzed_dir / "data")
    assert fuzzed == clean
    caught = {position for position, reason in dead if reason}
    assert positions <= caught and len(dead) == len(clean_dead) + len(positions)
    assert json.loads(done.stdout)["dead_letters"] == len(dead)


@dataclass
class IngestFuzz:
    """A clean ingest of a valid file and one of the same file with invalid lines (and, for contact
    records, older conflicting versions) spread in."""

    fmt: str
    inputs: int  # invalid lines
    duplicates: int  # conflicting versions (expected superseded, not dead letters)
    clean: subprocess.CompletedProcess
    fuzzed: subprocess.CompletedProcess
    seconds: float  # of the fuzzed run
    expected: set[str] = field(default_factory=set)  # positions (file:line) of the invalid lines
    clean_tables: dict = field(default_factory=dict)
    clean_dead: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        return any(done.returncode != 0 or "Traceback" in done.stderr for done in (self.clean, self.fuzzed))

    @property
    def matched(self) -> set[str]:
        """Positions of the invalid lines found in the dead letters with a reason."""
        return {position for position, reason in self.dead if reason} & self.expected

    @property
    def changed(self) -> int:
        """Valid rows in one run and not in the other."""
        return sum(len(set(map(repr, self.clean_tables[t])) ^ set(map(repr, self.tables.get(t, []))))
                   for t in self.clean_tables)


def ingest_fuzz(fmt: str, inputs: int, seed: int, workdir: Path, size: int = 240, duplicates: int = 0) -> IngestFuzz:
    """``inputs`` invalid lines of ``fmt`` (and ``duplicates`` conflicting contact-record versions) spread
    through a valid file of about ``size`` lines, ingested with ``callqa ingest`` against the clean file."""
    source = valid_source(fmt, size, seed)
    extra = [(line, True) for line in invalid_source_lines(source, inputs, seed)]
    extra += [(line, False) for line in conflicting_versions(source.lines, duplicates, seed)]
    random.Random(seed).shuffle(extra)
    mixed, positions = spread(source.lines, [line for line, _ in extra])
    name = "input.txt"
    runs = {}
    for run, lines in (("clean", source.lines), ("fuzzed", mixed)):
        path = workdir / run / name
        path.parent.mkdir(parents=True)
        path.write_bytes(source.text(lines).encode("utf-8", "surrogateescape"))  # \udcXX: an invalid byte
        started = time.perf_counter()
        runs[run] = (run_callqa(["ingest", "--json", "--format", fmt, "--site", "S", *source.args, str(path)],
                                callqa_env(workdir / run), timeout=1800), time.perf_counter() - started)
    result = IngestFuzz(fmt, inputs, duplicates, runs["clean"][0], runs["fuzzed"][0], runs["fuzzed"][1],
                        {f"{name}:{int(p) + len(source.head)}" for p, (_, bad) in zip(sorted(positions, key=int), extra) if bad})
    if not result.crashed:
        result.clean_tables, result.clean_dead = tables(workdir / "clean" / "data")
        result.tables, result.dead = tables(workdir / "fuzzed" / "data")
    return result


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_invalid_source_lines_are_dead_letters_and_change_nothing(tmp_path, fmt):
    duplicates = 10 if fmt == "amazon-connect-ctr" else 0
    run = ingest_fuzz(fmt, 60, 11, tmp_path, duplicates=duplicates)
    assert not run.crashed, (run.clean.stderr + run.fuzzed.stderr)[-3000:]
    assert run.tables == run.clean_tables
    # each invalid line is one dead letter, at its file and line, with the reason
    assert len(run.expected) == 60 and run.matched == run.expected
    assert Counter(p for p, _ in run.dead) == Counter(p for p, _ in run.clean_dead) + Counter(run.expected)
    clean, fuzzed = json.loads(run.clean.stdout), json.loads(run.fuzzed.stdout)
    assert fuzzed["units"] == clean["units"] + 60 + duplicates
    assert fuzzed["unreadable"] == clean["unreadable"] + 60
    assert fuzzed["events"] == clean["events"]
    assert Counter(fuzzed["skipped"]) == Counter(clean["skipped"]) + Counter({"superseded CTR": duplicates})


@pytest.mark.parametrize("fmt", ["asterisk-queue-log", "amazon-connect-ctr"])  # a streamed log, a batch export
def test_a_file_of_invalid_lines_only_is_refused_with_its_lines_kept(tmp_path, fmt):
    """No event at all: exit 2 with the first reasons (is it that format?), no traceback, every line a dead letter."""
    source = valid_source(fmt, 40, 5)
    path = tmp_path / "input.txt"
    path.write_bytes(source.text(invalid_source_lines(source, 20, 5)).encode("utf-8", "surrogateescape"))
    done = run_callqa(["ingest", "--format", fmt, *source.args, str(path)], callqa_env(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"no {fmt} events in 20 input units" in done.stderr
    _, dead = tables(tmp_path / "data")
    assert sorted(position for position, _ in dead) == sorted(f"input.txt:{len(source.head) + i}" for i in range(1, 21))
