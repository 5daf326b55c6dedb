"""A bench's work folder: a broker's log, stores and event files (gigabytes), removed when the bench ends.

``CALLQA_BENCH_KEEP=1`` keeps it (its path is printed) for looking into a run.

>>> with work_dir("callqa-doctest-") as work:
...     (work / "x").write_text("1")
1
>>> work.exists()
False
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A new folder under the system's temporary folder, named ``prefix…``; removed on exit, even on an
    error or Ctrl-C, unless ``CALLQA_BENCH_KEEP`` is set."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get("CALLQA_BENCH_KEEP"):
            print(f"work folder kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)
