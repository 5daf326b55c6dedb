"""The invalid-input corpus at full size: N invalid lines (tests/fuzz.py, seeded) spread through the day
fixture and replayed as a user would, against a clean replay of the same valid lines.

Prints the inputs tried, crashes, invalid lines found in the dead letters (with a reason) and valid rows
changed (KPI windows, call records, evaluations, raw events).

    python bench/fuzz.py --lines 10000 --seed 7
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import callqa_env  # noqa: E402
from tests.fuzz import invalid_lines, spread  # noqa: E402
from tests.test_fuzz import DAY, tables, valid_events  # noqa: E402


def replay(path: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callqa.cli", "replay", "--json", str(path)], env=callqa_env(workdir),
                          capture_output=True, text=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callqa-fuzz-"))
    clean_run = replay(DAY, work / "clean")
    clean, clean_dead = tables(work / "clean" / "data")
    lines = DAY.read_text().splitlines()
    bad = invalid_lines(valid_events(), args.lines, args.seed)
    mixed, positions = spread(lines, bad)
    path = work / "fuzzed.jsonl"
    path.write_text("\n".join(mixed) + "\n")
    done = replay(path, work / "fuzzed")
    crashed = done.returncode != 0 or "Traceback" in done.stderr or clean_run.returncode != 0
    fuzzed, dead = tables(work / "fuzzed" / "data") if not crashed else ({}, [])
    caught = {position for position, reason in dead if reason} & positions
    changed = sum(len(set(map(repr, clean[t])) ^ set(map(repr, fuzzed.get(t, [])))) for t in clean)
    print(f"inputs tried: {len(bad):,} invalid lines among {len(lines):,} valid ones")
    print(f"crashes: {int(crashed)}")
    print(f"invalid lines in the dead letters with a reason: {len(caught):,} ({100 * len(caught) / len(bad):.1f} %)")
    print(f"dead letters beyond the invalid lines and the clean run's: {len(dead) - len(caught) - len(clean_dead)}")
    print(f"valid rows changed: {changed}")


if __name__ == "__main__":
    main()
