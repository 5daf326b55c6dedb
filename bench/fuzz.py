"""The invalid-input corpus at full size, per input path: N invalid inputs (tests/fuzz.py, seeded) spread
through a valid file and run as a user would, against a clean run of the same valid lines.

- ``replay``: canonical JSON lines spread through the day fixture (``callqa replay``);
- each ingest format (``callqa ingest --format F``): lines of that format mutated into lines its adapter
  must refuse, spread through a valid file of the format (``tests/fuzz.py: valid_source``, made larger
  with the corpus); contact records also get older conflicting versions of valid records, which must
  be superseded (skipped), not stored.

Prints per format the inputs tried, crashes (a non-zero exit or a traceback), invalid inputs found in the
dead letters with a reason at their position, dead letters beyond those, and valid rows changed (KPI
windows, call records, evaluations, raw events), and the seconds of the fuzzed run.

    python bench/fuzz.py [--format all|replay|FORMAT] [--lines 10000] [--seed 7]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workdir import work_dir  # noqa: E402
from sources import FORMATS  # noqa: E402
from tests.conftest import callqa_env  # noqa: E402
from tests.fuzz import invalid_lines, spread  # noqa: E402
from tests.test_fuzz import DAY, ingest_fuzz, tables, valid_events  # noqa: E402


def replay(path: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callqa.cli", "replay", "--json", str(path)], env=callqa_env(workdir),
                          capture_output=True, text=True, cwd=ROOT)


def fuzz_replay(lines_n: int, seed: int, work: Path) -> dict:
    clean_run = replay(DAY, work / "clean")
    clean, clean_dead = tables(work / "clean" / "data")
    lines = DAY.read_text().splitlines()
    bad = invalid_lines(valid_events(), lines_n, seed)
    mixed, positions = spread(lines, bad)
    path = work / "fuzzed.jsonl"
    path.write_text("\n".join(mixed) + "\n")
    started = time.perf_counter()
    done = replay(path, work / "fuzzed")
    seconds = time.perf_counter() - started
    crashed = done.returncode != 0 or "Traceback" in done.stderr or clean_run.returncode != 0
    fuzzed, dead = tables(work / "fuzzed" / "data") if not crashed else ({}, [])
    caught = {position for position, reason in dead if reason} & positions
    changed = sum(len(set(map(repr, clean[t])) ^ set(map(repr, fuzzed.get(t, [])))) for t in clean)
    return {"format": "replay", "valid": len(lines), "inputs": len(bad), "crashes": int(crashed), "matched": len(caught),
            "beyond": len(dead) - len(caught) - len(clean_dead), "changed": changed, "seconds": seconds,
            "stderr": done.stderr}


def fuzz_ingest(fmt: str, lines_n: int, seed: int, work: Path) -> dict:
    duplicates = lines_n // 20 if fmt == "amazon-connect-ctr" else 0
    run = ingest_fuzz(fmt, lines_n, seed, work, size=max(240, lines_n // 5), duplicates=duplicates)
    out = {"format": fmt, "valid": None, "inputs": lines_n, "crashes": int(run.crashed), "matched": len(run.matched),
           "beyond": len(run.dead) - len(run.matched) - len(run.clean_dead), "changed": run.changed,
           "seconds": run.seconds, "stderr": run.fuzzed.stderr + run.clean.stderr}
    if not run.crashed:
        clean, fuzzed = json.loads(run.clean.stdout), json.loads(run.fuzzed.stdout)
        out["valid"] = clean["units"]
        if duplicates:
            superseded = fuzzed["skipped"].get("superseded CTR", 0) - clean["skipped"].get("superseded CTR", 0)
            out["duplicates"] = f"{duplicates:,} conflicting older versions: {superseded:,} superseded (skipped)"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", default="all", choices=["all", "replay", *FORMATS])
    parser.add_argument("--lines", type=int, default=10_000, help="invalid inputs per format")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    formats = ["replay", *FORMATS] if args.format == "all" else [args.format]
    print(f"{'format':<30} {'valid':>6} {'inputs tried':>12} {'crashes':>7} {'dead letters matched':>24} "
          f"{'other dead':>10} {'valid rows changed':>18} {'seconds':>8}", flush=True)
    for fmt in formats:
        with work_dir(f"callqa-fuzz-{fmt}-") as work:
            r = fuzz_replay(args.lines, args.seed, work) if fmt == "replay" else fuzz_ingest(fmt, args.lines, args.seed, work)
            matched = f"{r['matched']:,} ({100 * r['matched'] / r['inputs']:.1f} %)"
            print(f"{fmt:<30} {r['valid'] or '-':>6} {r['inputs']:>12,} {r['crashes']:>7} {matched:>24} {r['beyond']:>10} "
                  f"{r['changed']:>18} {r['seconds']:>8.1f}", flush=True)
            if r.get("duplicates"):
                print(f"{'':<30} {r['duplicates']}", flush=True)
            if r["crashes"]:
                print(r["stderr"][-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
