"""Peak memory of a run whose input holds one huge line among normal ones (``/usr/bin/time -v``).

A line longer than ``CALLQA_MAX_EVENT_BYTES`` is never held whole: it is read in bounded pieces up to
the limit, the rest skipped to the next newline (its size counted), and it becomes one dead letter
whose payload is its first 4 KiB. So the peak RSS of a file with a 200 MB line should be about that
of the file without it (the process itself, chdb, the normal lines), not a multiple of 200 MB.

- ``replay``: the day fixture (canonical JSON Lines) with a valid-JSON event of ``--mb`` MB (a huge
  ``call_id``) in the middle, ``callqa replay`` on the embedded store;
- ``ingest``: the queue_log fixture with a queue_log line of ``--mb`` MB (a huge caller id) in the
  middle, ``callqa ingest --format asterisk-queue-log``;
- ``kafka``: ``replay`` of the same file with ``KAFKA_BOOTSTRAP_SERVERS`` set (publishing only; the huge
  line goes to the dead-letter topic), against the environment's Kafka or one started here
  (``scripts/services.py``);
- each also without the huge line (the baseline), and the dead letter it left (reason, payload size; for
  ``kafka``, the summary line).

The files are written under /tmp (``--dir``) and deleted afterwards.

    python bench/oversized.py [--mb 200] [--what replay,ingest,kafka] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import FIXTURES, callqa_env  # noqa: E402

CHUNK = 1 << 20


def write_with_huge_line(path: Path, lines: list[str], opening: str, closing: str, mb: int) -> None:
    """``lines`` with one line of ``mb`` MB in the middle (``opening`` + digits/letters + ``closing``),
    written in 1 MiB pieces (this process never holds it)."""
    middle = len(lines) // 2
    with path.open("w") as out:
        out.write("".join(line + "\n" for line in lines[:middle]))
        out.write(opening)
        left = mb * 1_000_000 - len(opening) - len(closing)
        block = "x" * CHUNK
        while left > 0:
            out.write(block[:min(left, CHUNK)])
            left -= CHUNK
        out.write(closing + "\n")
        out.write("".join(line + "\n" for line in lines[middle:]))


def measured(args: list[str], env: dict) -> tuple[int, subprocess.CompletedProcess]:
    """(peak RSS in MB, the run) of ``callqa ARGS``."""
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "callqa.cli", *args], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return (int(peak.group(1)) // 1024 if peak else -1), done


def dead_letters(env: dict) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "callqa.cli", "query", "--json",
                           "SELECT position, reason, length(payload) AS payload_bytes FROM dead_letters FINAL "
                           "WHERE origin != 'expiry' ORDER BY position"], env=env, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout) if done.returncode == 0 else [{"error": done.stderr.strip()[-300:]}]


def case(name: str, work: Path, mb: int, kafka: str | None = None) -> dict:
    if name in ("replay", "kafka"):
        lines = (FIXTURES / "day.jsonl").read_text().splitlines()
        opening = ('{"event_id":"huge","event_type":"call.queued","schema_version":1,"event_time":"2024-03-04T09:30:00.000Z",'
                   '"site_id":"A","source":"bench","queue_id":"q1","call_id":"')
        closing, command = '"}', ["replay"]
    else:
        lines = (FIXTURES / "queue_log.txt").read_text().splitlines()
        opening, closing = "1709542811|1709542811.99|support|NONE|ENTERQUEUE||+44", "|1"
        command = ["ingest", "--format", "asterisk-queue-log"]
    plain, huge = work / f"{name}-plain.txt", work / f"{name}-huge.txt"
    plain.write_text("".join(line + "\n" for line in lines))
    write_with_huge_line(huge, lines, opening, closing, mb)
    try:
        extra = {"KAFKA_BOOTSTRAP_SERVERS": kafka} if name == "kafka" else {}
        base, base_run = measured([*command, str(plain)], callqa_env(work / f"{name}-plain", **extra))
        env = callqa_env(work / f"{name}-huge", **extra)
        peak, run = measured([*command, str(huge)], env)
        found = ({"summary": run.stdout.strip().splitlines()[-1:] } if name == "kafka" else
                 {"dead_letters": [d for d in dead_letters(env) if d.get("payload_bytes", 0) > 1000 or "error" in d]})
        return {"case": name, "line_mb": mb, "peak_rss_mb_without": base, "peak_rss_mb_with": peak,
                "exit": run.returncode, "baseline_exit": base_run.returncode, **found,
                "stderr": run.stderr.splitlines()[-1] if run.returncode else ""}
    finally:
        plain.unlink(missing_ok=True)
        huge.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the huge line in MB")
    parser.add_argument("--what", default="replay,ingest", help="replay, ingest and/or kafka, comma-separated")
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="callqa-oversized-", dir=args.dir) as tmp:
        kafka, server = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), None
        if "kafka" in args.what.split(",") and not kafka:
            from scripts import services

            server = services.start_kafka(Path(tmp) / "kafka")
            kafka = f"127.0.0.1:{server.port}"
        try:
            for name in args.what.split(","):
                print(json.dumps(case(name, Path(tmp), args.mb, kafka)), flush=True)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
